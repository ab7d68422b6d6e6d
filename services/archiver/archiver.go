// Package archiver is the archiver service, the only part of the system that talks to
// ClickHouse: it streams every event of the log into the archive, answers history requests the
// stream no longer can, runs analytics reports, and trims the stream to a window once events are
// archived. It talks to other services only through NATS (the contract: schemas/archive.go).
//
// # The sink: every event into ClickHouse exactly once
//
// A durable pull consumer, "archiver" on CHAT_EVENTS (every subject, explicit acks), is shared by
// every archiver instance. An instance collects up to BatchSize events (or what arrived within
// BatchWait), maps them to rows (chstore.RowOf, keyed by stream sequence), asks ClickHouse which
// of these seqs it already holds and inserts only the others, as one INSERT; it acknowledges the
// batch's messages only after ClickHouse accepted it.
// While a batch waits, is inserted or is retried, its messages are kept in progress
// (msg.InProgress) so JetStream does not hand them to another instance. When ClickHouse fails,
// the same batch is retried with a bounded exponential backoff: never acknowledged, never
// dropped, so nothing is lost however long ClickHouse is away.
//
// Why no event is stored twice, without FINAL and without relying on merges:
//
//   - The existing-seq check runs before every attempt and reads what earlier inserts committed,
//     so only the missing rows go in. An attempt that may follow an earlier one at the same rows
//     (a retry, or a batch holding an event JetStream delivered before: the archiver died or lost
//     NATS between insert and ack, or an ack got lost) checks the events table itself
//     (chstore.ExistingInTable), so an insert that partly succeeded (one part per monthly
//     partition, or the table written but not its view) is completed, not repeated. Every other
//     attempt, the first at first deliveries, checks the seq index (chstore.Existing: a table
//     ordered by seq, filled by the events table's materialized view), which costs the same however
//     large the archive; the table's own check reads the month's seqs, so it is kept to the rare
//     attempts that need it. The index catches what a consumer created again delivers anew.
//   - Two archivers get disjoint messages from the shared consumer: JetStream delivers a message
//     to one pull request at a time, and again only once its ack wait has passed without an ack or
//     progress signal.
//   - A zombie (an instance whose messages were redelivered elsewhere while it still works on
//     them) is prevented by timing: before each attempt the instance renews its messages' ack
//     wait (InProgress, then a NATS flush, so the server has it) unless it did so less than a
//     quarter of AckWait ago, and an attempt is bounded by InsertTimeout <= AckWait/3. An attempt
//     therefore ends (succeeds or is cancelled) well before any redelivery of its messages can
//     happen, and the redelivered copy's existing check sees what it wrote. The remaining
//     assumption: ClickHouse does not commit an insert the client cancelled more than
//     AckWait - InsertTimeout (40 s by default) later. The table (ReplacingMergeTree keyed by
//     conv, seq) would fold such a copy at its next merge, a second line of defence no query
//     relies on; queries also de-duplicate by seq.
//   - A batch given up at shutdown (ClickHouse unreachable within the drain bound) is neither
//     acknowledged nor handed back: it is redelivered after AckWait, when any attempt of it is
//     long over. Events that were only queued are handed back at once (Nak).
//
// The consumer's ack floor is therefore a sound "archived up to" mark: every event at or below it
// is in ClickHouse. Events requests report it, and trimming never goes past it.
//
// # Trimming the stream
//
// With CHAT_ARCHIVE_KEEP or CHAT_ARCHIVE_KEEP_BYTES set, every instance purges the stream below
// min(the ack floor + 1, the first event newer than now - max(Keep, dedup window), the first seq
// that leaves the stream within KeepBytes (when set)) every TrimEvery. Events leave the stream
// only once archived: an archiver or ClickHouse outage never loses them, the stream grows
// meanwhile. This replaces JetStream's MaxAge/MaxBytes retention when an archive is configured.
// Purging below a seq is idempotent and the ack floor never moves back, so instances trimming at
// the same time are harmless.
//
// # Requests
//
// In queue group "archiver": chat.archive.req.events (history older than the stream keeps, with
// the gateway's visibility rules) and chat.archive.req.analytics (reports of the analytics
// package). Every identifier is validated before it reaches SQL and values are bound by the
// driver or are numbers.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Internal sizes and timeouts.
const (
	// setupTimeout bounds each NATS step of the start.
	setupTimeout = 30 * time.Second
	// drainTimeout bounds draining a subscription on shutdown.
	drainTimeout = 5 * time.Second
	// pingEvery is how often ClickHouse is pinged when nothing else showed it is up.
	pingEvery = 2 * time.Second
	// migrateTimeout bounds one attempt at applying the schema. A step may backfill from the
	// whole archive (version 2 indexes every stored seq: 50M rows took 4.3 s on 2 cores), and an
	// attempt cut short starts again from scratch, so the bound is far above any archive's
	// backfill; an unreachable ClickHouse fails the dial within seconds instead.
	migrateTimeout = 30 * time.Minute
	// floorEvery is how often the consumer's ack floor (archived seq) is read.
	floorEvery = 500 * time.Millisecond
	// maxAnswers bounds the requests answered at once; more wait in the subscription.
	maxAnswers = 16
	// maxBatchBytes bounds one insert's payload bytes, whatever BatchSize says.
	maxBatchBytes = 32 << 20
	// maxQuerySize is the ClickHouse max_query_size the archiver's statements run with: an
	// existing check of a large batch or an events request over many conversations is long.
	maxQuerySize = 16 << 20
)

