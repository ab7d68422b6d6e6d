package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/eventchat/chat/services/archiver/localch"
	"github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The archive phase, on a local ClickHouse server started from the installed binary (18.16 here)
// and a fresh nats-server (fsync off: ClickHouse is what is measured):
//   - raw: clickhouse-go batch inserts of the archive's rows, same schema and batch size (the
//     same chstore.Insert the archiver uses), one at a time, each run into an empty table of a
//     database of its own: the ceiling. The server is warmed up first with an untimed insert (a
//     fresh server's first inserts are slower, which favoured the archiver, timed later), and
//     raw runs before and after the archiver: the ratio is to their mean, so load on the machine
//     that comes or goes during the phase weighs on both sides. A run with two inserts in flight,
//     as the archiver has, is logged for reference;
//   - archiver: the stream holds the same events; a fresh archiver drains it into ClickHouse,
//     timed from ready (schema applied, consumer created) to everything acknowledged (rows/s),
//     then end-to-end lag at a fixed publish rate (publish to acknowledged, i.e. in ClickHouse);
//   - history: the archive is filled to HistoryRows rows (raw inserts), then the newest 50 events
//     of a random conversation are asked of the archiver over NATS, as the gateway does.

// archiveResult is the phase's figures.
type archiveResult struct {
	ClickHouse    string  `json:"clickhouse"`
	Rows          int     `json:"rows"`
	BatchSize     int     `json:"batchSize"`
	RawRowsPerSec float64 `json:"rawRowsPerSec"`
	// RawBefore and RawAfter are the two raw runs RawRowsPerSec is the mean of; RawInflight2
	// is raw with two inserts in flight (reference only).
	RawBefore      float64 `json:"rawBeforeRowsPerSec"`
	RawAfter       float64 `json:"rawAfterRowsPerSec"`
	RawInflight2   float64 `json:"rawInflight2RowsPerSec"`
	ArchiverPerSec float64 `json:"archiverRowsPerSec"`
	// RawCPU and ArchiverCPU split the CPU time per row of the first raw run and of the drain
	// between the ClickHouse server and this process (the client; the archiver and its nats-server).
	RawCPU       cpuPerRow `json:"rawCpuPerRow"`
	ArchiverCPU  cpuPerRow `json:"archiverCpuPerRow"`
	ArchiverOver float64   `json:"archiverOverRaw"`
	// ConsumeNone and ConsumeAcked are raw JetStream consumption of the drained events, with no
	// acks (an ordered consumer) and with one explicit ack per message (an ephemeral pull
	// consumer), without ClickHouse: what reading the stream alone costs.
	ConsumeNone  rawConsume `json:"consumeAckNone"`
	ConsumeAcked rawConsume `json:"consumeAckExplicit"`
	LagRate      int        `json:"lagRate"`
	Lag          latency    `json:"lag"`
	// ArchiverLargePerSec is the archiver draining the same events into a table that already
	// holds the HistoryRows rows of the history, all of this month: the check before each insert
	// must not grow with the archive. ArchiverLargeCPU splits its CPU per row.
	ArchiverLargePerSec float64   `json:"archiverLargeRowsPerSec"`
	ArchiverLargeCPU    cpuPerRow `json:"archiverLargeCpuPerRow"`
	HistoryRows         int       `json:"historyRows"`
	HistoryConvs        int       `json:"historyConvs"`
	History             latency   `json:"history"`
	Error               string    `json:"error,omitempty"`
}

func runArchive(p params, profile func(name string) func() func()) *archiveResult {
	res := &archiveResult{Rows: p.ArchiveRows, BatchSize: archiver.DefaultBatchSize, LagRate: p.ArchiveLagRate,
		HistoryRows: p.HistoryRows, HistoryConvs: p.HistoryConvs}
	if err := archivePhases(p, res, profile); err != nil {
		res.Error = err.Error()
		logf("archive: %v", err)
	}
	return res
}

