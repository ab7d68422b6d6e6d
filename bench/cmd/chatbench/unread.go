package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/eventchat/chat/services/unread"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The unread phase measures how fast the unread service folds the log, against a raw JetStream
// consumer reading the same stream in the same run, for one big room (10, 100 and 1000 members:
// the cost per message must not grow with the members) and for 10k small conversations. Each
// scenario fills a fresh stream (fsync off: only reading is measured), then
//   - raw: an ordered consumer reads every event (no decoding), and
//   - unread: a fresh service instance rebuilds its projection from the whole log (no snapshot),
//     timed from start to caught up;
//   - projection: the same events applied in memory to a projection, without NATS, which is the
//     service's own cost per event.

// unreadScenario is one shape of conversations.
type unreadScenario struct {
	Name    string `json:"name"`
	Convs   int    `json:"convs"`
	Members int    `json:"members"`
}

// unreadResult is one scenario's figures.
type unreadResult struct {
	unreadScenario
	Events          int     `json:"events"`
	Messages        int     `json:"messages"`
	RawPerSec       float64 `json:"rawEventsPerSec"`
	ServicePerSec   float64 `json:"serviceEventsPerSec"`
	ServiceOverRaw  float64 `json:"serviceOverRaw"`
	ProjectionNsPer float64 `json:"projectionNsPerEvent"`
	ProjectionBytes uint64  `json:"projectionHeapBytes"`
	Error           string  `json:"error,omitempty"`
}

func unreadScenarios() []unreadScenario {
	return []unreadScenario{
		{Name: "room-10", Convs: 1, Members: 10},
		{Name: "room-100", Convs: 1, Members: 100},
		{Name: "room-1000", Convs: 1, Members: 1000},
		{Name: "small-10k", Convs: 10_000, Members: 3},
	}
}

func runUnread(p params) []unreadResult {
	var out []unreadResult
	for _, sc := range unreadScenarios() {
		logf("unread: %s (%d conversations of %d members, %d messages)", sc.Name, sc.Convs, sc.Members, p.UnreadMessages)
		r := unreadResult{unreadScenario: sc}
		if err := runUnreadScenario(p, &r); err != nil {
			r.Error = err.Error()
			logf("unread: %s: %v", sc.Name, err)
		}
		out = append(out, r)
	}
	return out
}

// unreadEvent is one generated log entry.
type unreadEvent struct {
	subject string
	data    []byte
}

// unreadLog generates the scenario's log: every group's creation (one event per member), then
// messages from random members, about one in twenty followed by a read of its reader, one in fifty
// private, one in a hundred deleted by its author.
func unreadLog(sc unreadScenario, messages int) []unreadEvent {
	rng := rand.New(rand.NewPCG(1, uint64(sc.Convs*sc.Members)))
	ts := schemas.FormatTime(time.Now())
	users := max(sc.Members, 3_000)
	if sc.Convs == 1 {
		users = sc.Members
	}
	member := func(conv, i int) string { return "u" + strconv.Itoa((conv*sc.Members+i)%users) }
	var out []unreadEvent
	add := func(subject string, e schemas.Event) {
		data, err := json.Marshal(&e)
		if err != nil {
			panic(err)
		}
		out = append(out, unreadEvent{subject: subject, data: data})
	}
	groups := make([]schemas.Conv, sc.Convs)
	for g := range groups {
		id := "g" + strconv.Itoa(g)
		groups[g], _ = schemas.GroupConv(id)
		all := make([]string, sc.Members)
		for i := range all {
			all[i] = member(g, i)
		}
		for i, u := range all {
			e := schemas.Event{Type: schemas.TypeMember, Conv: groups[g].String(), Ts: ts, User: u,
				Action: schemas.ActionJoined, By: all[0]}
			if i == 0 {
				e.Name, e.Members = "group "+id, all
			}
			add(schemas.MemberSubject(id), e)
		}
	}
	seq := uint64(len(out))
	for n := range messages {
		g := rng.IntN(sc.Convs)
		c := groups[g]
		from := member(g, rng.IntN(sc.Members))
		e := schemas.Event{Type: schemas.TypeMessage, Conv: c.String(), Ts: ts, From: from,
			Mid: "m" + strconv.Itoa(n), MsgType: "text", Msg: "a message of about the size of a chat line, for the unread benchmark"}
		if rng.IntN(50) == 0 {
			if tid := member(g, rng.IntN(sc.Members)); tid != from {
				e.Tid = tid
			}
		}
		add(schemas.ContentSubject(c), e)
		seq++
		switch {
		case rng.IntN(100) == 0:
			add(schemas.ContentSubject(c), schemas.Event{Type: schemas.TypeMessage, Conv: c.String(), Ts: ts,
				From: from, Kind: schemas.KindDelete, Ref: seq, RefFrom: from, Tid: e.Tid})
			seq++
		case rng.IntN(20) == 0:
			reader := member(g, rng.IntN(sc.Members))
			add(schemas.ReadSubject(reader), schemas.Event{Type: schemas.TypeRead, Conv: c.String(), Ts: ts,
				From: reader, Seq: seq})
			seq++
		}
	}
	return out
}

