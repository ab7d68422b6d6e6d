// Package gateway is the chat gateway: it serves clients over WebSocket and HTTP, authenticates
// them, appends their commands to the event log as events, and pushes the log's events to their
// sessions. It talks to other services only through NATS.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/auth"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Deps are what the gateway runs on, made by its main (or the all-in-one).
type Deps struct {
	NATS *nats.Conn
	Log  *slog.Logger
	// Ops carries the metrics registry and readiness checks; its endpoints are served on the
	// gateway's own listener.
	Ops *platform.Ops
	// Topology shapes the stream and buckets created on first start.
	Topology schemas.Topology
	// Listener, if set, is used instead of listening on Config.Addr (tests pass 127.0.0.1:0).
	Listener net.Listener
}

// Gateway is one gateway process.
type Gateway struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics

	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	accounts *auth.Accounts
	tokens   *auth.Tokens
	appender *appender
	groups   *groups
	contacts *contactStore
	book     *contactBook
	hub      *hub
	index    jetstream.KeyValue
	upgrader websocket.Upgrader

	// baseCtx bounds command handling; it outlives the drain so in-flight commands finish.
	baseCtx    context.Context
	draining   atomic.Bool
	dmIndex    sync.Map // direct conversations already indexed by this process
	presenceKV jetstream.KeyValue
	peerCache  peerCache
	pairsSeen  sync.Map // direct conversations whose users' peer sets are known to include each other
	addr       atomic.Value
	ready      chan struct{}
	sessions   sync.WaitGroup
	// stopping is closed when the drain starts (long polls answer at once).
	stopping chan struct{}
	// polls are the long-poll clients (poll.go); attachments the attachment object store and
	// the accepted content types (attachments.go).
	polls       *pollTable
	attachments jetstream.ObjectStore
	attachTypes map[string]bool

	// The archive boundary (archive.go): the stream's first seq, cached; per group, the seq of its
	// creation event if the stream keeps it, else 0; a test hook.
	first             firstCache
	archiveKV         jetstream.KeyValue // the archiver's trim point
	groupStarts       sync.Map
	testAfterBoundary testHook
	// logReaders holds a token per log read running (cfg.LogReaders).
	logReaders chan struct{}
	// recent is the newest stretch of the log, kept by the live feed for reads (recent.go).
	recent *recentLog
	// gets carries the direct gets of log reads (directread.go).
	gets *platform.DirectGets
	// connects counts WebSocket connects per second, events the live feed's: bursts and traffic
	// set the collector's target (see burstConnects).
	connects, events rateWindow
}

// The collector's target (platform.BusyGC, DenseGC): the gateway carries message traffic while
// its live feed reads busyEvents or more events a second (every event of the log goes through
// every gateway's feed), and connections arrive in a burst at burstConnects or more a second.
// A burst wins: the sessions made then live long, and are stored more densely when garbage is
// collected often while they are made.
const (
	busyEvents    = 100
	busyGC        = 10 * time.Second
	burstConnects = 100
	burstGC       = 5 * time.Second
)

// rateWindow counts occurrences in one-second windows.
type rateWindow struct {
	mu     sync.Mutex
	window time.Time
	n      int
}

// reaches counts one at now and reports whether the count of its window has just reached
// threshold (once per window).
func (w *rateWindow) reaches(now time.Time, threshold int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.window) >= time.Second {
		w.window, w.n = now, 0
	}
	w.n++
	return w.n == threshold
}

