package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// phaseGrace is how long a phase may run past its planned duration (draining answers, setup)
// before it is abandoned with an error: the hard deadline of every phase.
const phaseGrace = 30 * time.Second

// rawResult is one raw publishing phase: what JetStream alone does with the chat's events.
type rawResult struct {
	Name       string  `json:"name"`
	Mode       string  `json:"mode"` // async or batch
	Window     int     `json:"window,omitempty"`
	BatchSize  int     `json:"batchSize,omitempty"`
	Inflight   int     `json:"inflight,omitempty"`
	Acked      int64   `json:"acked"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	MsgsPerSec float64 `json:"msgsPerSec"`
	// ServerCPUPerMsgUs is the server's (chatd's whole process) CPU time per acked message.
	ServerCPUPerMsgUs float64 `json:"serverCpuPerMsgUs,omitempty"`
	ServerCPUCores    float64 `json:"serverCpuCores,omitempty"`
	Error             string  `json:"error,omitempty"`
}

func (r *rawResult) finish(acked, failed int64, elapsed time.Duration, err error) {
	r.Acked, r.Failed, r.Seconds = acked, failed, elapsed.Seconds()
	if elapsed > 0 {
		r.MsgsPerSec = float64(acked) / elapsed.Seconds()
	}
	if err != nil {
		r.Error = err.Error()
	}
}

// rawPayloads are the stored bytes and subjects of the raw phases: one event per conversation,
// published round-robin, so the raw log looks like the gateway's.
type rawPayloads struct {
	subjects []string
	data     [][]byte
}

func newRawPayloads(senders int) rawPayloads {
	var pl rawPayloads
	for i := range senders {
		pl.subjects = append(pl.subjects, rawSubjectPrefix+schemas.ContentSubject(conv(i)))
		pl.data = append(pl.data, eventPayload(i, "r0", msgText(0, time.Now())))
	}
	return pl
}

// msg is the n-th message of a phase, with the Nats-Msg-Id the gateway would give it.
func (pl rawPayloads) msg(n int) *nats.Msg {
	i := n % len(pl.subjects)
	m := nats.NewMsg(pl.subjects[i])
	m.Data = pl.data[i]
	m.Header.Set(nats.MsgIdHdr, schemas.DedupID(senderID(i), "r"+strconv.Itoa(n)))
	return m
}

// runRaw runs the raw phases on srv's nats-server, each on an empty stream with the events
// stream's configuration.
func runRaw(srv *child, p params) ([]rawResult, error) {
	nc, err := nats.Connect(srv.NATSURL, nats.Name("chatbench-raw"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(p.AsyncWindow),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	pl := newRawPayloads(p.Senders)

	type phase struct {
		res rawResult
		run func(context.Context, *rawResult)
	}
	phases := []phase{{rawResult{Name: "async", Mode: "async", Window: p.AsyncWindow},
		func(ctx context.Context, r *rawResult) { rawAsync(ctx, js, pl.msg, p, r) }}}
	for _, size := range p.RawBatchSizes {
		for _, inflight := range p.RawBatchInflight {
			phases = append(phases, phase{rawResult{Name: fmt.Sprintf("batch%dx%d", size, inflight), Mode: "batch",
				BatchSize: size, Inflight: inflight},
				func(ctx context.Context, r *rawResult) { rawBatch(ctx, nc, pl, p, r) }})
		}
	}

	var results []rawResult
	var errs []error
	for _, ph := range phases {
		r := ph.res
		ctx, cancel := context.WithTimeout(context.Background(), p.RawDuration+phaseGrace)
		if err := freshStream(ctx, js); err != nil {
			r.Error = err.Error()
		} else {
			cpu := meterCPU(srv)
			ph.run(ctx, &r)
			used, cores := cpu.stop()
			r.ServerCPUCores = cores
			if r.Acked > 0 {
				r.ServerCPUPerMsgUs = float64(used.Microseconds()) / float64(r.Acked)
			}
		}
		cancel()
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", r.Name, r.Error))
		}
		logf("raw %-12s %9.0f msgs/s (%d acked, %d failed), server %.2f cores (%.1f µs/msg)", r.Name, r.MsgsPerSec,
			r.Acked, r.Failed, r.ServerCPUCores, r.ServerCPUPerMsgUs)
		results = append(results, r)
	}
	// The raw log is not needed any more.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := deleteStream(ctx, js); err != nil {
		errs = append(errs, err)
	}
	return results, errors.Join(errs...)
}

// The raw phases run on chatd's own nats-server, beside its events stream: their stream has the
// events stream's configuration under another name, over the same subjects behind a prefix.
const (
	rawStreamName    = "BENCH_RAW"
	rawSubjectPrefix = "bench."
)

func rawStreamConfig() jetstream.StreamConfig {
	cfg := schemas.EventsStreamConfig(schemas.Topology{})
	cfg.Name = rawStreamName
	subjects := make([]string, 0, len(cfg.Subjects)) // a copy: cfg.Subjects is the schema's own slice
	for _, s := range cfg.Subjects {
		subjects = append(subjects, rawSubjectPrefix+s)
	}
	cfg.Subjects = subjects
	return cfg
}

// freshStream replaces the raw stream with an empty one: each phase owns a throwaway log.
func freshStream(ctx context.Context, js jetstream.JetStream) error {
	if err := deleteStream(ctx, js); err != nil {
		return err
	}
	_, err := js.CreateStream(ctx, rawStreamConfig())
	return err
}

func deleteStream(ctx context.Context, js jetstream.JetStream) error {
	err := js.DeleteStream(ctx, rawStreamName)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}

// rawAsync publishes msg(0), msg(1), ... with a bounded window of unacknowledged messages: each
// message is stored (and, with fsync on, synced) on its own; the window only hides the round trips.
func rawAsync(ctx context.Context, js jetstream.JetStream, msg func(n int) *nats.Msg, p params, r *rawResult) {
	futures := make(chan jetstream.PubAckFuture, p.AsyncWindow)
	var acked, failed int64
	var last time.Time
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for f := range futures {
			select {
			case <-f.Ok():
				acked++
			case <-f.Err():
				failed++
			case <-ctx.Done():
				failed++
			}
		}
		last = time.Now()
	}()

	start := time.Now()
	stop := start.Add(p.RawDuration)
	var err error
	for n := 0; n < p.RawMax && time.Now().Before(stop) && ctx.Err() == nil; n++ {
		var f jetstream.PubAckFuture
		// The stall wait only matters if the server stops answering: then the phase ends.
		if f, err = js.PublishMsgAsync(msg(n), jetstream.WithStallWait(10*time.Second)); err != nil {
			break
		}
		futures <- f
	}
	close(futures)
	<-collected
	if err == nil {
		err = ctx.Err()
	}
	r.finish(acked, failed, last.Sub(start), err)
}

// batchAck is the answer to a batch's commit message.
type batchAck struct {
	Seq   uint64 `json:"seq"`
	Count int64  `json:"count"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// rawBatch publishes atomic batches of r.BatchSize, r.Inflight of them on the wire at once, as the
// gateway's group commit does: one store (and one fsync) per batch.
func rawBatch(ctx context.Context, nc *nats.Conn, pl rawPayloads, p params, r *rawResult) {
	prefix := nats.NewInbox() + "."
	slots := make(chan struct{}, r.Inflight)
	var acked, failed atomic.Int64
	var errOnce sync.Once
	var ackErr error
	sub, err := nc.Subscribe(prefix+"*", func(m *nats.Msg) {
		defer func() { <-slots }()
		var a batchAck
		err := json.Unmarshal(m.Data, &a)
		switch {
		case err == nil && a.Error != nil:
			err = fmt.Errorf("batch refused: %s (err_code %d)", a.Error.Description, a.Error.ErrCode)
		case err == nil && a.Count != int64(r.BatchSize):
			err = fmt.Errorf("batch of %d acknowledged as %d", r.BatchSize, a.Count)
		}
		if err != nil {
			failed.Add(int64(r.BatchSize))
			errOnce.Do(func() { ackErr = err })
			return
		}
		acked.Add(a.Count)
	})
	if err != nil {
		r.finish(0, 0, 0, err)
		return
	}
	defer sub.Unsubscribe()

	start := time.Now()
	stop := start.Add(p.RawDuration)
	for b, n := 0, 0; n+r.BatchSize <= p.RawMax && time.Now().Before(stop); b, n = b+1, n+r.BatchSize {
		if err = acquire(ctx, slots); err != nil {
			break
		}
		if err = publishBatch(nc, pl, n, r.BatchSize, prefix+strconv.Itoa(b)); err != nil {
			break
		}
	}
	// Taking every slot waits for the last answers.
	for i := 0; i < r.Inflight && err == nil; i++ {
		err = acquire(ctx, slots)
	}
	elapsed := time.Since(start)
	errOnce.Do(func() {})
	r.finish(acked.Load(), failed.Load(), elapsed, errors.Join(err, ackErr))
}

func acquire(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no answer in time: %w", ctx.Err())
	}
}

// publishBatch sends messages n..n+size-1 as one atomic batch; the commit message carries reply.
func publishBatch(nc *nats.Conn, pl rawPayloads, n, size int, reply string) error {
	id := nuid.Next()
	for i := range size {
		m := pl.msg(n + i)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == size-1 {
			m.Header.Set("Nats-Batch-Commit", "1")
			m.Reply = reply
		}
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	return nil
}
