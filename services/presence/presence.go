// Package presence is the presence service: it turns the gateways' connection reports into one
// aggregate per user (online, away, offline; lastSeen; devices) kept in a KV bucket, and announces
// every change of status on core NATS. It talks to other services only through NATS.
//
// How it works (see schemas/presence.go for subjects, buckets and timings):
//
//   - Gateways report each connection on chat.presence.conn.<user> (connect, heartbeat, idle,
//     active, disconnect). Instances share the reports through a queue group; the one that gets a
//     report writes the connection's entry in chat_presence_conns (memory storage, entries expire
//     PresenceConnTTL after their last heartbeat) and recomputes the user's aggregate.
//   - Every instance watches chat_presence_conns: a connection deleted by another instance or
//     expired (a gateway killed without a goodbye stops heartbeating) makes it recompute the user.
//   - A user whose last connection went keeps its status for the grace period (the aggregate
//     carries OfflineAt); every instance watches chat_presence and sweeps those whose OfflineAt has
//     passed: if they still have no connection, they go offline.
//   - Every write of an aggregate is a compare-and-swap on its revision, and only the writer that
//     changed the status publishes the change: however many instances run, each change is
//     announced exactly once, and a conflict makes the loser read again.
package presence

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Internal sizes and timeouts.
const (
	// shardCount workers handle users, each user always on the same one: one user's reports,
	// recomputes and offline checks run in order and never concurrently within an instance.
	shardCount = 8
	shardQueue = 512
	// opTimeout bounds one task's NATS round trips.
	opTimeout = 10 * time.Second
	// drainTimeout bounds the queued work done on shutdown.
	drainTimeout = 5 * time.Second
	// maxCASAttempts bounds the re-reads of a recompute that keeps losing compare-and-swaps.
	maxCASAttempts = 8
	// maxReportBytes is the largest connection report accepted.
	maxReportBytes = 4096
)

// Deps are what the service runs on, made by its main (or the all-in-one).
type Deps = platform.Deps

// Service is one presence instance. Any number may run against the same NATS.
type Service struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	nc    *nats.Conn
	ready chan struct{}

	js      jetstream.JetStream
	conns   jetstream.KeyValue // chat_presence_conns
	aggs    jetstream.KeyValue // chat_presence
	connTTL time.Duration      // the conns bucket's TTL, as configured on the server
	known   *state
	gets    *platform.DirectGets // the direct gets listing connections

	base    context.Context // outlives Run's ctx until the queued work is done
	shards  []chan task
	quit    chan struct{}
	workers sync.WaitGroup
	now     func() time.Time
}

// task is work on one user, run by that user's shard worker.
type task func(ctx context.Context)