// Deps are what the service runs on, made by its main (or the all-in-one).
type Deps struct {
	NATS *nats.Conn
	Log  *slog.Logger
	// Ops carries the metrics registry and readiness checks.
	Ops *platform.Ops
	// Topology shapes the stream and buckets created on first start; the dedup window bounds Keep.
	Topology schemas.Topology
	// SkipReadiness leaves the archiver's checks out of Ops' readiness: for the all-in-one, whose
	// readiness is the chat server's, which an unreachable ClickHouse must not take offline. The
	// metrics (chat_archiver_clickhouse_up, _lag_seconds) still tell.
	SkipReadiness bool
}

// Service is one archiver instance. Any number may run against the same NATS and ClickHouse.
type Service struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	nc    *nats.Conn
	ready chan struct{}

	ch        driver.Conn
	js        jetstream.JetStream
	stream    jetstream.Stream
	archiveKV jetstream.KeyValue

	consMu sync.Mutex
	cons   jetstream.Consumer

	// chUp: the last ClickHouse operation succeeded; chOKAt: when one last did (unix nanos).
	chUp   atomic.Bool
	chOKAt atomic.Int64
	// lag is the age of the oldest event in hand (nanoseconds; 0: none).
	lag atomic.Int64
	// floor is the consumer's ack floor as last read: every event up to it is archived.
	floor atomic.Uint64

	slots   chan struct{}
	answers sync.WaitGroup

	// trimRuns counts trim passes (tests wait on it).
	trimRuns atomic.Int64
}

