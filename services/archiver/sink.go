package archiver

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// housekeeping is how often the sink renews queued events and updates the lag.
	housekeeping = 100 * time.Millisecond
	// existingChunk bounds the seqs of one existing check.
	existingChunk = 10_000
	// readerPause is the first pause after the consumer's iterator failed.
	readerPause = 100 * time.Millisecond
	// maxInflightBatches is how many batches are stored at once (mapped, checked and inserted):
	// while one is in ClickHouse, the next one is mapped, checked and sent (measured: one at a
	// time left ClickHouse idle a third of the time). A stored batch is acknowledged outside this
	// bound: acknowledging 5000 events (a message each, which the server reads and applies in
	// turn) took 10-100 ms, during which the slot would keep the next batch from ClickHouse.
	maxInflightBatches = 2
)

// pend is one event in hand: delivered to this instance, not yet acknowledged.
type pend struct {
	msg     jetstream.Msg
	seq     uint64
	stored  time.Time // JetStream's timestamp of the event
	arrived time.Time // when the sink received it
	// touched is when its ack wait last (re)started, as far as this instance knows: its arrival,
	// or the last progress signal sent before a successful flush. Written by whoever holds it:
	// the collector while queued, the batch's goroutine once handed over.
	touched time.Time
	size    int
	// redelivered: JetStream delivered it before (to this instance or another).
	redelivered bool
}

// sink runs the collector: it takes the events the reader received, hands batches to archiving
// goroutines (at most maxInflightBatches storing at once; their events are disjoint), keeps
// queued events in progress and measures the lag. It returns when ctx is done (after the batches
// in hand are finished, within ShutdownTimeout) or NATS is closed.
func (s *Service) sink(ctx context.Context) error {
	rd := newReader(s)
	defer rd.cancel()
	go rd.run()
	received, ended := rd.ready, rd.done
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var (
		queue   []pend
		qBytes  int
		storing int         // batches being stored (mapped, checked, inserted)
		held    []time.Time // the oldest event of each batch in hand, until it is acknowledged
		release = make(chan struct{})
		done    = make(chan time.Time)
		// stopping: no new batch is cut; the loop ends once the reader is done and no batch is
		// in hand.
		stopping bool
		failure  error
		ctxDone  = ctx.Done()
		giveUp   <-chan time.Time
	)
	tick := time.NewTicker(housekeeping)
	defer tick.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		if storing < maxInflightBatches && !stopping && len(queue) > 0 &&
			(len(queue) >= s.cfg.BatchSize || qBytes >= maxBatchBytes || time.Since(queue[0].arrived) >= s.cfg.BatchWait) {
			n, size := 0, 0
			for n < len(queue) && n < s.cfg.BatchSize && (n == 0 || size+queue[n].size <= maxBatchBytes) {
				size += queue[n].size
				n++
			}
			batch := slices.Clone(queue[:n])
			queue = slices.Delete(queue, 0, n)
			qBytes -= size
			oldest := oldestStored(batch)
			storing++
			held = append(held, oldest)
			go func() {
				s.archive(work, batch, func() { release <- struct{}{} })
				done <- oldest
			}()
			continue // another batch may be ready too
		}
		if stopping && ended == nil && len(held) == 0 {
			break
		}
		var wakeC <-chan time.Time
		if storing < maxInflightBatches && !stopping && len(queue) > 0 {
			wake.Reset(s.cfg.BatchWait - time.Since(queue[0].arrived))
			wakeC = wake.C
		}
		select {
		case <-received:
			queue, qBytes = s.enqueue(queue, qBytes, rd.take())
		case <-ended:
			// The reader is done: what it still holds is all that will come.
			queue, qBytes = s.enqueue(queue, qBytes, rd.take())
			received, ended = nil, nil
			if !stopping {
				failure = errors.New("archiver: the consumer stopped: NATS connection closed")
				stopping, ctxDone, giveUp = true, nil, time.After(s.cfg.ShutdownTimeout)
			}
		case <-release:
			storing--
		case t := <-done:
			if i := slices.Index(held, t); i >= 0 {
				held = slices.Delete(held, i, i+1)
			}
		case <-wakeC:
		case <-tick.C:
			s.renew(queue, false)
			s.setLag(earliest(append([]time.Time{oldestStored(queue)}, held...)...))
		case <-ctxDone:
			stopping, ctxDone, giveUp = true, nil, time.After(s.cfg.ShutdownTimeout)
			rd.stop()
		case <-giveUp:
			giveUp = nil
			cancelWork()
		}
	}
	// Events only queued were never sent to ClickHouse: hand them to another instance at once.
	for _, p := range queue {
		_ = p.msg.Nak()
	}
	s.setLag(time.Now())
	return failure
}

