package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/gatewaytest"
)

// loadSpec describes one load run over the bench's clients.
type loadSpec struct {
	phase  int    // tags the run's frame ids and texts, so late answers of an earlier run are ignored
	mode   string // closed: send when a window slot frees; open: send on a fixed schedule
	window int    // unacknowledged messages per sender
	// Only what is sent in [start+warmup, start+warmup+measure) is measured; the warmup absorbs the
	// first messages of each conversation (indexing) and lets batches reach their steady size.
	warmup, measure time.Duration
	interval        time.Duration // open loop: time between two sends of one sender
	profile         func() func() // optional CPU profile of the measured window
}

// loadResult is what one load run measured.
type loadResult struct {
	Mode       string  `json:"mode"`
	TargetRate float64 `json:"targetRate,omitempty"` // open loop: messages/s offered in all
	Window     int     `json:"window"`
	Seconds    float64 `json:"seconds"` // length of the measured window
	// Sent and Acked count messages sent, and acks received, within the window; AckedPerSec is the
	// persisted-message throughput.
	Sent        int64   `json:"sent"`
	Acked       int64   `json:"acked"`
	AckedPerSec float64 `json:"ackedPerSec"`
	// DeliveredPerSec counts message frames the receivers got within the window: below AckedPerSec,
	// the gateway stores faster than it delivers and the delivery backlog grows.
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	// Over the whole run: error answers by errCode, acks that never reached the receiver by the end
	// of the drain, and deliveries out of seq order (both must be zero).
	Errors      map[string]int64 `json:"errors,omitempty"`
	TotalAcked  int64            `json:"totalAcked"`
	Delivered   int64            `json:"delivered"`
	Undelivered int64            `json:"undelivered"`
	// CatchUpSeconds is how long after the window every acked message had been delivered: the
	// delivery backlog the run left behind.
	CatchUpSeconds float64 `json:"catchUpSeconds"`
	OutOfOrder     int64   `json:"outOfOrder"`

	SendToAck     latency `json:"sendToAckMs"`
	SendToDeliver latency `json:"sendToDeliverMs"`

	// From the gateway's metrics over the window.
	MeanBatch     float64 `json:"meanBatch"`
	Batches       int64   `json:"batches"`
	Fallbacks     int64   `json:"fallbacks"`
	SessionCloses int64   `json:"sessionCloses"`
	// LiveLagMeanMs is the mean time from an event's append to its arrival at the gateway's live
	// feed: the part of send-to-deliver spent before the gateway pushes the event to sessions.
	LiveLagMeanMs float64 `json:"liveLagMeanMs"`
	// ServerCPUCores is the CPU time chatd (nats-server, gateway, presence, unread) used over the
	// window, in cores; HarnessCPUCores the load generator's (this process). Their sum close to the
	// machine's count means the run was CPU-bound.
	ServerCPUCores  float64 `json:"serverCpuCores"`
	HarnessCPUCores float64 `json:"harnessCpuCores"`
	// ServerCPUPerMsgUs is chatd's CPU time per acked message in the window, in microseconds: it
	// covers storing the message, the ack, and delivering it to the sender's and receiver's sessions.
	ServerCPUPerMsgUs float64 `json:"serverCpuPerMsgUs"`

	Error string `json:"error,omitempty"`
}

func (r *loadResult) err() error {
	if r == nil || r.Error == "" {
		return nil
	}
	return fmt.Errorf("%s loop: %s", r.Mode, r.Error)
}

func (r *loadResult) summary() string {
	s := fmt.Sprintf("%.0f acked msgs/s, %.0f delivered/s, send->ack p50 %.2f ms p99 %.2f ms, send->deliver p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms, mean batch %.1f, live lag %.1f ms, server %.2f cores (%.1f µs/msg), harness %.2f cores",
		r.AckedPerSec, r.DeliveredPerSec, r.SendToAck.P50, r.SendToAck.P99, r.SendToDeliver.P50, r.SendToDeliver.P99,
		r.SendToDeliver.P999, r.SendToDeliver.Max, r.MeanBatch, r.LiveLagMeanMs, r.ServerCPUCores, r.ServerCPUPerMsgUs, r.HarnessCPUCores)
	if r.Error != "" {
		s += " (error: " + r.Error + ")"
	}
	return s
}