// New checks the configuration and prepares a service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("archiver: config: %w", err)
	}
	if !cfg.Enabled() {
		return nil, errors.New("archiver: no ClickHouse address configured (CHAT_CLICKHOUSE_ADDR)")
	}
	if err := cfg.ValidateTopology(deps.Topology); err != nil {
		return nil, fmt.Errorf("archiver: config: %w", err)
	}
	if deps.NATS == nil || deps.Log == nil || deps.Ops == nil {
		return nil, errors.New("archiver: NATS, Log and Ops are required")
	}
	password, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("archiver: config: %w", err)
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	if cfg.windows == (windowing{}) {
		cfg.windows = defaultWindows
	}
	ch, err := clickhouse.Open(&clickhouse.Options{
		Addr:             cfg.Addrs,
		Auth:             clickhouse.Auth{Username: cfg.User, Password: password},
		DialTimeout:      5 * time.Second,
		MaxOpenConns:     maxAnswers + 4,
		MaxIdleConns:     4,
		ConnMaxLifetime:  time.Hour,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:       clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "chat-archiver", Version: "1"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("archiver: clickhouse: %w", err)
	}
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Log.With("service", "archiver", "archiver", cfg.ID),
		m: newMetrics(deps.Ops.Registry), nc: deps.NATS, ready: make(chan struct{}), ch: ch,
		slots: make(chan struct{}, maxAnswers),
	}
	if deps.SkipReadiness {
		return s, nil
	}
	deps.Ops.AddCheck("archiver-nats", func(context.Context) error {
		if !s.nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	deps.Ops.AddCheck("archiver", func(context.Context) error {
		select {
		case <-s.ready:
		default:
			return errors.New("starting: applying the schema or setting up the consumer")
		}
		if !s.chUp.Load() {
			return errors.New("clickhouse unreachable")
		}
		if lag := time.Duration(s.lag.Load()); cfg.ReadyLag > 0 && lag > cfg.ReadyLag {
			return fmt.Errorf("lagging: the oldest event in hand is %s old", lag.Round(time.Second))
		}
		return nil
	})
	return s, nil
}

// Ready is closed once the schema is applied, the consumer runs and requests are answered.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run archives and answers until ctx is cancelled, then stops cleanly: it stops fetching,
// finishes (inserts and acknowledges) the batch in hand within a bound, hands queued events back,
// finishes the answers in progress and returns. The caller drains NATS.
func (s *Service) Run(ctx context.Context) error {
	defer s.ch.Close()
	pingCtx, stopPing := context.WithCancel(context.WithoutCancel(ctx))
	pingDone := make(chan struct{})
	go func() { defer close(pingDone); s.pinger(pingCtx) }()
	defer func() { stopPing(); <-pingDone }()

	if !s.migrate(ctx) {
		return nil // stopped before ClickHouse answered
	}
	if err := s.setup(ctx); err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.floorLoop(bg) }()
	if s.cfg.Trims() {
		wg.Add(1)
		go func() { defer wg.Done(); s.trimmer(bg) }()
	}
	subs, err := s.serve()
	if err != nil {
		stopBG()
		wg.Wait()
		return err
	}
	close(s.ready)
	s.log.Info("archiver ready", "database", s.cfg.Database, "batch", s.cfg.BatchSize, "keep", s.cfg.Keep,
		"keepBytes", s.cfg.KeepBytes)

	runErr := s.sink(ctx)
	if runErr != nil {
		s.log.Error("archiver stopping", "err", runErr)
	}
	for _, sub := range subs {
		platform.DrainSub(sub, drainTimeout)
	}
	s.waitAnswers()
	stopBG()
	wg.Wait()
	s.log.Info("archiver stopped", "archived", s.floor.Load())
	return runErr
}

// migrate applies the schema, retrying until ClickHouse answers; false if ctx ended first.
func (s *Service) migrate(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
		v, err := chstore.Migrate(mctx, s.ch, s.cfg.Database)
		cancel()
		if err == nil {
			s.chIsUp()
			s.log.Info("archive schema applied", "database", s.cfg.Database, "version", v)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.chIsDown()
		s.m.errors.WithLabelValues(opMigrate).Inc()
		if attempt%10 == 0 {
			s.log.Warn("applying the archive schema; retrying", "attempt", attempt+1, "err", err)
		}
		if !platform.Sleep(ctx, s.backoff(attempt)) {
			return false
		}
	}
}