// New checks the configuration and prepares a service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("presence: config: %w", err)
	}
	if deps.NATS == nil || deps.Log == nil || deps.Ops == nil {
		return nil, errors.New("presence: NATS, Log and Ops are required")
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	m := newMetrics(deps.Ops.Registry)
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Log.With("service", "presence", "presence", cfg.ID),
		m: m, nc: deps.NATS, ready: make(chan struct{}), known: newState(m.pendingOffline), gets: platform.NewDirectGets(deps.NATS),
		quit: make(chan struct{}), now: time.Now,
	}
	for range shardCount {
		s.shards = append(s.shards, make(chan task, shardQueue))
	}
	deps.Ops.AddCheck("presence-nats", func(context.Context) error {
		if !s.nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	deps.Ops.AddCheck("presence", func(context.Context) error {
		select {
		case <-s.ready:
			return nil
		default:
			return errors.New("starting")
		}
	})
	return s, nil
}

// Ready is closed once the service has read both buckets and takes connection reports.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx is cancelled, then stops cleanly: it drains its subscription, stops its
// watchers and sweeper, finishes the queued work (bounded) and returns. The caller drains NATS.
func (s *Service) Run(ctx context.Context) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("presence: jetstream: %w", err)
	}
	s.js = js
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := schemas.Ensure(setup, js, s.deps.Topology); err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	if s.conns, err = js.KeyValue(setup, schemas.PresenceConnsBucket); err != nil {
		return fmt.Errorf("presence: bucket %s: %w", schemas.PresenceConnsBucket, err)
	}
	if s.aggs, err = js.KeyValue(setup, schemas.PresenceBucket); err != nil {
		return fmt.Errorf("presence: bucket %s: %w", schemas.PresenceBucket, err)
	}
	st, err := s.conns.Status(setup)
	if err != nil {
		return fmt.Errorf("presence: bucket %s: %w", schemas.PresenceConnsBucket, err)
	}
	if s.connTTL = st.TTL(); s.connTTL <= 0 {
		s.connTTL = schemas.PresenceConnTTL
	}
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	s.base = base
	for _, ch := range s.shards {
		s.workers.Add(1)
		go s.worker(ch)
	}
	stopWorkers := func() {
		close(s.quit)
		t := time.AfterFunc(drainTimeout, cancelBase)
		s.workers.Wait()
		t.Stop()
	}

	// Both buckets are read in full before any report is taken, so every decision starts from
	// what the buckets hold.
	watchCtx, stopWatches := context.WithCancel(base)
	defer stopWatches()
	var watchers sync.WaitGroup
	failed := make(chan error, 2)
	stopAll := func() {
		stopWatches()
		watchers.Wait()
		stopWorkers()
	}
	for _, w := range []*watch{
		{s: s, name: schemas.PresenceConnsBucket, kv: s.conns, apply: s.applyConn, reset: s.known.resetConns, settle: s.connTTL},
		{s: s, name: schemas.PresenceBucket, kv: s.aggs, apply: s.applyAgg, reset: s.known.resetAggs},
	} {
		if err := w.open(setup, base); err != nil {
			stopAll()
			return fmt.Errorf("presence: watch %s: %w", w.name, err)
		}
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			if err := w.loop(watchCtx); err != nil {
				failed <- err
			}
		}()
	}

	sub, err := s.nc.QueueSubscribe(schemas.PresenceConnAll, schemas.PresenceQueue, s.onReport)
	if err != nil {
		stopAll()
		return fmt.Errorf("presence: subscribe: %w", err)
	}
	// Ready means the server has the subscription: a report published after Ready is heard.
	if err := s.nc.Flush(); err != nil {
		s.log.Warn("flush subscription", "err", err)
	}
	s.reconcile("start")
	sweepCtx, stopSweep := context.WithCancel(base)
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); s.sweeper(sweepCtx) }()
	s.log.Info("presence ready", "grace", s.cfg.Grace, "sweep", s.cfg.Sweep, "connTTL", s.connTTL)
	close(s.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-failed:
		runErr = fmt.Errorf("presence: %w", err)
		s.log.Error("presence stopping", "err", runErr)
	}

	// Stop taking reports (the queue group hands them to the other instances) after handling
	// those already received; then the sweeper, the watchers and the workers.
	s.drainSub(sub)
	stopSweep()
	<-sweepDone
	stopAll()
	s.gets.Stop()
	s.log.Info("presence stopped")
	return runErr
}

func (s *Service) drainSub(sub *nats.Subscription) {
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	select {
	case <-closed:
	case <-time.After(drainTimeout):
		_ = sub.Unsubscribe()
	}
}

// shard is the worker queue of user.
func (s *Service) shard(user string) chan task {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return s.shards[h.Sum32()%uint32(len(s.shards))]
}

// dispatch queues t on user's worker; it reports false if the service is stopping.
func (s *Service) dispatch(user string, t task) bool {
	select {
	case <-s.quit:
		return false
	default:
	}
	select {
	case s.shard(user) <- t:
		return true
	case <-s.quit:
		return false
	}
}

func (s *Service) worker(ch chan task) {
	defer s.workers.Done()
	run := func(t task) {
		ctx, cancel := context.WithTimeout(s.base, opTimeout)
		defer cancel()
		t(ctx)
	}
	for {
		select {
		case t := <-ch:
			run(t)
		case <-s.quit:
			for {
				select {
				case t := <-ch:
					if s.base.Err() == nil {
						run(t)
					}
				default:
					return
				}
			}
		}
	}
}

// sweeper checks the pending offlines every Sweep, and forgets old tombstones.
func (s *Service) sweeper(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Sweep)
	defer tick.Stop()
	var forgotAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := s.now()
		if now.Sub(forgotAt) > s.connTTL {
			s.known.forget(now.Add(-3*s.connTTL), now)
			forgotAt = now
		}
		for _, user := range s.known.dueOffline(now) {
			if !s.dispatch(user, func(ctx context.Context) {
				defer s.known.checked(user)
				s.offlineCheck(ctx, user)
			}) {
				s.known.checked(user)
			}
		}
	}
}

// reconcile recomputes the users whose aggregate disagrees with the connections this instance
// knows of: not offline but without connections or pending offline (NATS lost its memory bucket,
// or instances were down when connections expired), with live connections but marked offline, or
// with another number of devices. Consistent users produce nothing, so a restart is silent.
func (s *Service) reconcile(why string) {
	users := s.known.inconsistent()
	if len(users) > 0 {
		s.log.Info("recomputing inconsistent aggregates", "why", why, "users", len(users))
	}
	for _, user := range users {
		s.dispatch(user, func(ctx context.Context) { s.recomputeLogged(ctx, user, why) })
	}
}