func archivePhases(p params, res *archiveResult, profile func(name string) func() func()) error {
	dir, err := os.MkdirTemp("", "chatbench-archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	ch, err := localch.Start(ctx, filepath.Join(dir, "clickhouse"), localch.Options{})
	if err != nil {
		return err
	}
	defer ch.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()},
		Settings: clickhouse.Settings{"max_query_size": 16 << 20}})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&res.ClickHouse); err != nil {
		return err
	}
	events := archiveEvents(p.ArchiveRows, 1000, 1)

	// 1. Raw batch inserts of the same rows, after an untimed warm-up of a tenth of them.
	rows := make([]chstore.Row, len(events))
	now := time.Now()
	for i, ev := range events {
		rows[i] = chstore.RowOf(uint64(i+1), ev.subject, ev.data, now)
	}
	if _, err := rawInsert(ctx, conn, "rawwarm", rows[:len(rows)/10], res.BatchSize, 1); err != nil {
		return err
	}
	split := startCPUSplit(ch.Pid())
	if res.RawBefore, err = rawInsert(ctx, conn, "rawbench", rows, res.BatchSize, 1); err != nil {
		return err
	}
	res.RawCPU = split.perRow(len(rows))
	logf("archive: raw clickhouse-go batch insert %.0f rows/s (ClickHouse %s), CPU per row: ClickHouse %.1f µs, client %.1f µs",
		res.RawBefore, res.ClickHouse, res.RawCPU.ClickHouseMicros, res.RawCPU.ClientMicros)

	// 2. The archiver draining a stream holding the same events.
	ns, err := gatewaytest.StartNATS(filepath.Join(dir, "js"), false)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := platform.ConnectInProcess(ns, "chatbench-archive", quiet)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(p.AsyncWindow))
	if err != nil {
		return err
	}
	if err := schemas.Ensure(ctx, js, schemas.Topology{}); err != nil {
		return err
	}
	stream, err := js.Stream(ctx, schemas.EventsStream)
	if err != nil {
		return err
	}
	// The stream starts after the seqs the history archive is filled with (phase 4), so that
	// every row of it is below what the archiver has acknowledged, as in a real archive.
	base := uint64(p.HistoryRows)
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(base+1)); err != nil {
		return err
	}
	for _, ev := range events {
		if _, err := js.PublishAsync(ev.subject, ev.data); err != nil {
			return err
		}
	}
	<-js.PublishAsyncComplete()
	for _, ack := range []bool{false, true} {
		rc, err := consumeRaw(ctx, stream, base+1, len(events), ack)
		if err != nil {
			return err
		}
		if ack {
			res.ConsumeAcked = rc
		} else {
			res.ConsumeNone = rc
		}
		logf("archive: raw JetStream consume (acks %v) %.0f msgs/s, CPU %.1f µs per message", ack, rc.PerSec, rc.CPUMicros)
	}
	anc, err := platform.ConnectInProcess(ns, "chatbench-archiver", quiet)
	if err != nil {
		return err
	}
	defer anc.Close()
	cfg := archiver.Defaults()
	cfg.Addrs = []string{ch.Addr()}
	stopProfile := profile("archive-drain")()
	svc, stop, err := startArchiver(ctx, cfg, anc, quiet)
	if err != nil {
		return err
	}
	defer stop()
	select {
	case <-svc.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	start, split := time.Now(), startCPUSplit(ch.Pid())
	last := base + uint64(len(events))
	if err := waitArchived(ctx, stream, last, 10*time.Minute, nil); err != nil {
		return err
	}
	res.ArchiverPerSec = float64(len(events)) / time.Since(start).Seconds()
	res.ArchiverCPU = split.perRow(len(events))
	stopProfile()
	logf("archive: archiver %.0f rows/s, CPU per row: ClickHouse %.1f µs, archiver and nats-server %.1f µs",
		res.ArchiverPerSec, res.ArchiverCPU.ClickHouseMicros, res.ArchiverCPU.ClientMicros)
	if res.RawAfter, err = rawInsert(ctx, conn, "rawbench2", rows, res.BatchSize, 1); err != nil {
		return err
	}
	res.RawRowsPerSec = (res.RawBefore + res.RawAfter) / 2
	res.ArchiverOver = res.ArchiverPerSec / res.RawRowsPerSec
	if res.RawInflight2, err = rawInsert(ctx, conn, "rawbench3", rows, res.BatchSize, 2); err != nil {
		return err
	}
	logf("archive: raw again %.0f rows/s: archiver %.2f of raw (mean %.0f rows/s); raw with 2 inserts in flight %.0f rows/s (%.2f)",
		res.RawAfter, res.ArchiverOver, res.RawRowsPerSec, res.RawInflight2, res.ArchiverPerSec/res.RawInflight2)

	// 3. End-to-end lag at a fixed rate: publish time to acknowledged (in ClickHouse).
	lagEvents := archiveEvents(p.ArchiveLagRate*int(p.ArchiveLagDuration/time.Second), 1000, 2)
	sent := make([]time.Time, len(lagEvents))
	tick := time.Second / time.Duration(p.ArchiveLagRate)
	first := last + 1
	go func() {
		t0 := time.Now()
		for i, ev := range lagEvents {
			if d := time.Until(t0.Add(time.Duration(i) * tick)); d > 0 {
				time.Sleep(d)
			}
			sent[i] = time.Now()
			if _, err := js.PublishAsync(ev.subject, ev.data); err != nil {
				return
			}
		}
	}()
	hist := newHist()
	next := first
	last += uint64(len(lagEvents))
	if err := waitArchived(ctx, stream, last, 2*time.Minute, func(floor uint64, at time.Time) {
		for ; next <= floor; next++ {
			record(hist, at.Sub(sent[next-first]))
		}
	}); err != nil {
		return err
	}
	res.Lag = summarize(hist)
	logf("archive: lag at %d events/s: p50 %.1f ms, p99 %.1f ms", p.ArchiveLagRate, res.Lag.P50, res.Lag.P99)
	stop()

	// 4. A large archive: fill the archiver's table, let a fresh archiver drain the events of 2
	// once more into it, then ask it for the newest 50 of random conversations over NATS.
	logf("archive: filling %d rows in %d conversations for history", p.HistoryRows, p.HistoryConvs)
	if err := fillHistory(ctx, conn, cfg.Database, p.HistoryRows, p.HistoryConvs, 1); err != nil {
		return err
	}
	for _, ev := range events {
		if _, err := js.PublishAsync(ev.subject, ev.data); err != nil {
			return err
		}
	}
	<-js.PublishAsyncComplete()
	last += uint64(len(events))
	svc, stop2, err := startArchiver(ctx, cfg, anc, quiet)
	if err != nil {
		return err
	}
	defer stop2()
	select {
	case <-svc.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	start, split = time.Now(), startCPUSplit(ch.Pid())
	if err := waitArchived(ctx, stream, last, 10*time.Minute, nil); err != nil {
		return err
	}
	res.ArchiverLargePerSec = float64(len(events)) / time.Since(start).Seconds()
	res.ArchiverLargeCPU = split.perRow(len(events))
	logf("archive: archiver into %d archived rows %.0f rows/s (%.2f of raw), CPU per row: ClickHouse %.1f µs, archiver and nats-server %.1f µs",
		p.HistoryRows, res.ArchiverLargePerSec, res.ArchiverLargePerSec/res.RawRowsPerSec,
		res.ArchiverLargeCPU.ClickHouseMicros, res.ArchiverLargeCPU.ClientMicros)
	rng := rand.New(rand.NewPCG(7, 7))
	hh := newHist()
	for i := range p.HistoryRequests {
		g := rng.IntN(p.HistoryConvs)
		req := schemas.ArchiveEventsRequest{User: "u0", Convs: []schemas.ArchiveConv{{Conv: "g:h" + strconv.Itoa(g)}},
			Limit: 50, Desc: true}
		data, _ := json.Marshal(req)
		t0 := time.Now()
		m, err := anc.RequestWithContext(ctx, schemas.ArchiveEventsRq, data)
		if err != nil {
			return fmt.Errorf("history request %d: %w", i, err)
		}
		record(hh, time.Since(t0))
		var rep schemas.ArchiveEventsReply
		if err := json.Unmarshal(m.Data, &rep); err != nil || rep.ErrCode != "" || len(rep.Events) != 50 {
			return fmt.Errorf("history request %d: %d events, %s %s %v", i, len(rep.Events), rep.ErrCode, rep.ErrMsg, err)
		}
	}
	res.History = summarize(hh)
	logf("archive: history, newest 50 of a random conversation of %d rows: p50 %.1f ms, p99 %.1f ms",
		p.HistoryRows, res.History.P50, res.History.P99)
	return nil
}

// cpuPerRow is the CPU time a phase cost per row, on the ClickHouse server and in this process.
type cpuPerRow struct {
	ClickHouseMicros float64 `json:"clickhouseMicros"`
	ClientMicros     float64 `json:"clientMicros"`
}

// cpuSplit measures the CPU time of the ClickHouse server (pid) and of this process from its start.
type cpuSplit struct {
	pid        int
	ch0, self0 time.Duration
}

func startCPUSplit(pid int) cpuSplit {
	return cpuSplit{pid: pid, ch0: procCPU(pid), self0: selfCPU()}
}

func (c cpuSplit) perRow(rows int) cpuPerRow {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(rows, 1)) }
	return cpuPerRow{ClickHouseMicros: per(procCPU(c.pid) - c.ch0), ClientMicros: per(selfCPU() - c.self0)}
}