// setup opens the stream and creates (or updates) the shared durable consumer.
func (s *Service) setup(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return fmt.Errorf("archiver: jetstream: %w", err)
	}
	if err := schemas.Ensure(sctx, s.js, s.deps.Topology); err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	if s.archiveKV, err = s.js.KeyValue(sctx, schemas.ArchiveBucket); err != nil {
		return fmt.Errorf("archive bucket: %w", err)
	}
	if s.stream, err = s.js.Stream(sctx, schemas.EventsStream); err != nil {
		return fmt.Errorf("archiver: stream %s: %w", schemas.EventsStream, err)
	}
	info := s.stream.CachedInfo()
	if info.Config.MaxAge > 0 || info.Config.MaxBytes > 0 {
		s.log.Warn("the stream has its own retention (CHAT_RETENTION / CHAT_RETENTION_BYTES): events may leave it "+
			"before they are archived; with an archive, set CHAT_ARCHIVE_KEEP / CHAT_ARCHIVE_KEEP_BYTES instead",
			"maxAge", info.Config.MaxAge, "maxBytes", info.Config.MaxBytes)
	}
	if s.cfg.Trims() && s.cfg.Keep > 0 && s.cfg.Keep < info.Config.Duplicates {
		s.log.Warn("archive-keep is shorter than the stream's dedup window: the window is kept",
			"keep", s.cfg.Keep, "dedup", info.Config.Duplicates)
	}
	if _, err := s.consumer(sctx, true); err != nil {
		return err
	}
	return nil
}

// consumerConfig is the durable consumer every instance shares.
func (s *Service) consumerConfig() jetstream.ConsumerConfig {
	return schemas.ArchiverConsumerConfig(s.cfg.AckWait, 4*s.cfg.BatchSize)
}

// consumer returns the durable consumer, creating or updating it when fresh is set (at start, and
// when it was found deleted).
func (s *Service) consumer(ctx context.Context, fresh bool) (jetstream.Consumer, error) {
	s.consMu.Lock()
	defer s.consMu.Unlock()
	if s.cons != nil && !fresh {
		return s.cons, nil
	}
	c, err := s.stream.CreateOrUpdateConsumer(ctx, s.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("archiver: consumer %s: %w", schemas.ArchiverConsumer, err)
	}
	s.cons = c
	return c, nil
}

// floorLoop reads the consumer's ack floor and backlog every floorEvery.
func (s *Service) floorLoop(ctx context.Context) {
	t := time.NewTicker(floorEvery)
	defer t.Stop()
	for {
		s.readFloor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readFloor reads the consumer's ack floor: every event up to it is archived. It never moves the
// cached value back.
func (s *Service) readFloor(ctx context.Context) (uint64, error) {
	cons, err := s.consumer(ctx, false)
	if err != nil {
		return s.floor.Load(), err
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			s.log.Warn("the archiver consumer is gone: creating it again")
			_, err = s.consumer(ictx, true)
		}
		return s.floor.Load(), err
	}
	for {
		old := s.floor.Load()
		if info.AckFloor.Stream <= old || s.floor.CompareAndSwap(old, info.AckFloor.Stream) {
			break
		}
	}
	s.m.archivedSeq.Set(float64(s.floor.Load()))
	s.m.pending.Set(float64(info.NumPending))
	return s.floor.Load(), nil
}

// pinger pings ClickHouse when nothing else has shown it up lately, so readiness follows it
// while no events flow.
func (s *Service) pinger(ctx context.Context) {
	t := time.NewTicker(pingEvery / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.chOKAt.Load())) < pingEvery {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, pingEvery)
		err := s.ch.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			s.chIsUp()
		case ctx.Err() == nil:
			s.chIsDown()
		}
	}
}

func (s *Service) chIsUp() {
	s.chOKAt.Store(time.Now().UnixNano())
	if !s.chUp.Swap(true) {
		s.m.clickhouseUp.Set(1)
	}
}

func (s *Service) chIsDown() {
	if s.chUp.Swap(false) {
		s.log.Warn("clickhouse unreachable")
	}
	s.m.clickhouseUp.Set(0)
}

// backoff is the pause before attempt+1: exponential from RetryMin, at most RetryMax, with
// jitter so instances do not retry in step.
func (s *Service) backoff(attempt int) time.Duration {
	d := s.cfg.RetryMin
	for i := 0; i < attempt && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return d - time.Duration(jitter(int64(d/5)))
}
