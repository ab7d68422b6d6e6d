// Package unread is the unread service: from the event log it keeps every user's read markers and
// exact unread counts per conversation, and their conversation list ordered by last activity. It
// talks to other services only through NATS (see schemas/unread.go for the contract).
//
// How it works:
//
//   - One ordered consumer reads the log (stream CHAT_EVENTS) in order into a Projection, held in
//     memory: messages, deletes, member events and read markers. It reads every subject, so the
//     projection's seq is the log's position: a request's MinSeq is reached even when it is the
//     seq of an event the projection has no use for (a contact change, a deletion marker), which
//     is skipped undecoded. Counts are derived when asked, never written per member, so a message
//     in a 1000-member group costs what one in a direct conversation does.
//   - Applying is idempotent by stream sequence, so the projection rebuilt from the log equals the
//     live one: `unread check` (Check) compares them.
//   - The projection is saved to the object store chat_unread every SnapshotEvery when it changed
//     and on shutdown; an instance starts from the snapshot and reads only the events after it.
//   - Once it has caught up with the log's head at start, an instance joins the queue group
//     "unread" and answers conversations requests, waiting (bounded) for the MinSeq a request
//     names; the answer's Unread-Instance header names the instance.
//   - A read, and a delete that changes counts, publish UnreadChanged for the users concerned;
//     every instance publishes the same changes (gateways drop repeated causes). Old events
//     replayed after a start publish nothing.
package unread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Internal sizes and timeouts.
const (
	// pullWindow is how many events the consumer asks for at a time: deep, for fast replays.
	pullWindow = 1024
	// maxQueries bounds the requests answered at once; more wait in the subscription.
	maxQueries = 64
	// queryTimeout bounds the NATS round trips of one answer (names, frames).
	queryTimeout = 5 * time.Second
	// drainTimeout bounds the answers finished on shutdown.
	drainTimeout = 5 * time.Second
	// setupTimeout bounds each step of the start (opening the stream and stores; the consumer).
	setupTimeout = 30 * time.Second
	// snapshotLoadTimeout bounds reading the snapshot on start.
	snapshotLoadTimeout = 5 * time.Minute
	// snapshotTimeout bounds writing a snapshot, on shutdown too.
	snapshotTimeout = 30 * time.Second
	// nameTTL is how long a display name is cached.
	nameTTL = time.Minute
	// errorPause is the pause after a consumer error, so a lost server is not polled in a loop.
	errorPause = 100 * time.Millisecond
	// instanceHeader names the instance that answered a request.
	instanceHeader = "Unread-Instance"
)

// Deps are what the service runs on, made by its main (or the all-in-one).
type Deps = platform.Deps

// Service is one unread instance. Any number may run against the same NATS.
type Service struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	nc    *nats.Conn
	ready chan struct{}

	stream jetstream.Stream
	store  jetstream.ObjectStore
	names  *nameCache

	proj     *Projection
	progress *progress
	// head is the log's last seq when the instance started: it is ready once it has applied it,
	// and publishes changes only for events after it.
	head atomic.Uint64
	// savedSeq is the seq of the last snapshot written or found (snapshot goroutine, then Run).
	savedSeq uint64

	slots   chan struct{} // one per answer in progress
	answers sync.WaitGroup
}

// New checks the configuration and prepares a service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("unread: config: %w", err)
	}
	if deps.NATS == nil || deps.Log == nil || deps.Ops == nil {
		return nil, errors.New("unread: NATS, Log and Ops are required")
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Log.With("service", "unread", "unread", cfg.ID),
		m: newMetrics(deps.Ops.Registry), nc: deps.NATS, ready: make(chan struct{}),
		proj: NewProjection(), progress: newProgress(), slots: make(chan struct{}, maxQueries),
	}
	deps.Ops.AddCheck("unread-nats", func(context.Context) error {
		if !s.nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	deps.Ops.AddCheck("unread", func(context.Context) error {
		select {
		case <-s.ready:
			return nil
		default:
			return fmt.Errorf("catching up: at seq %d of %d", s.progress.seq(), s.head.Load())
		}
	})
	return s, nil
}

// Ready is closed once the projection has caught up with the log's head at start and the
// service answers requests.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx is cancelled, then stops cleanly: it stops consuming, finishes the answers
// in progress (bounded), writes a final snapshot and returns. The caller drains NATS.
func (s *Service) Run(ctx context.Context) error {
	it, err := s.start(ctx)
	if err != nil {
		return err
	}
	snapCtx, stopSnapshots := context.WithCancel(context.WithoutCancel(ctx))
	snapDone := make(chan struct{})
	go func() { defer close(snapDone); s.snapshotter(snapCtx) }()

	subs, runErr := s.consume(ctx, it)
	if runErr != nil {
		s.log.Error("unread stopping", "err", runErr)
	}

	// Stop consuming; answer what can be answered (waiters behind the projection give up at once);
	// then save the state reached.
	it.Stop()
	s.progress.stop()
	for _, sub := range subs {
		platform.DrainSub(sub, drainTimeout)
	}
	s.waitAnswers()
	stopSnapshots()
	<-snapDone
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotTimeout)
	defer cancel()
	if s.proj.Seq() != s.savedSeq {
		if err := s.saveSnapshot(final); err != nil {
			s.log.Error("final snapshot", "err", err)
		}
	}
	s.log.Info("unread stopped", "seq", s.proj.Seq())
	return runErr
}