// run drives one load run: a sender goroutine and an answer reader per sender client, a delivery
// reader per receiver client. It returns once every answer and delivery is in, or the drain timed out.
func (b *bench) run(spec loadSpec, p params) *loadResult {
	lr := newLoadRun(spec, len(b.senders))
	res := lr.res
	ctx, cancel := context.WithDeadline(context.Background(), lr.end.Add(2*p.DrainTimeout+phaseGrace))
	defer cancel()
	readCtx, stopReaders := context.WithCancel(ctx)
	var readers, senders sync.WaitGroup
	for i := range b.senders {
		readers.Go(func() { lr.readAnswers(readCtx, i, b.senders[i]) })
		readers.Go(func() { lr.readDeliveries(readCtx, i, b.receivers[i]) })
		senders.Go(func() { lr.send(ctx, i, b.senders[i]) })
	}
	before, after := b.watchWindow(ctx, lr, spec.profile)
	senders.Wait()
	drainErr := lr.drain(ctx, p.DrainTimeout)
	stopReaders()
	readers.Wait()
	lr.finish(<-before, <-after)
	if err := errors.Join(drainErr, lr.firstErr()); err != nil {
		res.Error = err.Error()
	}
	return res
}

// watchWindow scrapes the gateway's metrics (and runs the profile) exactly over the measured window.
func (b *bench) watchWindow(ctx context.Context, lr *loadRun, profile func() func()) (before, after <-chan gatewayMetrics) {
	bc, ac := make(chan gatewayMetrics, 1), make(chan gatewayMetrics, 1)
	scrape := func() gatewayMetrics {
		m, err := scrapeMetrics(ctx, b.srv.URL)
		if err != nil {
			lr.fail(fmt.Errorf("metrics: %w", err))
		}
		return m
	}
	go func() {
		sleepUntil(ctx, lr.start)
		bc <- scrape()
		stop := func() {}
		if profile != nil {
			stop = profile()
		}
		cpu0, t0, server := cpuTime(), time.Now(), meterCPU(b.srv)
		sleepUntil(ctx, lr.end)
		used, cores := server.stop()
		lr.res.ServerCPUCores = cores
		lr.res.HarnessCPUCores = (cpuTime() - cpu0).Seconds() / time.Since(t0).Seconds()
		if n := lr.acked.Load(); n > 0 {
			lr.res.ServerCPUPerMsgUs = float64(used.Microseconds()) / float64(n)
		}
		stop()
		ac <- scrape()
	}()
	return bc, ac
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// loadRun is the state of one run shared by its goroutines. Histograms are not safe for concurrent
// use: each reader records into its own, merged at the end.
type loadRun struct {
	spec       loadSpec
	res        *loadResult
	begin      time.Time // first send
	start, end time.Time // the measured window
	maxSends   int       // per sender: every loop is bounded in count as well as in time

	slots       []chan struct{} // per sender: one token per unanswered message
	ackHist     []*hdrhistogram.Histogram
	deliverHist []*hdrhistogram.Histogram

	sent, acked, totalAcked, delivered, deliveredInWindow, outOfOrder atomic.Int64

	mu     sync.Mutex
	errors map[string]int64
	errs   []error
}

func newLoadRun(spec loadSpec, senders int) *loadRun {
	begin := time.Now()
	lr := &loadRun{spec: spec, begin: begin, start: begin.Add(spec.warmup),
		end: begin.Add(spec.warmup + spec.measure), errors: map[string]int64{}}
	lr.res = &loadResult{Mode: spec.mode, Window: spec.window, Seconds: spec.measure.Seconds()}
	// Far above what the machine can do, so it never binds unless something is badly wrong.
	lr.maxSends = int((spec.warmup+spec.measure).Seconds()*200_000)/senders + 1
	if spec.interval > 0 {
		lr.res.TargetRate = float64(senders) * float64(time.Second) / float64(spec.interval)
	}
	for range senders {
		lr.slots = append(lr.slots, make(chan struct{}, spec.window))
		lr.ackHist = append(lr.ackHist, newHist())
		lr.deliverHist = append(lr.deliverHist, newHist())
	}
	return lr
}

func (lr *loadRun) inWindow(t time.Time) bool { return !t.Before(lr.start) && t.Before(lr.end) }

func (lr *loadRun) fail(err error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.errs = append(lr.errs, err)
}

func (lr *loadRun) firstErr() error {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if len(lr.errs) == 0 {
		return nil
	}
	if len(lr.errs) > 1 {
		return fmt.Errorf("%w (and %d more)", lr.errs[0], len(lr.errs)-1)
	}
	return lr.errs[0]
}

// send is one sender's loop. Closed loop: send as soon as a window slot is free, the latency clock
// starting at the send. Open loop: send on a fixed schedule, the clock starting at the scheduled
// time, so that a stalled gateway shows as latency rather than as fewer samples.
func (lr *loadRun) send(ctx context.Context, i int, c *gatewaytest.Client) {
	// Spread the open-loop senders over the interval rather than all at once.
	offset := time.Duration(0)
	if lr.spec.interval > 0 {
		offset = lr.spec.interval * time.Duration(i) / time.Duration(len(lr.slots))
	}
	for n := 0; n < lr.maxSends; n++ {
		at := time.Now()
		if lr.spec.interval > 0 {
			at = lr.begin.Add(offset + time.Duration(n)*lr.spec.interval)
			sleepUntil(ctx, at)
		}
		if !at.Before(lr.end) || ctx.Err() != nil {
			return
		}
		select {
		case lr.slots[i] <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if lr.spec.interval == 0 {
			at = time.Now()
		}
		if err := c.Send(lr.frame(i, n, at)); err != nil {
			<-lr.slots[i]
			lr.fail(fmt.Errorf("sender %d: %w", i, err))
			return
		}
		if lr.inWindow(at) {
			lr.sent.Add(1)
		}
	}
}

// frame is message n of sender i: its id and text both carry the run's phase and the send time.
func (lr *loadRun) frame(i, n int, at time.Time) []byte {
	text := msgText(lr.spec.phase, at)
	f := schemas.ClientFrame{Cmd: schemas.CmdMessage, ID: strconv.Itoa(lr.spec.phase) + "." + strconv.FormatInt(at.UnixNano(), 10),
		To: receiverID(i), Type: "text", Msg: &text, Mid: "p" + strconv.Itoa(lr.spec.phase) + "-" + strconv.Itoa(n)}
	data, err := json.Marshal(&f)
	if err != nil {
		panic(err) // a plain struct always encodes
	}
	return data
}

// parseFrameID is the inverse of the id frame sets.
func parseFrameID(id string) (phase int, sent int64, ok bool) {
	p, t, found := strings.Cut(id, ".")
	ph, err1 := strconv.Atoi(p)
	ns, err2 := strconv.ParseInt(t, 10, 64)
	return ph, ns, found && err1 == nil && err2 == nil
}

// readAnswers reads sender i's frames: acks and errors free a window slot. The sender's own copy of
// each message (its session is a member of the conversation too) is not counted.
func (lr *loadRun) readAnswers(ctx context.Context, i int, c *gatewaytest.Client) {
	for {
		f, ok := lr.next(ctx, c, "sender", i)
		if !ok {
			return
		}
		cmd := f.Cmd()
		if cmd != "ack" && cmd != "error" {
			continue
		}
		phase, sent, parsed := parseFrameID(f.Str("id"))
		if !parsed || phase != lr.spec.phase {
			continue // a late answer of an earlier run
		}
		now := time.Now()
		<-lr.slots[i]
		if cmd == "error" {
			lr.countError(f.Str("errCode"))
			continue
		}
		lr.totalAcked.Add(1)
		if lr.inWindow(now) {
			lr.acked.Add(1)
		}
		if lr.inWindow(time.Unix(0, sent)) {
			record(lr.ackHist[i], now.Sub(time.Unix(0, sent)))
		}
	}
}

// readDeliveries reads receiver i's frames: every message of this run must arrive once, in seq order.
func (lr *loadRun) readDeliveries(ctx context.Context, i int, c *gatewaytest.Client) {
	var last uint64
	for {
		f, ok := lr.next(ctx, c, "receiver", i)
		if !ok {
			return
		}
		if f.Cmd() != "message" {
			continue
		}
		phase, sent, parsed := parseMsgText(f.Str("msg"))
		if !parsed || phase != lr.spec.phase {
			continue
		}
		now := time.Now()
		lr.delivered.Add(1)
		if lr.inWindow(now) {
			lr.deliveredInWindow.Add(1)
		}
		if seq := f.Seq(); seq <= last {
			lr.outOfOrder.Add(1)
		} else {
			last = seq
		}
		if lr.inWindow(time.Unix(0, sent)) {
			record(lr.deliverHist[i], now.Sub(time.Unix(0, sent)))
		}
	}
}

// next returns the client's next frame; false when the run is over or the socket closed (which
// fails the run: no client may be dropped during a measurement).
func (lr *loadRun) next(ctx context.Context, c *gatewaytest.Client, role string, i int) (gatewaytest.Frame, bool) {
	select {
	case f, ok := <-c.Frames:
		if !ok {
			lr.fail(fmt.Errorf("%s %d: socket closed: %v", role, i, closeReason(c)))
		}
		return f, ok
	case <-ctx.Done():
		return nil, false
	}
}

func closeReason(c *gatewaytest.Client) error {
	select {
	case err := <-c.Closed:
		return err
	default:
		return errors.New("unknown reason")
	}
}

func (lr *loadRun) countError(code string) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.errors[code]++
}

// drain waits, within timeout each, for every sent message to be answered and every acked one to
// be delivered.
func (lr *loadRun) drain(ctx context.Context, timeout time.Duration) error {
	unanswered := func() int {
		n := 0
		for _, s := range lr.slots {
			n += len(s)
		}
		return n
	}
	if !waitFor(ctx, timeout, func() bool { return unanswered() == 0 }) {
		return fmt.Errorf("%d messages unanswered %s after the run", unanswered(), timeout)
	}
	if !waitFor(ctx, timeout, func() bool { return lr.delivered.Load() >= lr.totalAcked.Load() }) {
		return fmt.Errorf("%d acked messages not delivered %s after the run", lr.totalAcked.Load()-lr.delivered.Load(), timeout)
	}
	lr.res.CatchUpSeconds = time.Since(lr.end).Seconds()
	return nil
}

// waitFor polls cond until it holds (true) or timeout passes (false).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// finish computes the results once every goroutine of the run is done.
func (lr *loadRun) finish(before, after gatewayMetrics) {
	r := lr.res
	r.Sent, r.Acked, r.TotalAcked = lr.sent.Load(), lr.acked.Load(), lr.totalAcked.Load()
	r.Delivered, r.OutOfOrder = lr.delivered.Load(), lr.outOfOrder.Load()
	r.Undelivered = max(0, r.TotalAcked-r.Delivered)
	r.AckedPerSec = float64(r.Acked) / r.Seconds
	r.DeliveredPerSec = float64(lr.deliveredInWindow.Load()) / r.Seconds
	r.SendToAck = summarize(merge(lr.ackHist))
	r.SendToDeliver = summarize(merge(lr.deliverHist))
	if len(lr.errors) > 0 {
		r.Errors = lr.errors
	}
	r.groupCommit(before, after)
	if r.OutOfOrder > 0 {
		lr.fail(fmt.Errorf("%d deliveries out of seq order", r.OutOfOrder))
	}
}