// New checks the configuration and prepares a gateway; Run starts it.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: config: %w", err)
	}
	if deps.NATS == nil || deps.Log == nil || deps.Ops == nil {
		return nil, errors.New("gateway: NATS, Log and Ops are required")
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	gw := &Gateway{
		cfg: cfg, deps: deps, log: deps.Log.With("service", "gateway", "gateway", cfg.ID),
		metrics: newMetrics(deps.Ops.Registry), nc: deps.NATS, hub: newHub(), ready: make(chan struct{}),
		peerCache: peerCache{entries: map[string]peerEntry{}},
		stopping:  make(chan struct{}), polls: newPollTable(), logReaders: make(chan struct{}, cfg.LogReaders),
		recent: newRecentLog(cfg.RecentEvents),
	}
	gw.attachTypes, _ = attachmentTypeSet(cfg.AttachmentTypes) // checked by Validate
	gw.upgrader = websocket.Upgrader{
		// Client frames are small (a message is a few hundred bytes); a larger one is read past
		// the buffer. Every connection holds its read buffer, idle or not.
		ReadBufferSize:  512,
		WriteBufferSize: 1024,
		// Write buffers are pooled: an idle connection holds none.
		WriteBufferPool: &sync.Pool{},
		// Origin is checked before the upgrade, so a refusal can carry a JSON error body.
		CheckOrigin: func(*http.Request) bool { return true },
		// Refused handshakes answer like every other HTTP error.
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			code := schemas.CodeBadRequest
			if status == http.StatusForbidden {
				code = schemas.CodeForbidden
			}
			writeJSON(w, status, schemas.HTTPError{ErrCode: code, ErrMsg: "WebSocket handshake refused: " + reason.Error()})
		},
	}
	return gw, nil
}

// Ready is closed once the gateway accepts connections.
func (gw *Gateway) Ready() <-chan struct{} { return gw.ready }

// Addr is the address the gateway listens on, once ready.
func (gw *Gateway) Addr() string {
	a, _ := gw.addr.Load().(string)
	return a
}