// consume applies the log's events until ctx is done; once the projection has caught up with
// the head seen at start, it starts answering requests (the subscriptions it returns).
func (s *Service) consume(ctx context.Context, it jetstream.MessagesContext) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	serveOnceCaughtUp := func() error {
		if subs != nil || s.progress.seq() < s.head.Load() {
			return nil
		}
		var err error
		subs, err = s.serve()
		return err
	}
	if err := serveOnceCaughtUp(); err != nil {
		return nil, err
	}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return subs, nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return subs, fmt.Errorf("unread: consumer closed: %w", err)
			}
			s.log.Warn("consumer: next", "err", err)
			platform.Sleep(ctx, errorPause)
			continue
		}
		s.handle(msg)
		if err := serveOnceCaughtUp(); err != nil {
			return subs, err
		}
	}
}

// start opens the stream and stores, loads the snapshot and starts the consumer after it.
func (s *Service) start(ctx context.Context) (jetstream.MessagesContext, error) {
	open, cancelOpen := context.WithTimeout(ctx, setupTimeout)
	defer cancelOpen()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("unread: jetstream: %w", err)
	}
	if err := schemas.Ensure(open, js, s.deps.Topology); err != nil {
		return nil, fmt.Errorf("unread: %w", err)
	}
	if s.stream, err = js.Stream(open, schemas.EventsStream); err != nil {
		return nil, fmt.Errorf("unread: stream %s: %w", schemas.EventsStream, err)
	}
	if s.store, err = js.ObjectStore(open, schemas.UnreadSnapshotBucket); err != nil {
		return nil, fmt.Errorf("unread: object store %s: %w", schemas.UnreadSnapshotBucket, err)
	}
	users, err := js.KeyValue(open, schemas.UsersBucket)
	if err != nil {
		return nil, fmt.Errorf("unread: bucket %s: %w", schemas.UsersBucket, err)
	}
	s.names = newNameCache(users, nameTTL)

	// The snapshot first, the head after: a snapshot another instance writes meanwhile is then
	// still behind the head.
	var snap *Projection
	if s.cfg.Rebuild {
		s.log.Info("rebuilding from the log, as configured")
	} else {
		load, cancel := context.WithTimeout(ctx, snapshotLoadTimeout)
		snap = s.loadSnapshot(load)
		cancel()
	}
	setup, cancelSetup := context.WithTimeout(ctx, setupTimeout)
	defer cancelSetup()
	info, err := s.stream.Info(setup)
	if err != nil {
		return nil, fmt.Errorf("unread: stream info: %w", err)
	}
	head := info.State.LastSeq
	s.head.Store(head)
	switch {
	case snap == nil:
	case snap.Seq() > head:
		// The log was recreated behind the snapshot: it describes another log.
		s.log.Warn("snapshot is ahead of the log: rebuilding from the log", "snapshot", snap.Seq(), "head", head)
	default:
		s.proj = snap
		s.log.Info("snapshot loaded", "seq", snap.Seq())
	}
	from := s.proj.Seq() + 1
	if from > 1 && from < info.State.FirstSeq {
		s.log.Warn("events after the snapshot are gone from the log: counts may be off",
			"snapshot", s.proj.Seq(), "first", info.State.FirstSeq)
	}
	s.savedSeq = s.proj.Seq()
	s.progress.advance(s.proj.Seq())
	s.m.appliedSeq.Set(float64(s.proj.Seq()))
	cons, err := s.stream.OrderedConsumer(setup, schemas.LiveConsumerConfig(from))
	if err != nil {
		return nil, fmt.Errorf("unread: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pullWindow))
	if err != nil {
		return nil, fmt.Errorf("unread: consume: %w", err)
	}
	s.log.Info("unread consuming", "from", from, "head", head)
	return it, nil
}

// handle applies one event and publishes the changes it made, once the instance is past the
// head it started at.
func (s *Service) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Warn("consumer: event without metadata", "err", err)
		return
	}
	seq := meta.Sequence.Stream
	s.proj.mu.Lock()
	changes, err := s.proj.apply(seq, msg.Subject(), msg.Data(), seq > s.head.Load())
	s.proj.mu.Unlock()
	s.progress.advance(seq)

	kind := schemas.SubjectKind(msg.Subject())
	switch kind {
	case schemas.TypeMessage, schemas.TypeMember, schemas.TypeRead:
	default:
		kind = eventOther
	}
	s.m.events.WithLabelValues(kind).Inc()
	s.m.appliedSeq.Set(float64(seq))
	s.m.lagSeconds.Set(time.Since(meta.Timestamp).Seconds())
	if err != nil {
		s.m.undecodable.Inc()
		s.log.Warn("skipping an event that cannot be applied", "seq", seq, "subject", msg.Subject(), "err", err)
	}
	cause := causeDel
	if kind == schemas.TypeRead {
		cause = causeRead
	}
	for _, ch := range changes {
		data, err := json.Marshal(ch)
		if err != nil {
			continue
		}
		if err := s.nc.Publish(schemas.UnreadChangedSubject(ch.User), data); err != nil {
			s.log.Warn("publish unread change", "seq", seq, "err", err)
			continue
		}
		s.m.pushes.WithLabelValues(cause).Inc()
	}
}

