package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/eventchat/chat/services/presence"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
)

// The presence phase measures what the presence service costs, on its own fresh nats-server with
// fsync on (the all-in-one's default) whatever -fsync says. As in chatd, every connection is
// in-process: the service has its own, and the simulated gateways (the load) share another.
//
//  1. Raw baselines: KV puts into the connections bucket, asynchronous with a bounded window of
//     unacknowledged ones (what JetStream alone does with the entries the service writes), and
//     synchronous from as many goroutines as the service has workers (how the service writes).
//  2. Connect: Users x ConnsPerUser sessions report connect; the phase waits until the service
//     has written every aggregate.
//  3. Heartbeats absorbed: a closed loop publishes heartbeats for every connection, round robin,
//     keeping at most PresenceBacklog of them unread by the service (its report counter is the
//     progress), and measures the reports the service takes per second.
//  4. CPU of idle connections: heartbeats at the real interval, spread evenly, against idle
//     windows of the same length just before, without heartbeats.

// Timings of the presence phase that no flag changes.
const (
	// presencePoll and presenceConnectPoll: how often the closed loops of heartbeats and of
	// connects read the service's counters. A read gathers the whole registry (Go and process
	// collectors included: most of a millisecond of CPU), so not often; the backlogs are many
	// polls deep.
	presencePoll           = 20 * time.Millisecond
	presenceConnectPoll    = 50 * time.Millisecond
	presenceTick           = 10 * time.Millisecond // the paced publisher's tick
	presenceConnectTimeout = 4 * time.Minute
	// presenceConnectBacklog bounds the connects published and not yet handled (their recompute
	// done): a connection's first heartbeat, an interval after its connect, then finds it stored.
	presenceConnectBacklog = 256
	presenceHeartbeatScan  = 250 * time.Millisecond // the gateways' heartbeats during the connects
	presenceDrainTimeout   = 30 * time.Second
	// presenceTTLMargin: in the CPU phase, every connection's entry is refreshed at least this long
	// before it would expire.
	presenceTTLMargin = 3 * time.Second
)

// presenceResult is the presence phase.
type presenceResult struct {
	Fsync        bool   `json:"fsync"`
	Transport    string `json:"transport"`
	Users        int    `json:"users"`
	ConnsPerUser int    `json:"connsPerUser"`
	Conns        int    `json:"conns"`
	// RawKV is the baseline: async puts into the connections bucket (MsgsPerSec: puts/s);
	// RawKVSync synchronous puts, as many at a time as the service has workers.
	RawKV     *rawResult            `json:"rawKV,omitempty"`
	RawKVSync *rawResult            `json:"rawKVSync,omitempty"`
	Connect   *presenceConnect      `json:"connect,omitempty"`
	Absorb    *presenceAbsorb       `json:"heartbeats,omitempty"`
	CPU       *presenceCPU          `json:"idleConnsCPU,omitempty"`
	Checks    *presenceFinalChecks  `json:"checks,omitempty"`
	Service   *presenceServiceStats `json:"service,omitempty"`
	// HeartbeatsOverRawKV is the heartbeats absorbed per second over the raw (async) KV put
	// rate; HeartbeatsOverRawKVSync over the synchronous one.
	HeartbeatsOverRawKV     float64  `json:"heartbeatsOverRawKV,omitempty"`
	HeartbeatsOverRawKVSync float64  `json:"heartbeatsOverRawKVSync,omitempty"`
	Note                    string   `json:"note"`
	Seconds                 float64  `json:"seconds"`
	Errors                  []string `json:"errors,omitempty"`
}

// presenceConnect is the connection of every session.
type presenceConnect struct {
	// Seconds runs from the first connect report to the last aggregate written.
	Seconds        float64 `json:"seconds"`
	ConnectsPerSec float64 `json:"connectsPerSec"`
	// Recomputes and RecomputeMeanMs come from chat_presence_recompute_seconds: one per connect.
	Recomputes      int64   `json:"recomputes"`
	RecomputeMeanMs float64 `json:"recomputeMeanMs"`
	// Aggregates counts the users whose aggregate is online with every connection counted.
	Aggregates int `json:"aggregates"`
}

