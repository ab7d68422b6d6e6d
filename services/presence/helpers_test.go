package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/presence"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Timings of the tests: a connection lives 2 s without a heartbeat, a user without connections
// goes offline 1 s after the last one went, pending offlines are checked every 100 ms.
const (
	connTTL = 2 * time.Second
	grace   = time.Second
	sweep   = 100 * time.Millisecond
	// wait bounds what should happen promptly; generous, because tests share two cores.
	wait = 10 * time.Second
	// quiet is how long a test watches for events that must not come, once the grace period
	// (when a wrong offline would appear) and a few sweeps are over.
	quiet = grace + 5*sweep
)

var topology = schemas.Topology{PresenceConnTTL: connTTL}

func testLog() *slog.Logger {
	if os.Getenv("CHAT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNATS starts a nats-server with JetStream in dir on loopback (port -1: a free one).
func startNATS(dir string, port int) (*server.Server, error) {
	return platform.StartNATS(platform.EmbeddedNATS{StoreDir: dir, Listen: fmt.Sprintf("127.0.0.1:%d", port)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// env is a nats-server, a simulated gateway publishing connection reports, and an observer of
// presence changes. Like a real gateway, the simulated one heartbeats every connection it holds
// (connected and not yet disconnected or killed) every heartbeat period.
type env struct {
	t   *testing.T
	dir string
	ns  *server.Server
	gw  *nats.Conn
	kv  jetstream.KeyValue // chat_presence, as a gateway reads it
	obs *observer

	mu    sync.Mutex // orders reports and heartbeats on the wire
	conns map[[2]string]bool
}

// heartbeat is the simulated gateway's heartbeat period: four per connection TTL.
const heartbeat = connTTL / 4

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), conns: map[[2]string]bool{}}
	ns, err := startNATS(e.dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns
	t.Cleanup(func() { e.ns.Shutdown(); e.ns.WaitForShutdown() })
	e.gw = e.connect()
	e.obs = newObserver(t, e.connect())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			e.mu.Lock()
			for c, idle := range e.conns {
				_ = e.gw.Publish(schemas.PresenceConnSubject(c[0]), mustReport(c[0], c[1], schemas.ConnHeartbeat, idle))
			}
			e.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return e
}

// kill makes the simulated gateway forget a connection without a disconnect, as a gateway killed
// with -9 does: no more heartbeats.
func (e *env) kill(user, conn string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.conns, [2]string{user, conn})
}

func mustReport(user, conn, state string, idle bool) []byte {
	b, err := json.Marshal(schemas.ConnEvent{Type: schemas.TypeConn, User: user, Conn: conn, Gateway: "gw-test",
		State: state, Idle: idle, Client: "test", Ts: schemas.FormatTime(time.Now())})
	if err != nil {
		panic(err)
	}
	return b
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// instance is a running presence service.
type instance struct {
	svc  *presence.Service
	ops  *platform.Ops
	nc   *nats.Conn
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// start runs a presence service on the env's NATS, stopped at the end of the test.
func (e *env) start() *instance {
	e.t.Helper()
	cfg := presence.Defaults()
	cfg.ID, cfg.Grace, cfg.Sweep = "test", grace, sweep
	nc := e.connect()
	ops := platform.NewOps()
	svc, err := presence.New(cfg, presence.Deps{NATS: nc, Log: testLog(), Ops: ops, Topology: topology})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{svc: svc, ops: ops, nc: nc, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-in.done:
		e.t.Fatalf("presence stopped before ready: %v", err)
	case <-time.After(wait):
		e.t.Fatal("presence not ready")
	}
	e.t.Cleanup(func() { _ = in.Stop() })
	if e.kv == nil {
		e.kv = e.bucket(schemas.PresenceBucket)
	}
	return in
}

// bucket opens a presence bucket through the simulated gateway's connection.
func (e *env) bucket(name string) jetstream.KeyValue {
	e.t.Helper()
	js, err := jetstream.New(e.gw)
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return kv
}

// Stop stops the service as SIGTERM does and waits for it.
func (in *instance) Stop() error {
	in.once.Do(func() {
		in.stop()
		select {
		case in.err = <-in.done:
		case <-time.After(wait):
			in.err = errors.New("presence did not stop")
		}
		in.nc.Close()
	})
	return in.err
}

// report publishes a gateway's connection report; connect, idle and active make the simulated
// gateway heartbeat the connection (idle or not) from then on, disconnect ends that.
func (e *env) report(user, conn, state string, idle bool) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	c := [2]string{user, conn}
	switch state {
	case schemas.ConnConnect:
		e.conns[c] = idle
	case schemas.ConnIdle, schemas.ConnActive:
		if _, ok := e.conns[c]; ok {
			e.conns[c] = state == schemas.ConnIdle
		}
	case schemas.ConnDisconnect:
		delete(e.conns, c)
	}
	e.publishRaw(schemas.PresenceConnSubject(user), mustReport(user, conn, state, idle))
}

func (e *env) publishRaw(subject string, data []byte) {
	e.t.Helper()
	if err := e.gw.Publish(subject, data); err != nil {
		e.t.Fatal(err)
	}
	if err := e.gw.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// agg reads a user's aggregate (nil if none).
func (e *env) agg(user string) *schemas.PresenceState {
	e.t.Helper()
	en, err := e.kv.Get(context.Background(), schemas.PresenceKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var ps schemas.PresenceState
	if err := json.Unmarshal(en.Value(), &ps); err != nil {
		e.t.Fatal(err)
	}
	return &ps
}

// waitAgg polls a user's aggregate until ok accepts it.
func (e *env) waitAgg(user string, what string, ok func(*schemas.PresenceState) bool) *schemas.PresenceState {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ps := e.agg(user)
		if ok(ps) {
			return ps
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("aggregate of %s: want %s, have %+v", user, what, ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isState(status string, devices int) func(*schemas.PresenceState) bool {
	return func(ps *schemas.PresenceState) bool {
		return ps != nil && ps.Status == status && ps.Devices == devices && ps.OfflineAt == ""
	}
}

func pending(ps *schemas.PresenceState) bool {
	return ps != nil && ps.OfflineAt != "" && ps.Devices == 0
}

// observer records the presence changes published, as a gateway sees them.
type observer struct {
	t      *testing.T
	mu     sync.Mutex
	events []observed
	notify chan struct{}
}

type observed struct {
	ev schemas.PresenceChanged
	at time.Time
}

func newObserver(t *testing.T, nc *nats.Conn) *observer {
	o := &observer{t: t, notify: make(chan struct{}, 1)}
	_, err := nc.Subscribe(schemas.PresenceChangedAll, func(m *nats.Msg) {
		var ev schemas.PresenceChanged
		if err := json.Unmarshal(m.Data, &ev); err != nil || m.Subject != schemas.PresenceChangedSubject(ev.User) ||
			ev.Type != schemas.TypePresenceChanged {
			t.Errorf("bad presence change on %s: %s", m.Subject, m.Data)
			return
		}
		o.mu.Lock()
		o.events = append(o.events, observed{ev: ev, at: time.Now()})
		o.mu.Unlock()
		select {
		case o.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return o
}

// of returns the changes of user so far.
func (o *observer) of(user string) []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []observed
	for _, e := range o.events {
		if e.ev.User == user {
			out = append(out, e)
		}
	}
	return out
}

// statuses returns the statuses user went through so far.
func (o *observer) statuses(user string) []string {
	var out []string
	for _, e := range o.of(user) {
		out = append(out, e.ev.Status)
	}
	return out
}

// waitN waits until user has had n changes and returns the n-th.
func (o *observer) waitN(user string, n int) observed {
	o.t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		if evs := o.of(user); len(evs) >= n {
			return evs[n-1]
		}
		select {
		case <-o.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			o.t.Fatalf("%s: want %d presence changes, have %v", user, n, o.statuses(user))
		}
	}
}

// expect checks the statuses user went through, in order.
func (o *observer) expect(user string, want ...string) {
	o.t.Helper()
	got := o.statuses(user)
	if len(got) != len(want) {
		o.t.Fatalf("%s: presence changes %v, want %v", user, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			o.t.Fatalf("%s: presence changes %v, want %v", user, got, want)
		}
	}
}

// metric is the value of a counter or gauge of an instance; labels select the series.
func (in *instance) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := in.ops.Value(name, labels...)
	if !ok {
		t.Fatalf("metric %s %v not found", name, labels)
	}
	return v
}

// waitMetric polls a metric until it has value v.
func (in *instance) waitMetric(t *testing.T, v float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := in.metric(t, name, labels...)
		if got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s %v = %v, want %v", name, labels, got, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || schemas.FormatTime(ts) != s {
		t.Fatalf("time %q is not in the protocol format (%v)", s, err)
	}
	return ts
}