func runUnreadScenario(p params, r *unreadResult) error {
	events := unreadLog(r.unreadScenario, p.UnreadMessages)
	r.Events = len(events)
	r.Messages = p.UnreadMessages

	// The projection alone, in memory: its cost per event, and its size.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	proj := unread.NewProjection()
	start := time.Now()
	for i, ev := range events {
		if err := proj.Apply(uint64(i+1), ev.subject, ev.data); err != nil {
			return fmt.Errorf("projection: %w", err)
		}
	}
	r.ProjectionNsPer = float64(time.Since(start).Nanoseconds()) / float64(len(events))
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc {
		r.ProjectionBytes = after.HeapAlloc - before.HeapAlloc
	}
	runtime.KeepAlive(proj)
	proj = nil

	dir, err := os.MkdirTemp("", "chatbench-unread-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := gatewaytest.StartNATS(filepath.Join(dir, "js"), false)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := platform.ConnectInProcess(ns, "chatbench-unread", quiet)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(p.AsyncWindow))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := schemas.Ensure(ctx, js, schemas.Topology{}); err != nil {
		return err
	}
	for _, ev := range events {
		if _, err := js.PublishAsync(ev.subject, ev.data); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return fmt.Errorf("filling the stream: %w", ctx.Err())
	}
	stream, err := js.Stream(ctx, schemas.EventsStream)
	if err != nil {
		return err
	}
	last := uint64(len(events))

	// Raw, an ordered consumer reading everything the service reads, and the service rebuilding
	// from the whole log: each unreadRuns times, the best run counts (a run takes a few hundred
	// ms, and one collection or neighbour's burst in it moved the figure by a third).
	unc, err := platform.ConnectInProcess(ns, "chatbench-unread-service", quiet)
	if err != nil {
		return err
	}
	defer unc.Close()
	for range unreadRuns {
		rawStart := time.Now()
		if err := readAll(ctx, stream, last); err != nil {
			return fmt.Errorf("raw consumer: %w", err)
		}
		r.RawPerSec = max(r.RawPerSec, float64(last)/time.Since(rawStart).Seconds())
		rate, err := rebuildUnread(ctx, unc, quiet, last)
		if err != nil {
			return err
		}
		r.ServicePerSec = max(r.ServicePerSec, rate)
	}
	if r.RawPerSec > 0 {
		r.ServiceOverRaw = r.ServicePerSec / r.RawPerSec
	}
	logf("unread: %s: raw %.0f events/s, service %.0f events/s (%.2f of raw), projection %.0f ns/event, %.1f MB",
		r.Name, r.RawPerSec, r.ServicePerSec, r.ServiceOverRaw, r.ProjectionNsPer, float64(r.ProjectionBytes)/1e6)
	return nil
}

// unreadRuns is how many times the raw consumer and the service read the log, per scenario.
const unreadRuns = 3

// rebuildUnread runs a fresh unread instance that rebuilds its projection from the whole log of
// last events, and returns its rate (events a second, from start to caught up).
func rebuildUnread(ctx context.Context, nc *nats.Conn, log *slog.Logger, last uint64) (float64, error) {
	cfg := unread.Defaults()
	cfg.Rebuild, cfg.SnapshotEvery = true, time.Hour
	start := time.Now()
	svc, err := unread.New(cfg, unread.Deps{NATS: nc, Log: log, Ops: platform.NewOps()})
	if err != nil {
		return 0, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	select {
	case <-svc.Ready():
		rate := float64(last) / time.Since(start).Seconds()
		stop()
		<-done
		return rate, nil
	case err := <-done:
		return 0, fmt.Errorf("unread service stopped: %v", err)
	case <-ctx.Done():
		return 0, fmt.Errorf("unread service did not catch up: %w", ctx.Err())
	}
}

// readAll reads the stream up to seq last with an ordered consumer, as the unread service does
// (it reads the whole log, so that its position is the log's).
func readAll(ctx context.Context, stream jetstream.Stream, last uint64) error {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if meta.Sequence.Stream >= last {
			return nil
		}
	}
}