// serve joins the queue group once the projection has caught up, and marks the service ready.
func (s *Service) serve() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for subj, h := range map[string]nats.MsgHandler{
		schemas.UnreadConversationsRq: s.onConversations,
		schemas.UnreadStateRq:         s.onState,
	} {
		sub, err := s.nc.QueueSubscribe(subj, schemas.UnreadQueue, h)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return nil, fmt.Errorf("unread: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	if err := s.nc.Flush(); err != nil {
		s.log.Warn("flush subscriptions", "err", err)
	}
	s.log.Info("unread ready", "seq", s.proj.Seq(), "head", s.head.Load())
	close(s.ready)
	return subs, nil
}

// snapshotter saves the projection every SnapshotEvery when it changed.
func (s *Service) snapshotter(ctx context.Context) {
	tick := time.NewTicker(s.cfg.SnapshotEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.proj.Seq() == s.savedSeq {
			continue
		}
		save, cancel := context.WithTimeout(ctx, snapshotTimeout)
		if err := s.saveSnapshot(save); err != nil && ctx.Err() == nil {
			s.log.Warn("snapshot", "err", err)
		}
		cancel()
	}
}

// answer runs f for a request on its own goroutine, at most maxQueries at a time: a request
// waiting for the projection does not hold up the others.
func (s *Service) answer(f func()) {
	s.slots <- struct{}{}
	s.answers.Add(1)
	go func() {
		defer func() { <-s.slots; s.answers.Done() }()
		f()
	}()
}

func (s *Service) waitAnswers() {
	done := make(chan struct{})
	go func() { s.answers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		s.log.Warn("answers still running at shutdown")
	}
}

// progress is the seq the projection has applied; queries wait on it.
type progress struct {
	mu      sync.Mutex
	at      uint64
	stopped bool
	waiters map[*waiter]struct{}
}

type waiter struct {
	seq  uint64
	done chan struct{}
}

func newProgress() *progress { return &progress{waiters: map[*waiter]struct{}{}} }

func (p *progress) seq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at
}

// advance records that seq has been applied and wakes those waiting for it.
func (p *progress) advance(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at = seq
	for w := range p.waiters {
		if w.seq <= seq {
			close(w.done)
			delete(p.waiters, w)
		}
	}
}

// stop wakes every waiter: no more progress is coming.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for w := range p.waiters {
		close(w.done)
		delete(p.waiters, w)
	}
}

// wait reports whether seq is applied within timeout.
func (p *progress) wait(seq uint64, timeout time.Duration) bool {
	p.mu.Lock()
	if p.at >= seq || p.stopped {
		defer p.mu.Unlock()
		return p.at >= seq
	}
	w := &waiter{seq: seq, done: make(chan struct{})}
	p.waiters[w] = struct{}{}
	p.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.waiters, w)
	return p.at >= seq
}