// rawConsume is a raw JetStream consumption figure: messages a second and this process's CPU
// (client and nats-server) per message.
type rawConsume struct {
	PerSec    float64 `json:"msgsPerSec"`
	CPUMicros float64 `json:"cpuMicrosPerMsg"`
}

// consumeRaw reads n messages of stream from seq first, as fast as they come: with an ordered
// consumer (no acks), or with an ephemeral pull consumer acknowledging each message.
func consumeRaw(ctx context.Context, stream jetstream.Stream, first uint64, n int, ack bool) (rawConsume, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var (
		cons jetstream.Consumer
		err  error
	)
	if ack {
		cons, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq: first, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20_000, InactiveThreshold: time.Minute})
	} else {
		cons, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq: first})
	}
	if err != nil {
		return rawConsume{}, err
	}
	done := make(chan struct{})
	got := 0
	start, cpu0 := time.Now(), selfCPU()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ack {
			_ = m.Ack()
		}
		if got++; got == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(5000))
	if err != nil {
		return rawConsume{}, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return rawConsume{}, fmt.Errorf("raw consume: %d of %d messages in 2 minutes", got, n)
	}
	return rawConsume{PerSec: float64(n) / time.Since(start).Seconds(),
		CPUMicros: float64((selfCPU() - cpu0).Microseconds()) / float64(n)}, nil
}