// presenceAbsorb is the closed loop of heartbeats.
type presenceAbsorb struct {
	Mode    string  `json:"mode"`
	Backlog int     `json:"backlog"` // heartbeats published and not yet taken by the service, at most
	Seconds float64 `json:"seconds"` // the measured window
	// Published heartbeats in the window; Events are the heartbeat reports the service took
	// (chat_presence_conn_events_total{state="heartbeat"}), Stored the writes to the connections
	// bucket (its stream's last sequence), both in the window.
	Published     int64   `json:"published"`
	Events        int64   `json:"events"`
	EventsPerSec  float64 `json:"eventsPerSec"`
	Stored        int64   `json:"stored"`
	StoredPerSec  float64 `json:"storedPerSec"`
	Recomputes    int64   `json:"recomputes"` // in the window: a heartbeat should need none
	RecomputeMean float64 `json:"recomputeMeanMs,omitempty"`
	CPUCores      float64 `json:"cpuCores"`
	// DrainSeconds is how long after the last heartbeat every one had been stored.
	DrainSeconds float64 `json:"drainSeconds"`
}

// presenceCPU is the CPU the heartbeats of idle connections cost.
type presenceCPU struct {
	Conns           int     `json:"conns"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	// Rounds pairs of windows of one interval each, idle then heartbeats: WindowSeconds in all of
	// each kind.
	Rounds        int     `json:"rounds"`
	WindowSeconds float64 `json:"windowSeconds"`
	// CPU time of this process in the idle windows (no heartbeats) and in the heartbeat windows.
	IdleCPUMs      float64 `json:"idleCpuMs"`
	HeartbeatCPUMs float64 `json:"heartbeatCpuMs"`
	IdleCores      float64 `json:"idleCores"`
	HeartbeatCores float64 `json:"heartbeatCores"`
	// Heartbeats the service took in the heartbeat window, and per second.
	Heartbeats       int64   `json:"heartbeats"`
	HeartbeatsPerSec float64 `json:"heartbeatsPerSec"`
	// CPUMsPerSecPer1k is (heartbeat - idle) CPU ms per second of wall time per 1000 connections;
	// CorePctPer1k the same as a percentage of one core.
	CPUMsPerSecPer1k float64 `json:"cpuMsPerSecPer1kConns"`
	CorePctPer1k     float64 `json:"corePctPer1kConns"`
}

// presenceFinalChecks: after the phase, every connection must still be live and no user must
// have changed status (an expired entry or a lost heartbeat shows here).
type presenceFinalChecks struct {
	LiveConns      int64 `json:"liveConns"`
	StatusChanges  int64 `json:"statusChangesAfterConnect"`
	InvalidReports int64 `json:"invalidReports"`
}

// presenceServiceStats: what the service logged at warning level or above (counted; the first
// few are kept).
type presenceServiceStats struct {
	Warnings      int64    `json:"warnings"`
	FirstWarnings []string `json:"firstWarnings,omitempty"`
}

func (r *presenceResult) fail(format string, args ...any) {
	err := fmt.Sprintf(format, args...)
	r.Errors = append(r.Errors, err)
	logf("presence: %s", err)
}

// runPresence runs the presence phase; profile(name) profiles the connects ("connect") and the
// closed-loop window ("heartbeats").
func runPresence(p params, profile func(name string) func() func()) *presenceResult {
	started := time.Now()
	res := &presenceResult{Fsync: true, Transport: "in-process", Users: p.PresenceUsers,
		ConnsPerUser: p.PresenceConnsPerUser, Conns: p.PresenceUsers * p.PresenceConnsPerUser,
		Note: "nats-server, the presence service and the simulated gateways share this process and its CPUs"}
	defer func() { res.Seconds = time.Since(started).Seconds() }()
	dir, err := os.MkdirTemp("", "chatbench-presence-")
	if err != nil {
		res.fail("%v", err)
		return res
	}
	defer os.RemoveAll(dir)
	ns, err := gatewaytest.StartNATS(filepath.Join(dir, "js"), true)
	if err != nil {
		res.fail("start nats-server: %v", err)
		return res
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	// The logger of the service and of both NATS connections (slow consumers would show here).
	warns := newWarnCounter()
	defer func() { res.Service = warns.stats() }()
	logger := slog.New(warns)
	if err := presencePhases(ns, p, res, logger, profile); err != nil {
		res.fail("%v", err)
	}
	return res
}

// presencePhases runs the phases in order; an error ends them.
func presencePhases(ns *server.Server, p params, res *presenceResult, logger *slog.Logger, profile func(string) func() func()) error {
	simNC, err := platform.ConnectInProcess(ns, "chatbench-presence-gateways", logger)
	if err != nil {
		return err
	}
	defer simNC.Close()
	js, err := jetstream.New(simNC, jetstream.WithPublishAsyncMaxPending(p.AsyncWindow),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := schemas.Ensure(ctx, js, schemas.Topology{}); err != nil {
		return err
	}
	connsStream, err := js.Stream(ctx, "KV_"+schemas.PresenceConnsBucket)
	if err != nil {
		return err
	}
	sim := newPresenceSim(simNC, p.PresenceUsers, p.PresenceConnsPerUser)

	// 1. The raw baselines, then an empty bucket again for the service.
	res.RawKV, res.RawKVSync = presenceRawKV(js, sim, p)
	if res.RawKV.Error != "" {
		return fmt.Errorf("raw KV puts: %s", res.RawKV.Error)
	}
	if res.RawKVSync.Error != "" {
		return fmt.Errorf("raw KV sync puts: %s", res.RawKVSync.Error)
	}
	if err := connsStream.Purge(ctx); err != nil {
		return fmt.Errorf("purge %s: %w", schemas.PresenceConnsBucket, err)
	}
	if si, err := connsStream.Info(ctx); err != nil {
		return err
	} else if si.State.Msgs != 0 {
		return fmt.Errorf("bucket %s holds %d entries after its purge", schemas.PresenceConnsBucket, si.State.Msgs)
	}

	// 2. The service, and every session connected.
	svc, stop, err := startPresence(ns, logger)
	if err != nil {
		return err
	}
	defer stop()
	ctr := serviceCounters{reg: svc}
	c, err := sim.connectAll(ctr, connsStream, p, profile("connect"))
	res.Connect = c
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	logf("presence: %d connections of %d users connected in %.1fs (%.0f/s, recompute mean %.2f ms)",
		res.Conns, res.Users, c.Seconds, c.ConnectsPerSec, c.RecomputeMeanMs)
	afterConnect, err := ctr.read()
	if err != nil {
		return err
	}

	// 3. Heartbeats as fast as the service takes them.
	abs, err := sim.absorb(ctr, connsStream, p, profile("heartbeats"))
	res.Absorb = abs
	if err != nil {
		return fmt.Errorf("heartbeats: %w", err)
	}
	res.HeartbeatsOverRawKV = ratio(abs.EventsPerSec, res.RawKV.MsgsPerSec)
	res.HeartbeatsOverRawKVSync = ratio(abs.EventsPerSec, res.RawKVSync.MsgsPerSec)
	logf("presence: %.0f heartbeats/s absorbed (%.0f stored/s, %.2f x raw async KV puts, %.2f x sync), %.2f cores, drained in %.1fs",
		abs.EventsPerSec, abs.StoredPerSec, res.HeartbeatsOverRawKV, res.HeartbeatsOverRawKVSync, abs.CPUCores, abs.DrainSeconds)

	// 4. CPU of idle connections.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ttl := schemas.PresenceConnTTL
	if kv, err := js.KeyValue(ctx, schemas.PresenceConnsBucket); err == nil {
		if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
			ttl = st.TTL()
		}
	}
	cpu, err := sim.idleCPU(ctr, p, ttl)
	res.CPU = cpu
	if err != nil {
		return fmt.Errorf("idle connections: %w", err)
	}
	logf("presence: %d idle connections, heartbeat every %s: %.0f heartbeats/s, CPU %.3f cores idle, %.3f with heartbeats: %.2f ms/s per 1k connections (%.3f%% of a core)",
		cpu.Conns, p.PresenceHeartbeat, cpu.HeartbeatsPerSec, cpu.IdleCores, cpu.HeartbeatCores, cpu.CPUMsPerSecPer1k, cpu.CorePctPer1k)

	// Every connection still live, nobody changed status, nothing refused.
	end, err := ctr.read()
	if err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	si, err := connsStream.Info(ctx)
	if err != nil {
		return err
	}
	res.Checks = &presenceFinalChecks{LiveConns: int64(si.State.Msgs),
		StatusChanges:  int64(end.changes - afterConnect.changes),
		InvalidReports: int64(end.invalid)}
	var errs []error
	if res.Checks.LiveConns != int64(res.Conns) {
		errs = append(errs, fmt.Errorf("%d connections live at the end, not %d", res.Checks.LiveConns, res.Conns))
	}
	if res.Checks.StatusChanges != 0 {
		errs = append(errs, fmt.Errorf("%d status changes after connect (expired connections?)", res.Checks.StatusChanges))
	}
	if res.Checks.InvalidReports != 0 {
		errs = append(errs, fmt.Errorf("%d reports refused as invalid", res.Checks.InvalidReports))
	}
	return errors.Join(errs...)
}

// startPresence runs the service as chatd does (defaults, its own in-process connection, a fresh
// ops registry) and returns its registry and its stop.
func startPresence(ns *server.Server, logger *slog.Logger) (*prometheus.Registry, func(), error) {
	nc, err := platform.ConnectInProcess(ns, "chatbench-presence", logger)
	if err != nil {
		return nil, nil, err
	}
	ops := platform.NewOps()
	svc, err := presence.New(presence.Defaults(), presence.Deps{NATS: nc, Log: logger, Ops: ops})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				logf("presence service: %v", err)
			}
		case <-time.After(30 * time.Second):
			logf("presence service: not stopped after 30s")
		}
		platform.DrainNATS(nc, 10*time.Second)
	}
	select {
	case <-svc.Ready():
		return ops.Registry, stop, nil
	case err := <-done:
		cancel()
		nc.Close()
		return nil, nil, fmt.Errorf("presence service: %w", errors.Join(err, errors.New("stopped before ready")))
	case <-time.After(60 * time.Second):
		stop()
		return nil, nil, errors.New("presence service not ready after 60s")
	}
}

// presenceRawKV is the raw baseline, two ways, over the sessions' keys round robin, each value a
// connection entry: async puts with a bounded window (the ceiling), and synchronous puts by
// presenceWorkers goroutines, one put at a time each, as the service's workers write.
func presenceRawKV(js jetstream.JetStream, sim *presenceSim, p params) (async, syncPuts *rawResult) {
	async = &rawResult{Name: "kv-async", Mode: "async", Window: p.AsyncWindow}
	syncPuts = &rawResult{Name: "kv-sync", Mode: "sync", Inflight: presenceWorkers}
	entry, err := json.Marshal(schemas.ConnEntry{Gateway: presenceGateway, Client: presenceClient,
		Since: schemas.FormatTime(time.Now())})
	if err != nil {
		async.finish(0, 0, 0, err)
		syncPuts.Error = "not run"
		return async, syncPuts
	}
	subjects := make([]string, len(sim.keys))
	for i, k := range sim.keys {
		subjects[i] = "$KV." + schemas.PresenceConnsBucket + "." + k
	}
	msg := func(n int) *nats.Msg {
		m := nats.NewMsg(subjects[n%len(subjects)])
		m.Data = entry
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.PresenceRawDuration+phaseGrace)
	defer cancel()
	rp := p
	rp.RawDuration = p.PresenceRawDuration
	rawAsync(ctx, js, msg, rp, async)
	logf("presence: raw KV put async (window %d)     %9.0f puts/s (%d acked, %d failed)", async.Window, async.MsgsPerSec, async.Acked, async.Failed)
	if async.Error != "" {
		syncPuts.Error = "not run"
		return async, syncPuts
	}
	rawSyncPuts(ctx, js, subjects, entry, rp, syncPuts)
	logf("presence: raw KV put sync (%d at a time)     %9.0f puts/s (%d acked, %d failed)", syncPuts.Inflight, syncPuts.MsgsPerSec, syncPuts.Acked, syncPuts.Failed)
	return async, syncPuts
}

// presenceWorkers is the number of the presence service's shard workers (its shardCount), each
// of which writes one entry at a time.
const presenceWorkers = 8

// rawSyncPuts publishes entry to subjects round robin from r.Inflight goroutines, each waiting for
// every acknowledgement, for p.RawDuration or p.RawMax puts.
func rawSyncPuts(ctx context.Context, js jetstream.JetStream, subjects []string, entry []byte, p params, r *rawResult) {
	var acked, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	stop := start.Add(p.RawDuration)
	var wg sync.WaitGroup
	for w := range r.Inflight {
		wg.Go(func() {
			for n := 0; n < p.RawMax/r.Inflight && time.Now().Before(stop) && ctx.Err() == nil; n++ {
				subj := subjects[(n*r.Inflight+w)%len(subjects)]
				if _, err := js.Publish(ctx, subj, entry); err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	r.finish(acked.Load(), failed.Load(), time.Since(start), firstErr)
}

const (
	presenceGateway = "chatbench-gw"
	presenceClient  = "chatbench"
)

// presenceSim stands for the gateways: connection i is of user "pu<i mod users>", so that the
// connections of a user are far apart in the round robin. Reports are encoded once, beforehand:
// the load generator shares the CPUs with what it measures.
type presenceSim struct {
	nc                  *nats.Conn
	users               int
	subjects, keys      []string
	connects, heartbeat [][]byte
}

func presenceUser(i int) string { return "pu" + strconv.Itoa(i) }

func newPresenceSim(nc *nats.Conn, users, perUser int) *presenceSim {
	s := &presenceSim{nc: nc, users: users}
	ts := schemas.FormatTime(time.Now())
	for i := range users * perUser {
		user := presenceUser(i % users)
		ev := schemas.ConnEvent{Type: schemas.TypeConn, User: user, Conn: nuid.Next(), Gateway: presenceGateway,
			State: schemas.ConnConnect, Client: presenceClient, Ts: ts}
		s.subjects = append(s.subjects, schemas.PresenceConnSubject(user))
		s.keys = append(s.keys, schemas.ConnKey(user, ev.Conn))
		s.connects = append(s.connects, mustJSON(ev))
		ev.State = schemas.ConnHeartbeat
		s.heartbeat = append(s.heartbeat, mustJSON(ev))
	}
	return s
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return data
}

func (s *presenceSim) conns() int { return len(s.subjects) }

// serviceCounters reads the service's metrics from its registry.
type serviceCounters struct{ reg *prometheus.Registry }

type counters struct {
	connects, heartbeats float64 // chat_presence_conn_events_total by state
	recomputes           float64 // chat_presence_recompute_seconds count
	recomputeSum         float64 // and sum, in seconds
	changes              float64 // chat_presence_changes_total, every status
	invalid              float64
}

func (sc serviceCounters) read() (counters, error) {
	var c counters
	mfs, err := sc.reg.Gather()
	if err != nil {
		return c, fmt.Errorf("service metrics: %w", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "chat_presence_conn_events_total":
				for _, l := range m.GetLabel() {
					if l.GetName() != "state" {
						continue
					}
					switch l.GetValue() {
					case schemas.ConnConnect:
						c.connects += m.GetCounter().GetValue()
					case schemas.ConnHeartbeat:
						c.heartbeats += m.GetCounter().GetValue()
					}
				}
			case "chat_presence_recompute_seconds":
				c.recomputes += float64(m.GetHistogram().GetSampleCount())
				c.recomputeSum += m.GetHistogram().GetSampleSum()
			case "chat_presence_changes_total":
				c.changes += m.GetCounter().GetValue()
			case "chat_presence_invalid_total":
				c.invalid += m.GetCounter().GetValue()
			}
		}
	}
	return c, nil
}

// progress polls one counter of the service, for the closed loops.
type progress struct {
	v    atomic.Int64
	err  atomic.Value
	stop chan struct{}
	done chan struct{}
}

func watchCounter(sc serviceCounters, get func(counters) float64, every, limit time.Duration) *progress {
	pr := &progress{stop: make(chan struct{}), done: make(chan struct{})}
	read := func() bool {
		c, err := sc.read()
		if err != nil {
			pr.err.Store(err)
			return false
		}
		pr.v.Store(int64(get(c)))
		return true
	}
	read()
	go func() {
		defer close(pr.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		deadline := time.After(limit)
		for {
			select {
			case <-pr.stop:
				return
			case <-deadline:
				return
			case <-tick.C:
				if !read() {
					return
				}
			}
		}
	}()
	return pr
}

func (pr *progress) close() {
	close(pr.stop)
	<-pr.done
}

// publishClosed publishes data[i mod n] for i from first, keeping at most backlog reports
// published and not yet counted by the service (pr, whose value was base when first was
// published), until until or limit reports; published counts them, after before(i), if not nil.
func (s *presenceSim) publishClosed(data [][]byte, first int64, pr *progress, base int64, backlog int, until time.Time, limit int64, published *atomic.Int64, before func(i int)) error {
	n := int64(s.conns())
	for i := first; i < first+limit; i++ {
		for i-first-(pr.v.Load()-base) >= int64(backlog) {
			if err, _ := pr.err.Load().(error); err != nil {
				return err
			}
			if !time.Now().Before(until) {
				return nil
			}
			time.Sleep(time.Millisecond)
		}
		if !time.Now().Before(until) {
			return nil
		}
		if before != nil {
			before(int(i % n))
		}
		if err := s.nc.Publish(s.subjects[i%n], data[i%n]); err != nil {
			return err
		}
		published.Add(1)
	}
	return nil
}

// connectAll reports every connection, a closed loop bounded by the connects not yet handled, and
// waits until the service has recomputed each user. Meanwhile every connection reported is
// heartbeated every interval after its connect, as its gateway would: the connects may take
// longer than the connection TTL.
func (s *presenceSim) connectAll(sc serviceCounters, connsStream jetstream.Stream, p params, profile func() func()) (*presenceConnect, error) {
	res := &presenceConnect{}
	before, err := sc.read()
	if err != nil {
		return res, err
	}
	start := time.Now()
	deadline := start.Add(presenceConnectTimeout)
	stopProfile := profile()
	defer stopProfile()

	connectedAt := make([]time.Time, s.conns())
	var published atomic.Int64
	stopBeats := make(chan struct{})
	beatsDone := make(chan error, 1)
	go func() {
		beatsDone <- s.gatewayHeartbeats(connectedAt, &published, p.PresenceHeartbeat, deadline, stopBeats)
	}()
	defer func() {
		close(stopBeats)
		if e := <-beatsDone; e != nil {
			logf("presence: heartbeats during the connects: %v", e)
		}
	}()

	// Progress is the recompute that ends every connect.
	pr := watchCounter(sc, func(c counters) float64 { return c.recomputes }, presenceConnectPoll, presenceConnectTimeout)
	err = s.publishClosed(s.connects, 0, pr, int64(before.recomputes), presenceConnectBacklog, deadline,
		int64(s.conns()), &published, func(i int) { connectedAt[i] = time.Now() })
	pr.close()
	if err == nil && published.Load() != int64(s.conns()) {
		err = fmt.Errorf("%d of %d connects published in %s", published.Load(), s.conns(), presenceConnectTimeout)
	}
	if err != nil {
		return res, err
	}
	var now counters
	ok := waitFor(context.Background(), time.Until(deadline), func() bool {
		now, err = sc.read()
		return err != nil || now.recomputes-before.recomputes >= float64(s.conns())
	})
	if err != nil {
		return res, err
	}
	res.Seconds = time.Since(start).Seconds()
	res.ConnectsPerSec = float64(s.conns()) / res.Seconds
	res.Recomputes = int64(now.recomputes - before.recomputes)
	if res.Recomputes > 0 {
		res.RecomputeMeanMs = 1000 * (now.recomputeSum - before.recomputeSum) / float64(res.Recomputes)
	}
	if !ok {
		return res, fmt.Errorf("%d of %d connects handled after %s", res.Recomputes, s.conns(), presenceConnectTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	si, err := connsStream.Info(ctx)
	if err != nil {
		return res, err
	}
	if si.State.Msgs != uint64(s.conns()) {
		return res, fmt.Errorf("%d connections stored, not %d", si.State.Msgs, s.conns())
	}
	res.Aggregates, err = s.checkAggregates(ctx, p.PresenceConnsPerUser)
	if err != nil {
		return res, err
	}
	if res.Aggregates != s.users {
		return res, fmt.Errorf("%d of %d users online with %d devices", res.Aggregates, s.users, p.PresenceConnsPerUser)
	}
	return res, nil
}

// gatewayHeartbeats heartbeats every connection whose connect is published (connectedAt[i] is set
// before published counts i) every interval after its connect, until stop or deadline.
func (s *presenceSim) gatewayHeartbeats(connectedAt []time.Time, published *atomic.Int64, interval time.Duration, deadline time.Time, stop chan struct{}) error {
	next := make([]time.Time, len(connectedAt))
	seen := 0
	tick := time.NewTicker(presenceHeartbeatScan)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		n := int(published.Load())
		for ; seen < n; seen++ {
			next[seen] = connectedAt[seen].Add(interval)
		}
		now := time.Now()
		for i := range n {
			if now.Before(next[i]) {
				continue
			}
			if err := s.nc.Publish(s.subjects[i], s.heartbeat[i]); err != nil {
				return err
			}
			next[i] = next[i].Add(interval)
		}
	}
	return nil
}

// checkAggregates reads the aggregates bucket and counts the users online with devices connections.
func (s *presenceSim) checkAggregates(ctx context.Context, devices int) (int, error) {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, schemas.PresenceBucket)
	if err != nil {
		return 0, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	n := 0
	for range s.users + 1 {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return n, errors.New("aggregates: watcher closed")
			}
			if e == nil {
				return n, nil
			}
			var ps schemas.PresenceState
			if json.Unmarshal(e.Value(), &ps) == nil && ps.Status == schemas.StatusOnline && ps.Devices == devices && ps.OfflineAt == "" {
				n++
			}
		case <-ctx.Done():
			return n, fmt.Errorf("aggregates: %w", ctx.Err())
		}
	}
	return n, errors.New("aggregates: more entries than users")
}

// streamLastSeq is the last sequence of the connections bucket's stream: one per write.
func streamLastSeq(st jetstream.Stream) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	si, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return si.State.LastSeq, nil
}

// absorb runs the closed loop of heartbeats: a warmup, then the measured window; it returns
// when every heartbeat published has been stored.
func (s *presenceSim) absorb(sc serviceCounters, connsStream jetstream.Stream, p params, profile func() func()) (*presenceAbsorb, error) {
	res := &presenceAbsorb{Mode: "closed", Backlog: p.PresenceBacklog, Seconds: p.PresenceMeasure.Seconds()}
	before, err := sc.read()
	if err != nil {
		return res, err
	}
	seq0, err := streamLastSeq(connsStream)
	if err != nil {
		return res, err
	}
	begin := time.Now()
	winStart, winEnd := begin.Add(p.PresenceWarmup), begin.Add(p.PresenceWarmup+p.PresenceMeasure)
	pr := watchCounter(sc, func(c counters) float64 { return c.heartbeats }, presencePoll, p.PresenceWarmup+p.PresenceMeasure+phaseGrace)
	var published atomic.Int64

	// The window is read by its own goroutine, at its exact bounds.
	type mark struct {
		c         counters
		seq       uint64
		published int64
		cpu       time.Duration
		at        time.Time
		err       error
	}
	marks := make(chan [2]mark, 1)
	go func() {
		var m [2]mark
		read := func(i int) {
			m[i].cpu, m[i].at, m[i].published = cpuTime(), time.Now(), published.Load()
			c, err1 := sc.read()
			seq, err2 := streamLastSeq(connsStream)
			m[i].c, m[i].seq, m[i].err = c, seq, errors.Join(err1, err2)
		}
		sleepUntil(context.Background(), winStart)
		read(0)
		stop := profile()
		sleepUntil(context.Background(), winEnd)
		read(1)
		stop()
		marks <- m
	}()
	// Bounded far above what one machine does (a million reports a second).
	maxReports := int64((p.PresenceWarmup + p.PresenceMeasure).Seconds() * 1e6)
	err = s.publishClosed(s.heartbeat, 0, pr, int64(before.heartbeats), p.PresenceBacklog, winEnd, maxReports, &published, nil)
	lastPublished := time.Now()
	pr.close()
	m := <-marks
	if err = errors.Join(err, m[0].err, m[1].err); err != nil {
		return res, err
	}
	el := m[1].at.Sub(m[0].at).Seconds()
	res.Seconds = el
	res.Published = m[1].published - m[0].published
	res.Events = int64(m[1].c.heartbeats - m[0].c.heartbeats)
	res.Stored = int64(m[1].seq - m[0].seq)
	res.EventsPerSec, res.StoredPerSec = float64(res.Events)/el, float64(res.Stored)/el
	res.Recomputes = int64(m[1].c.recomputes - m[0].c.recomputes)
	if res.Recomputes > 0 {
		res.RecomputeMean = 1000 * (m[1].c.recomputeSum - m[0].c.recomputeSum) / float64(res.Recomputes)
	}
	res.CPUCores = (m[1].cpu - m[0].cpu).Seconds() / el

	// Drain: every heartbeat taken, and stored.
	total := published.Load()
	var now counters
	var seq uint64
	if !waitFor(context.Background(), presenceDrainTimeout, func() bool {
		now, err = sc.read()
		if err == nil {
			seq, err = streamLastSeq(connsStream)
		}
		return err != nil || int64(now.heartbeats-before.heartbeats) >= total && int64(seq-seq0) >= total
	}) {
		err = fmt.Errorf("after %s: %d of %d heartbeats taken, %d stored", presenceDrainTimeout,
			int64(now.heartbeats-before.heartbeats), total, seq-seq0)
	}
	res.DrainSeconds = time.Since(lastPublished).Seconds()
	return res, err
}

// round heartbeats every connection once over one interval from from, spread evenly: connection
// i at from + i*spread/n. spread leaves two ticks at the end, so that the last heartbeats (sent
// on the first tick after they are due) go before the interval ends.
func (s *presenceSim) round(ctx context.Context, from time.Time, interval time.Duration) error {
	n := s.conns()
	spread := interval - 2*presenceTick
	if spread <= 0 {
		return fmt.Errorf("heartbeat interval %s: too short", interval)
	}
	sleepUntil(ctx, from)
	tick := time.NewTicker(presenceTick)
	defer tick.Stop()
	for sent := 0; sent < n; {
		due := min(int(int64(time.Since(from))*int64(n)/int64(spread))+1, n)
		for ; sent < due; sent++ {
			if err := s.nc.Publish(s.subjects[sent], s.heartbeat[sent]); err != nil {
				return err
			}
		}
		if sent >= n {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// idleCPU measures this process's CPU over Rounds idle windows (no heartbeat at all), each
// followed by a heartbeat window of the same length: one heartbeat interval, in which every
// connection is heartbeated once, connection i at i*interval/n into the window, as a gateway
// spreading its heartbeats would. Alternating the two averages out drift (GC, other work on the
// machine). A warm round of heartbeats first puts every connection on that schedule, so that no
// entry goes longer than two intervals without a heartbeat: below the connection TTL.
func (s *presenceSim) idleCPU(sc serviceCounters, p params, ttl time.Duration) (*presenceCPU, error) {
	interval := p.PresenceHeartbeat
	rounds := max(1, int(math.Round(float64(p.PresenceCPUWindow)/float64(interval))))
	res := &presenceCPU{Conns: s.conns(), IntervalSeconds: interval.Seconds(), Rounds: rounds,
		WindowSeconds: float64(rounds) * interval.Seconds()}
	if 2*interval > ttl-presenceTTLMargin {
		return res, fmt.Errorf("heartbeat interval %s: two of them and a margin of %s do not fit in the connection TTL %s",
			interval, presenceTTLMargin, ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(2*rounds+1)*interval+phaseGrace)
	defer cancel()

	// Window w (0: the warm round) starts at warm + w*interval: odd ones are idle, even ones
	// heartbeat windows.
	warm := time.Now().Add(presenceTick)
	start := func(w int) time.Time { return warm.Add(time.Duration(w) * interval) }
	sent := make(chan error, 1)
	go func() {
		for w := 0; w <= 2*rounds; w += 2 {
			if err := s.round(ctx, start(w), interval); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	sleepUntil(ctx, start(1))
	before, err := sc.read()
	if err != nil {
		return res, err
	}
	var idle, busy time.Duration
	var idleSec, busySec float64
	cpu0, t0 := cpuTime(), time.Now()
	for w := 1; w <= 2*rounds; w++ {
		sleepUntil(ctx, start(w+1))
		cpu1, t1 := cpuTime(), time.Now()
		if w%2 == 1 {
			idle += cpu1 - cpu0
			idleSec += t1.Sub(t0).Seconds()
		} else {
			busy += cpu1 - cpu0
			busySec += t1.Sub(t0).Seconds()
		}
		cpu0, t0 = cpu1, t1
	}
	if err := <-sent; err != nil {
		return res, err
	}
	// The last heartbeats are handled within milliseconds; their count is read after a pause.
	time.Sleep(100 * time.Millisecond)
	after, err := sc.read()
	if err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.IdleCPUMs, res.HeartbeatCPUMs = float64(idle)/1e6, float64(busy)/1e6
	res.IdleCores, res.HeartbeatCores = idle.Seconds()/idleSec, busy.Seconds()/busySec
	res.Heartbeats = int64(after.heartbeats - before.heartbeats)
	res.HeartbeatsPerSec = float64(res.Heartbeats) / busySec
	// CPU ms per second, per 1000 connections: the difference of the two rates.
	res.CPUMsPerSecPer1k = 1000 * (res.HeartbeatCores - res.IdleCores) / (float64(s.conns()) / 1000)
	res.CorePctPer1k = res.CPUMsPerSecPer1k / 10
	if want := int64(rounds * s.conns()); res.Heartbeats != want {
		return res, fmt.Errorf("%d heartbeats taken in the heartbeat windows, not %d", res.Heartbeats, want)
	}
	return res, nil
}

// warnCounter is the service's logger: it counts records at warning level and above, keeps the
// first few and prints them; anything below is dropped.
type warnCounter struct {
	inner  slog.Handler
	shared *warnShared
}

type warnShared struct {
	n     atomic.Int64
	mu    sync.Mutex
	buf   bytes.Buffer
	first []string
}

const keptWarnings = 5

func newWarnCounter() *warnCounter {
	sh := &warnShared{}
	return &warnCounter{inner: slog.NewTextHandler(&sh.buf, &slog.HandlerOptions{Level: slog.LevelWarn}), shared: sh}
}

func (h *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if h.shared.n.Add(1) > keptWarnings {
		return nil
	}
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	h.shared.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	line := string(bytes.TrimSpace(h.shared.buf.Bytes()))
	h.shared.first = append(h.shared.first, line)
	logf("presence service: %s", line)
	return nil
}

func (h *warnCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &warnCounter{inner: h.inner.WithAttrs(attrs), shared: h.shared}
}

func (h *warnCounter) WithGroup(name string) slog.Handler {
	return &warnCounter{inner: h.inner.WithGroup(name), shared: h.shared}
}

func (h *warnCounter) stats() *presenceServiceStats {
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	return &presenceServiceStats{Warnings: h.shared.n.Load(), FirstWarnings: append([]string(nil), h.shared.first...)}
}