// enqueue appends the received messages to the queue of qBytes bytes, all arrived now.
func (s *Service) enqueue(queue []pend, qBytes int, msgs []jetstream.Msg) ([]pend, int) {
	now := time.Now()
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			s.log.Warn("consumer: a message without metadata", "err", err)
			s.m.errors.WithLabelValues(opConsume).Inc()
			continue
		}
		p := pend{msg: m, seq: meta.Sequence.Stream, stored: meta.Timestamp, arrived: now, touched: now,
			size: len(m.Data()) + len(m.Subject()) + 64, redelivered: meta.NumDelivered > 1}
		queue = append(queue, p)
		qBytes += p.size
	}
	return queue, qBytes
}

func oldestStored(ps []pend) time.Time {
	var t time.Time
	for i := range ps {
		if t.IsZero() || ps[i].stored.Before(t) {
			t = ps[i].stored
		}
	}
	return t
}

// setLag records the age of the oldest event in hand (oldest: now when there is none).
func (s *Service) setLag(oldest time.Time) {
	if oldest.IsZero() {
		oldest = time.Now()
	}
	lag := max(time.Since(oldest), 0)
	s.lag.Store(int64(lag))
	s.m.lagSeconds.Set(lag.Seconds())
}

// earliest of times, ignoring zero ones.
func earliest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}

// renew sends a progress signal for the events whose ack wait started more than a quarter of
// AckWait ago (all with force), so they are not redelivered while this instance holds them. With
// flush it waits until the server has the signals and only then counts them as renewed.
func (s *Service) renew(ps []pend, flush bool) error {
	limit := time.Now().Add(-s.cfg.AckWait / 4)
	var stale []int
	for i := range ps {
		if ps[i].touched.Before(limit) {
			stale = append(stale, i)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	at := time.Now()
	for _, i := range stale {
		if err := ps[i].msg.InProgress(); err != nil {
			s.m.errors.WithLabelValues(opAck).Inc()
			return err
		}
	}
	if flush {
		if err := s.nc.FlushTimeout(min(s.cfg.AckWait/4, 5*time.Second)); err != nil {
			s.m.errors.WithLabelValues(opAck).Inc()
			return err
		}
	}
	for _, i := range stale {
		ps[i].touched = at
	}
	return nil
}

// archive stores a batch in ClickHouse and acknowledges it: it inserts the rows ClickHouse does
// not hold yet, retrying with backoff until it succeeds or ctx ends (shutdown's bound; the batch
// is then neither acknowledged nor handed back, see the package doc). It calls release once
// ClickHouse is done with the batch (inserted, or given up), before acknowledging it.
func (s *Service) archive(ctx context.Context, batch []pend, release func()) bool {
	// In seq order (usually already: one delivery each, in stream order), so that an event
	// delivered twice (a redelivery while the first copy was in hand) is next to its copy and
	// becomes one row.
	slices.SortFunc(batch, func(a, b pend) int { return cmp.Compare(a.seq, b.seq) })
	rows := make([]chstore.Row, 0, len(batch))
	seqs := make([]uint64, 0, len(batch))
	for i := range batch {
		p := &batch[i]
		if i > 0 && p.seq == batch[i-1].seq {
			continue
		}
		seqs = append(seqs, p.seq)
		rows = append(rows, chstore.RowOf(p.seq, p.msg.Subject(), p.msg.Data(), p.stored))
	}
	ok := s.store(ctx, batch, rows)
	release()
	if !ok {
		return false
	}
	if s.cfg.afterInsert != nil {
		s.cfg.afterInsert(seqs)
	}
	var ackErr error
	for i := range batch {
		if err := batch[i].msg.Ack(); err != nil && ackErr == nil {
			ackErr = err
		}
	}
	if ackErr != nil {
		// Redelivered later and found archived by the existing check.
		s.m.errors.WithLabelValues(opAck).Inc()
		s.log.Warn("acknowledging an archived batch failed; it will be redelivered and skipped", "err", ackErr)
	}
	s.m.batches.Inc()
	s.m.batchSize.Observe(float64(len(batch)))
	return true
}

// store inserts the batch's rows ClickHouse does not hold yet, retrying with backoff; false if
// ctx ended first.
func (s *Service) store(ctx context.Context, batch []pend, rows []chstore.Row) bool {
	redelivered := slices.ContainsFunc(batch, func(p pend) bool { return p.redelivered })
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.m.retries.Inc()
			if !s.pause(ctx, batch, s.backoff(attempt-1)) {
				s.log.Warn("shutdown: gave up a batch ClickHouse did not take; it is redelivered after the ack wait",
					"events", len(batch), "attempts", attempt)
				return false
			}
		}
		// The messages' ack wait restarts (and the server knows it) before the attempt starts.
		if err := s.renew(batch, true); err != nil {
			if attempt%10 == 0 {
				s.log.Warn("keeping a batch in progress failed; not inserting until it succeeds", "err", err)
			}
			continue
		}
		start := time.Now()
		// An earlier attempt at these rows may have partly succeeded: check the table itself.
		added, err := s.insertMissing(ctx, rows, attempt > 0 || redelivered)
		if err != nil {
			if ctx.Err() != nil {
				s.log.Warn("shutdown: gave up a batch while inserting; it is redelivered after the ack wait",
					"events", len(batch), "err", err)
				return false
			}
			s.chIsDown()
			s.m.errors.WithLabelValues(opInsert).Inc()
			if attempt%10 == 0 {
				s.log.Warn("archiving a batch failed; retrying", "events", len(rows), "first", rows[0].Seq,
					"attempt", attempt+1, "err", err)
			}
			continue
		}
		s.chIsUp()
		s.m.insertSeconds.Observe(time.Since(start).Seconds())
		s.m.rowsInserted.Add(float64(added))
		s.m.duplicates.Add(float64(len(rows) - added))
		if attempt > 0 {
			s.log.Info("batch archived after retries", "events", len(rows), "attempts", attempt+1)
		}
		return true
	}
}