// startArchiver runs an archiver until the returned stop (idempotent) is called.
func startArchiver(ctx context.Context, cfg archiver.Config, nc *nats.Conn, log *slog.Logger) (*archiver.Service, func(), error) {
	svc, err := archiver.New(cfg, archiver.Deps{NATS: nc, Log: log, Ops: platform.NewOps()})
	if err != nil {
		return nil, nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(actx); err != nil {
			logf("archive: archiver stopped: %v", err)
		}
	}()
	var once sync.Once
	return svc, func() { once.Do(func() { cancel(); <-done }) }, nil
}

// rawInsert inserts rows into db's events table (created, empty) in batches of batch rows,
// inflight inserts at a time, and returns the rows per second.
func rawInsert(ctx context.Context, conn driver.Conn, db string, rows []chstore.Row, batch, inflight int) (float64, error) {
	// The first schema version: the events table without the seq index later versions add, so
	// the baseline pays for no more than the rows.
	if _, err := chstore.MigrateTo(ctx, conn, db, 1); err != nil {
		return 0, err
	}
	var (
		mu      sync.Mutex
		first   error
		wg      sync.WaitGroup
		batches = make(chan []chstore.Row)
	)
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := chstore.Insert(ctx, conn, db, b); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for lo := 0; lo < len(rows); lo += batch {
		batches <- rows[lo:min(lo+batch, len(rows))]
	}
	close(batches)
	wg.Wait()
	return float64(len(rows)) / time.Since(start).Seconds(), first
}

// waitArchived polls the archiver consumer's ack floor until it reaches last; each reading is
// reported to seen.
func waitArchived(ctx context.Context, stream jetstream.Stream, last uint64, limit time.Duration, seen func(uint64, time.Time)) error {
	deadline := time.Now().Add(limit)
	var cons jetstream.Consumer
	for {
		var err error
		if cons == nil {
			cons, err = stream.Consumer(ctx, schemas.ArchiverConsumer)
		}
		if cons != nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(ctx); err != nil {
				cons = nil // looked up again: it may have been created again
			} else {
				if seen != nil {
					seen(info.AckFloor.Stream, time.Now())
				}
				if info.AckFloor.Stream >= last {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("archiver did not reach seq %d in %s (%v)", last, limit, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// archiveEvents generates n message events over convs groups (seed picks the senders).
func archiveEvents(n, convs int, seed uint64) []unreadEvent {
	rng := rand.New(rand.NewPCG(seed, 11))
	ts := schemas.FormatTime(time.Now())
	out := make([]unreadEvent, n)
	for i := range out {
		g := "h" + strconv.Itoa(rng.IntN(convs))
		c, _ := schemas.GroupConv(g)
		e := schemas.Event{Type: schemas.TypeMessage, Conv: c.String(), Ts: ts, From: "u" + strconv.Itoa(rng.IntN(500)),
			Mid: "a" + strconv.Itoa(i), MsgType: "text", Msg: "a message of about the size of a chat line, for the archive benchmark"}
		data, _ := json.Marshal(&e)
		out[i] = unreadEvent{subject: schemas.ContentSubject(c), data: data}
	}
	return out
}

// fillHistory inserts rows ordinary messages spread evenly over convs groups into db's table, with
// seqs from firstSeq on, in batches of 100k.
func fillHistory(ctx context.Context, conn driver.Conn, db string, rows, convs int, firstSeq uint64) error {
	const batch = 100_000
	now := time.Now()
	buf := make([]chstore.Row, 0, batch)
	for i := range rows {
		g := "h" + strconv.Itoa(i%convs)
		c, _ := schemas.GroupConv(g)
		e := schemas.Event{Type: schemas.TypeMessage, Conv: c.String(), Ts: schemas.FormatTime(now), From: "u" + strconv.Itoa(i%500),
			Mid: "f" + strconv.Itoa(i), MsgType: "text", Msg: "an archived message of about the size of a chat line"}
		data, _ := json.Marshal(&e)
		buf = append(buf, chstore.RowOf(firstSeq+uint64(i), schemas.ContentSubject(c), data, now))
		if len(buf) == batch || i == rows-1 {
			if err := chstore.Insert(ctx, conn, db, buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}