// Run serves until ctx is cancelled, then drains: it stops accepting, lets in-flight messages be
// stored and acknowledged, closes every socket with 1001 and returns. The caller drains NATS.
func (gw *Gateway) Run(ctx context.Context) error {
	js, err := jetstream.New(gw.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	gw.js = js
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := schemas.Ensure(setup, js, gw.deps.Topology); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if gw.stream, err = js.Stream(setup, schemas.EventsStream); err != nil {
		return fmt.Errorf("gateway: stream: %w", err)
	}
	kv := func(name string) jetstream.KeyValue {
		if err != nil {
			return nil
		}
		var b jetstream.KeyValue
		b, err = js.KeyValue(setup, name)
		return b
	}
	users, groupsKV, index, secrets := kv(schemas.UsersBucket), kv(schemas.GroupsBucket), kv(schemas.IndexBucket), kv(schemas.SecretsBucket)
	gw.presenceKV = kv(schemas.PresenceBucket)
	contactsKV := kv(schemas.ContactsBucket)
	gw.archiveKV = kv(schemas.ArchiveBucket)
	if err != nil {
		return fmt.Errorf("gateway: buckets: %w", err)
	}
	if gw.attachments, err = js.ObjectStore(setup, schemas.AttachmentsBucket); err != nil {
		return fmt.Errorf("gateway: object store %s: %w", schemas.AttachmentsBucket, err)
	}
	gw.index = index
	gw.gets = platform.NewDirectGets(gw.nc)
	defer gw.gets.Stop()
	gw.accounts = auth.NewAccounts(users)
	if gw.tokens, err = auth.NewTokens(setup, gw.cfg.Tokens, secrets); err != nil {
		return fmt.Errorf("gateway: tokens: %w", err)
	}
	gw.groups = newGroups(gw.nc, gw.stream, groupsKV, index)
	gw.contacts = &contactStore{nc: gw.nc, stream: gw.stream, kv: contactsKV}
	gw.book = newContactBook(gw)
	gw.deps.Ops.AddCheck("nats", func(context.Context) error {
		if !gw.nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	gw.deps.Ops.AddCheck("jetstream", func(ctx context.Context) error { return schemas.Check(ctx, js) })

	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	gw.baseCtx = baseCtx

	gw.appender = newAppender(gw.nc, gw.cfg.BatchMax, gw.cfg.BatchInflight, gw.cfg.BatchAtomicMin, gw.cfg.AppendTimeout, gw.metrics, gw.log)
	appenderDone := make(chan error, 1)
	go func() { appenderDone <- gw.appender.run() }()

	liveCtx, stopLive := context.WithCancel(baseCtx)
	defer stopLive()
	live := &liveFeed{gw: gw, started: make(chan struct{})}
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.run(liveCtx) }()
	select {
	case <-live.started:
	case err := <-liveDone:
		gw.appender.close()
		return err
	}

	// Presence changes, typing notices and unread changes: core NATS, every gateway hears all of
	// them.
	for subj, h := range map[string]nats.MsgHandler{schemas.PresenceChangedAll: gw.onPresenceChanged,
		schemas.TypingAll: gw.onTyping, schemas.UnreadChangedAll: gw.onUnreadChanged} {
		sub, err := gw.nc.Subscribe(subj, h)
		if err != nil {
			gw.appender.close()
			return fmt.Errorf("gateway: subscribe %s: %w", subj, err)
		}
		defer sub.Unsubscribe()
	}
	// The server has the subscriptions before a client can connect.
	if err := gw.nc.Flush(); err != nil {
		gw.log.Warn("flush subscriptions", "err", err)
	}
	go gw.heartbeats(liveCtx)
	go gw.pollSweeper(liveCtx)

	ln := gw.deps.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", gw.cfg.Addr); err != nil {
			gw.appender.close()
			return fmt.Errorf("gateway: listen: %w", err)
		}
	}
	gw.addr.Store(ln.Addr().String())
	srv := &http.Server{Handler: gw.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(gw.log.Handler(), slog.LevelWarn)}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	gw.log.Info("gateway listening", "addr", ln.Addr().String())
	close(gw.ready)

	select {
	case <-ctx.Done():
	case err := <-serveDone:
		gw.appender.close()
		return fmt.Errorf("gateway: serve: %w", err)
	case err := <-liveDone:
		if err == nil {
			err = errors.New("live feed stopped")
		}
		_ = srv.Close()
		gw.appender.close()
		return fmt.Errorf("gateway: %w", err)
	}
	return gw.drain(srv, appenderDone, stopLive, liveDone)
}

// drain is the graceful shutdown: readiness fails, the listener closes, sessions stop reading,
// their pending messages are stored and acknowledged, then every socket closes with 1001.
func (gw *Gateway) drain(srv *http.Server, appenderDone <-chan error, stopLive func(), liveDone <-chan error) error {
	start := time.Now()
	deadline := start.Add(gw.cfg.ShutdownTimeout)
	gw.draining.Store(true)
	close(gw.stopping)
	gw.deps.Ops.SetDraining()
	shutdownCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	httpDone := make(chan struct{})
	go func() { _ = srv.Shutdown(shutdownCtx); close(httpDone) }()

	sessions := gw.hub.sessions()
	reading := make([]bool, len(sessions))
	for i, s := range sessions {
		reading[i] = s.stopReading()
	}
	for i, s := range sessions {
		if !reading[i] {
			s.close(closeGoingAway, "server shutting down", true) // still upgrading
			continue
		}
		waitUntil(deadline, s.readDone)
		waitUntil(deadline, waitGroupDone(&s.inflight)) // acks of messages already accepted
		s.close(closeGoingAway, "server shutting down", true)
	}
	gw.appender.close()
	waitUntil(deadline, appenderDone)
	waitUntil(deadline, waitGroupDone(&gw.sessions))
	stopLive()
	<-liveDone
	<-httpDone
	gw.pollSweep(time.Now(), true) // every long-poll client: disconnected
	gw.log.Info("gateway drained", "sessions", len(sessions), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func waitUntil[T any](deadline time.Time, ch <-chan T) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}