// pause waits d before the next attempt, keeping the batch in progress meanwhile; false if ctx
// ended first.
func (s *Service) pause(ctx context.Context, batch []pend, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		if !platform.Sleep(ctx, min(left, s.cfg.AckWait/8)) {
			return false
		}
		_ = s.renew(batch, false)
	}
}

// insertMissing inserts the rows whose seqs ClickHouse does not hold, in one INSERT, within
// InsertTimeout; it returns how many it inserted. It asks the seq index which rows are stored,
// or with exact the events table itself (chstore.ExistingInTable).
func (s *Service) insertMissing(ctx context.Context, rows []chstore.Row, exact bool) (int, error) {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	ictx = chContext(ictx)
	existing := chstore.Existing
	if exact {
		existing = chstore.ExistingInTable
		s.m.exactChecks.Inc()
	}
	have := map[uint64]bool{}
	for start := 0; start < len(rows); start += existingChunk {
		part, err := existing(ictx, s.ch, s.cfg.Database, rows[start:min(start+existingChunk, len(rows))])
		if err != nil {
			return 0, err
		}
		for seq := range part {
			have[seq] = true
		}
	}
	missing := rows
	if len(have) > 0 {
		missing = make([]chstore.Row, 0, len(rows)-len(have))
		for _, r := range rows {
			if !have[r.Seq] {
				missing = append(missing, r)
			}
		}
	}
	if err := chstore.Insert(ictx, s.ch, s.cfg.Database, missing); err != nil {
		return 0, err
	}
	return len(missing), nil
}

// chContext carries the settings every archiver statement runs with.
func chContext(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": maxQuerySize}))
}

// reader pulls messages from the consumer for the sink. Its callback appends what arrives to a
// list the sink takes whole when woken (one hand-over per wake-up, not one per message). It
// subscribes again when the consumer goes away, and on stop drains the subscription: the messages
// already buffered still reach the sink.
type reader struct {
	s      *Service
	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	// ready holds a wake-up while msgs may be non-empty; done is closed once nothing more will
	// be added to msgs.
	ready chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	msgs    []jetstream.Msg
	cc      jetstream.ConsumeContext
	stopped bool
}

func newReader(s *Service) *reader {
	ctx, cancel := context.WithCancel(context.Background())
	return &reader{s: s, ctx: ctx, cancel: cancel, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// add is the subscription's callback.
func (r *reader) add(m jetstream.Msg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	wake := len(r.msgs) == 1
	r.mu.Unlock()
	if wake {
		select {
		case r.ready <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// take returns the messages received since the last take.
func (r *reader) take() []jetstream.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	msgs := r.msgs
	r.msgs = nil
	return msgs
}

func (r *reader) run() {
	defer close(r.done)
	fresh := false
	for attempt := 0; ; attempt++ {
		cc, err := r.open(fresh)
		if err == nil && cc == nil {
			return // stopped
		}
		if err == nil {
			attempt = 0
			// Closed once the subscription ended (stopped or drained, the consumer deleted, NATS
			// closed) and its callback returned for the last time.
			<-cc.Closed()
		} else {
			r.s.m.errors.WithLabelValues(opConsume).Inc()
			r.s.log.Warn("consumer: subscribing failed; retrying", "err", err)
		}
		if r.isStopped() || r.s.nc.IsClosed() {
			return
		}
		// The subscription ended by itself: the consumer was deleted or NATS reconnected elsewhere.
		fresh = true
		if !platform.Sleep(r.ctx, min(readerPause<<min(attempt, 8), 10*time.Second)) {
			return
		}
	}
}

func (r *reader) open(fresh bool) (jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(r.ctx, setupTimeout)
	defer cancel()
	cons, err := r.s.consumer(ctx, fresh)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, nil
	}
	cc, err := cons.Consume(r.add, jetstream.PullMaxMessages(r.s.cfg.BatchSize),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.s.log.Debug("consumer: consume", "err", err)
		}))
	if err != nil {
		return nil, err
	}
	r.cc = cc
	return cc, nil
}

func (r *reader) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// stop stops pulling: the messages already buffered are still delivered, then done is closed.
func (r *reader) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	if r.cc != nil {
		r.cc.Drain()
	}
}

// jitter is a random duration in [0, n).
func jitter(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return rand.Int64N(n)
}
