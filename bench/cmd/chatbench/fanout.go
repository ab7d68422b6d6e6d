package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/eventchat/chat/schemas"
	"github.com/gorilla/websocket"
)

// The fanout scenario: one public group of 1000 members, all online with one WebSocket each, and
// ten of them publishing open loop (on a fixed schedule, whatever the answers) at a total rate
// stepped up until delivery stops keeping up. The figure is the highest rate that keeps up, in
// deliveries/s (messages/s x members), against rawhub, the raw gorilla broadcast server, driven by
// the same harness in the same run: the target is chatd at 1.2 times raw or more.
//
// A step keeps up when its send-to-deliver p99 is under 100 ms, at least 95% of the offered
// deliveries arrived by 100 ms after its last send, no client was dropped, no message was refused,
// and every message it stored reached every member within the drain's bound.
//
// The rates of both ladders lie on one geometric grid (fanoutBase x 1.1^k), so that the two servers
// can be compared at equal rates (server CPU per delivery: the harness competes for the same two
// cores, so the highest rate alone flatters whichever leaves it more). A probe climbs the grid four
// points at a time with short steps until one fails; fine steps then climb one point at a time from
// the last probe that passed, with longer steps, up to the first that fails (a fine step, or the
// first probe, that failed on its p99 alone runs once more first, and the probe resumes if the fine
// steps pass where it failed: the machine is shared, and one spoilt tail should not end the ladder). Both servers run
// side by side, connected all along, and the ladders take turns step by step, so that other work on
// the machine weighs on both alike.
//
// CHATBENCH_FANOUT_PROFILE=<base> writes a CPU profile of the server over each fine step to
// <base>-<server>-<msgs/s>.pprof (both servers serve /debug/pprof on their debug listener).

func init() {
	register(&scenario{name: "fanout", order: 30,
		doc: "a 1000-member group, all online: the highest publication rate with delivery p99 under 100 ms, in deliveries/s, chatd against the raw gorilla broadcast server (target 1.2 x raw)",
		run: runFanout})
}

const (
	fanoutMembers    = 1000
	fanoutPublishers = 10
	fanoutGroup      = "fanout"
	fanoutConv       = "g:" + fanoutGroup
	fanoutP99        = 100 * time.Millisecond
	fanoutKeptUp     = 0.95 // of the offered deliveries/s
	fanoutTarget     = 1.2  // chatd over raw
	fanoutBase       = 20.0 // messages/s at grid point 0
	fanoutFactor     = 1.1  // between two grid points
	fanoutProbeEvery = 4    // grid points between two probe steps
	fanoutMaxGrid    = 60   // 6000 messages/s: never reached, bounds the ladder
	fanoutShards     = 16   // latency histograms shared by the readers, each under its lock
)

func fanoutMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fanoutRate is the offered messages/s at grid point k.
func fanoutRate(k int) float64 {
	return math.Round(fanoutBase*math.Pow(fanoutFactor, float64(k))*10) / 10
}

// fanoutUser is member i's user id.
func fanoutUser(i int) string { return "fan" + strconv.Itoa(i) }

// fanoutParams are the scenario's lengths and bounds.
type fanoutParams struct {
	probe, fine time.Duration // one probe step, one fine step
	drain       time.Duration // bound of a step's drain (its last deliveries)
	settle      time.Duration // bound of the wait for a failed step's backlog before the next step
	deadline    time.Duration // the whole scenario
}

func fanoutDefaults(quick bool) fanoutParams {
	if quick {
		return fanoutParams{probe: 700 * time.Millisecond, fine: 700 * time.Millisecond, drain: 2 * time.Second, settle: 5 * time.Second,
			deadline: 3 * time.Minute}
	}
	return fanoutParams{probe: 2 * time.Second, fine: 5 * time.Second, drain: 3 * time.Second, settle: 10 * time.Second,
		deadline: 8 * time.Minute}
}

// fanoutStep is one rate of a ladder.
type fanoutStep struct {
	Kind               string  `json:"kind"` // probe or fine
	Grid               int     `json:"grid"`
	OfferedMsgsPerSec  float64 `json:"offeredMsgsPerSec"`
	OfferedDeliveries  float64 `json:"offeredDeliveriesPerSec"`
	Seconds            float64 `json:"seconds"`
	Sent               int64   `json:"sent"`
	Stored             int64   `json:"stored"` // chatd: acked; rawhub: sent
	Refused            int64   `json:"refused,omitempty"`
	DeliveriesPerSec   float64 `json:"deliveriesPerSec"` // arrived by 100 ms after the last send, over the step's length
	Deliveries         int64   `json:"deliveries"`       // all, by the drain's end
	DrainMs            float64 `json:"drainMs"`          // from the last send to the last delivery (or the bound)
	Drained            bool    `json:"drained"`
	SendToDeliver      latency `json:"sendToDeliverMs"`
	ServerCores        float64 `json:"serverCores"`
	ServerCPUPerDelivU float64 `json:"serverCpuPerDeliveryUs"` // the server's CPU time over the step and its drain, per delivery
	// The server's write system calls (socket writes, mostly) per delivery: under 1 when frames
	// share writes.
	ServerWritesPerDeliv float64 `json:"serverWritesPerDelivery"`
	HarnessCores         float64 `json:"harnessCores"` // this process (clients) over the same time
	// OtherCores is what the rest of the machine used meanwhile (all CPUs' busy time less the
	// server's and this process's): other work competing for the cores makes a step worth less.
	OtherCores float64 `json:"otherCores"`
	Dropped    int64   `json:"dropped,omitempty"` // clients whose socket closed during the step
	// chatd only, where its latency goes: send to ack (the append), and the mean time from the
	// append to the gateway's live feed (its metric); the rest of send-to-deliver is the fanout.
	SendToAck     *latency `json:"sendToAckMs,omitempty"`
	LiveLagMeanMs float64  `json:"liveLagMeanMs,omitempty"`
	Pass          bool     `json:"pass"`
	Why           string   `json:"why,omitempty"` // why it did not keep up
}

// fanoutLadder is one server's ladder.
type fanoutLadder struct {
	Server       string        `json:"server"`
	SetupSeconds float64       `json:"setupSeconds"`
	Steps        []*fanoutStep `json:"steps"`
	// Max is the highest step that kept up (nil if none did); Capped: none failed up to the grid's end.
	Max    *fanoutStep `json:"max,omitempty"`
	Capped bool        `json:"capped,omitempty"`
	// Over the whole ladder: clients dropped (chatd: a failure; rawhub drops a client whose buffer
	// of 256 fills, by design, and the harness reconnects it before the next step), deliveries that
	// never came to a client still connected, and deliveries out of order or repeated.
	Dropped    int64            `json:"dropped"`
	Lost       int64            `json:"lost"`
	OutOfOrder int64            `json:"outOfOrder"`
	Duplicates int64            `json:"duplicates"`
	DropReason string           `json:"dropReason,omitempty"` // the first dropped client's error
	Refused    map[string]int64 `json:"refused,omitempty"`    // error answers, by errCode
	Error      string           `json:"error,omitempty"`
}

// passed returns the step at grid point k that kept up, a fine one if there is one; nil if none.
func (l *fanoutLadder) passed(k int) *fanoutStep {
	var found *fanoutStep
	for _, s := range l.Steps {
		if s.Grid == k && s.Pass && (found == nil || s.Kind == "fine") {
			found = s
		}
	}
	return found
}

// fanoutEqual compares the servers' CPU per delivery at the highest rate both kept up with.
type fanoutEqual struct {
	OfferedMsgsPerSec  float64 `json:"offeredMsgsPerSec"`
	ChatCPUPerDelivU   float64 `json:"chatCpuPerDeliveryUs"`
	RawCPUPerDelivU    float64 `json:"rawCpuPerDeliveryUs"`
	ChatOverRaw        float64 `json:"chatOverRaw"`
	ChatWritesPerDeliv float64 `json:"chatWritesPerDelivery"`
	RawWritesPerDeliv  float64 `json:"rawWritesPerDelivery"`
	ChatHarnessCores   float64 `json:"chatHarnessCores"`
	RawHarnessCores    float64 `json:"rawHarnessCores"`
}

// fanoutResult is the scenario's result.
type fanoutResult struct {
	Members    int           `json:"members"`
	Publishers int           `json:"publishers"`
	P99LimitMs float64       `json:"p99LimitMs"`
	Chat       *fanoutLadder `json:"chat,omitempty"`
	Raw        *fanoutLadder `json:"raw,omitempty"`
	// ChatOverRaw is the ratio of the highest deliveries/s kept up with; the target is Target.
	ChatOverRaw float64      `json:"chatOverRaw"`
	Target      float64      `json:"target"`
	EqualRate   *fanoutEqual `json:"equalRate,omitempty"`
}

func (r *fanoutResult) failed() bool {
	if c := r.Chat; c != nil && (c.Dropped > 0 || c.Lost > 0 || c.OutOfOrder > 0 || c.Duplicates > 0) {
		return true
	}
	// rawhub drops slow clients by design; anything else of it is the harness's fault.
	return r.Raw != nil && (r.Raw.Lost > 0 || r.Raw.OutOfOrder > 0 || r.Raw.Duplicates > 0)
}

func runFanout(quick bool) (scenarioResult, error) {
	p := fanoutDefaults(quick)
	res := &fanoutResult{Members: fanoutMembers, Publishers: fanoutPublishers, P99LimitMs: fanoutMs(fanoutP99), Target: fanoutTarget}
	ctx, cancel := context.WithTimeout(context.Background(), p.deadline)
	defer cancel()
	mint, err := newMinter()
	if err != nil {
		return res, err
	}
	var errs []error
	res.Chat = &fanoutLadder{Server: "chatd"}
	chat, err := fanoutSetup(ctx, p, res.Chat, func() (*child, error) { return startChatd(chatdOptions{Fsync: false}) },
		func(srv *child) func(context.Context, int, bool) (*websocket.Conn, error) {
			return chatJoiner(srv, mint)
		})
	errs = append(errs, err)
	res.Raw = &fanoutLadder{Server: "rawhub"}
	raw, err := fanoutSetup(ctx, p, res.Raw, startRawhub,
		func(srv *child) func(context.Context, int, bool) (*websocket.Conn, error) {
			return func(ctx context.Context, i int, _ bool) (*websocket.Conn, error) {
				return dialHub(ctx, srv.URL, fanoutGroup, i)
			}
		})
	errs = append(errs, err)

	// The ladders take turns, step by step (who goes first alternates).
	var climbs []*fanoutClimb
	for _, c := range []*fanoutClimb{chat, raw} {
		if c != nil {
			climbs = append(climbs, c)
		}
	}
	for round := 0; ctx.Err() == nil; round++ {
		active := 0
		for i := range climbs {
			if c := climbs[(i+round)%len(climbs)]; !c.done {
				c.advance(ctx)
				active++
			}
		}
		if active == 0 {
			break
		}
	}
	for _, c := range climbs {
		c.finish(ctx)
		if c.l.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", c.l.Server, c.l.Error))
		}
	}

	if res.Chat.Max != nil && res.Raw.Max != nil {
		res.ChatOverRaw = ratio(res.Chat.Max.DeliveriesPerSec, res.Raw.Max.DeliveriesPerSec)
		// The highest grid point both kept up with (the probes' points are common to both ladders).
		for k := min(res.Chat.Max.Grid, res.Raw.Max.Grid); k >= 0; k-- {
			if c, r := res.Chat.passed(k), res.Raw.passed(k); c != nil && r != nil {
				res.EqualRate = &fanoutEqual{OfferedMsgsPerSec: c.OfferedMsgsPerSec, ChatCPUPerDelivU: c.ServerCPUPerDelivU,
					RawCPUPerDelivU: r.ServerCPUPerDelivU, ChatOverRaw: ratio(c.ServerCPUPerDelivU, r.ServerCPUPerDelivU),
					ChatWritesPerDeliv: c.ServerWritesPerDeliv, RawWritesPerDeliv: r.ServerWritesPerDeliv,
					ChatHarnessCores: c.HarnessCores, RawHarnessCores: r.HarnessCores}
				break
			}
		}
	}
	return res, errors.Join(errs...)
}

// fanoutSetup starts one server and connects its members; nil (and the error, also in l) if it
// could not. The climb's finish closes everything.
func fanoutSetup(ctx context.Context, p fanoutParams, l *fanoutLadder, start func() (*child, error),
	dialer func(*child) func(context.Context, int, bool) (*websocket.Conn, error)) (*fanoutClimb, error) {
	t0 := time.Now()
	srv, err := start()
	if err != nil {
		l.Error = err.Error()
		return nil, fmt.Errorf("%s: %w", l.Server, err)
	}
	f := newFanoutFleet(l.Server, srv, p, dialer(srv), l.Server == "chatd")
	if err := f.connect(ctx); err != nil {
		f.close()
		srv.stop()
		l.Error = "connect: " + err.Error()
		return nil, fmt.Errorf("%s: connect: %w", l.Server, err)
	}
	connected := time.Since(t0)
	// The joins fan out member and presence frames to everyone: let them go through.
	fanoutQuiet(ctx, srv, 45*time.Second)
	l.SetupSeconds = time.Since(t0).Seconds()
	logf("fanout %s: %d members connected and in the group in %.1fs, server quiet after %.1fs", l.Server, fanoutMembers,
		connected.Seconds(), l.SetupSeconds)
	return &fanoutClimb{f: f, l: l, kind: "probe", lastPass: -1, failed: fanoutMaxGrid + 1}, nil
}

// fanoutClimb is one server's ladder in progress: the probe climbs the grid fanoutProbeEvery points
// at a time until a step fails; the fine steps climb one point at a time from the last step that
// passed until one fails (twice in a row if it failed on its p99 alone, as the first probe may). A
// fine step that passes at the point where the probe failed shows that failure was a fluke: the
// probe resumes from there.
type fanoutClimb struct {
	f        *fanoutFleet
	l        *fanoutLadder
	phase    int    // steps run so far: the phase of the messages
	kind     string // of the next step
	k        int    // grid point of the next step
	lastPass int    // the highest grid point that kept up, -1 for none
	failed   int    // where the probe last failed
	retried  bool   // the next step repeats one that failed on its p99
	done     bool
}

// advance runs the ladder's next step.
func (c *fanoutClimb) advance(ctx context.Context) {
	f, l := c.f, c.l
	// A failed step may leave a backlog, and dropped clients: clear both first.
	if !f.waitDelivered(ctx, f.p.settle) {
		l.Error = fmt.Sprintf("a backlog of %d deliveries did not clear within %s", f.owed(), f.p.settle)
		c.done = true
		return
	}
	if err := f.revive(ctx); err != nil {
		l.Error, c.done = err.Error(), true
		return
	}
	if ctx.Err() != nil {
		l.Error, c.done = "scenario deadline: "+ctx.Err().Error(), true
		return
	}
	c.phase++
	st := f.step(ctx, c.kind, c.k, c.phase)
	l.Steps = append(l.Steps, st)
	if st.Pass && (l.Max == nil || c.k > l.Max.Grid || (c.k == l.Max.Grid && c.kind == "fine")) {
		l.Max = st
	}
	switch {
	case st.Pass:
		c.lastPass, c.retried = c.k, false
		switch {
		case c.kind == "probe" || c.k >= c.failed:
			c.kind, c.k = "probe", c.k+fanoutProbeEvery
		default:
			c.k++
		}
		if c.k > fanoutMaxGrid {
			l.Capped, c.done = true, true
		}
	case c.kind == "probe" && c.lastPass >= 0:
		c.failed = c.k
		c.kind, c.k = "fine", c.lastPass+1
	case !c.retried && strings.HasPrefix(st.Why, "p99"):
		// Other work on the machine can spoil one step's tail: a step that failed on its latency
		// alone (a fine one, or the first probe) runs once more before the ladder ends.
		c.retried = true
	default:
		c.done = true
	}
}

// finish waits for what is still owed, counts what never came, and closes the clients and server.
func (c *fanoutClimb) finish(ctx context.Context) {
	f, l := c.f, c.l
	f.waitDelivered(ctx, f.p.settle)
	l.Lost = f.owed()
	l.Dropped, l.OutOfOrder, l.Duplicates = f.deaths.Load(), f.outOfOrder.Load(), f.duplicates.Load()
	l.Refused = f.refusedCodes()
	f.mu.Lock()
	l.DropReason = f.whyDeath
	f.mu.Unlock()
	f.close()
	f.srv.stop()
}

// fanoutWriteCalls is the write system calls srv has made so far (syscw of /proc/<pid>/io), or 0.
func fanoutWriteCalls(srv *child) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", srv.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// fanoutBusy is the CPU time all CPUs have spent busy so far (/proc/stat), or 0.
func fanoutBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * (time.Second / 100) // clock ticks
}

// fanoutQuiet waits until srv has used under a tenth of a core over half a second, or bound passed.
func fanoutQuiet(ctx context.Context, srv *child, bound time.Duration) {
	for deadline := time.Now().Add(bound); time.Now().Before(deadline) && ctx.Err() == nil; {
		m := meterCPU(srv)
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
		if _, cores := m.stop(); cores < 0.1 {
			return
		}
	}
}

// chatJoiner returns the dial of chatd members: connect as member i, then create the group
// (member 0, once) or join it, and wait for the ok. The reader starts after.
func chatJoiner(srv *child, mint *tokenMinter) func(context.Context, int, bool) (*websocket.Conn, error) {
	return func(ctx context.Context, i int, create bool) (*websocket.Conn, error) {
		tok, err := mint.token(fanoutUser(i))
		if err != nil {
			return nil, err
		}
		conn, err := dialChat(ctx, srv.URL, tok, i)
		if err != nil {
			return nil, err
		}
		f := schemas.ClientFrame{Cmd: schemas.CmdJoin, Conv: fanoutConv}
		if create {
			f.Cmd, f.Public, f.Members = schemas.CmdCreate, true, []string{}
		}
		// Joins of one group at once contend for its state (the gateway answers internal "too
		// much contention" after a few attempts): try again a little later, a bounded number of times.
		for attempt := 0; ; attempt++ {
			f.ID = "j" + strconv.Itoa(i) + "." + strconv.Itoa(attempt)
			err = fanoutRequest(conn, &f)
			var ae *fanoutAnswerError
			if err == nil || !errors.As(err, &ae) || ae.code != schemas.CodeInternal || attempt == 7 {
				break
			}
			sleepUntil(ctx, time.Now().Add(time.Duration(20+rand.IntN(20<<attempt))*time.Millisecond))
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s %s: %w", f.Cmd, fanoutUser(i), err)
		}
		return conn, nil
	}
}

// fanoutAnswerError is an answer other than ok.
type fanoutAnswerError struct {
	cmd  string
	code schemas.ErrCode
	msg  string
}

func (e *fanoutAnswerError) Error() string {
	return fmt.Sprintf("answered %s %s: %s", e.cmd, e.code, e.msg)
}

// fanoutRequest sends f and reads frames until its answer: nil for ok, an error otherwise.
func fanoutRequest(conn *websocket.Conn, f *schemas.ClientFrame) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, data); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		var a struct {
			Cmd     string `json:"cmd"`
			ID      string `json:"id"`
			ErrCode string `json:"errCode"`
			ErrMsg  string `json:"errMsg"`
		}
		if json.Unmarshal(data, &a) != nil || a.ID != f.ID {
			continue // member and presence frames of the others' joins
		}
		if a.Cmd == schemas.CmdOK {
			return nil
		}
		return &fanoutAnswerError{cmd: a.Cmd, code: schemas.ErrCode(a.ErrCode), msg: a.ErrMsg}
	}
}

// fanoutFleet is the members of one server and the state their goroutines share.
type fanoutFleet struct {
	name    string
	srv     *child
	p       fanoutParams
	chat    bool // chatd: messages are acked and carry a global seq; rawhub: neither
	dial    func(ctx context.Context, i int, create bool) (*websocket.Conn, error)
	members []*fanoutMember
	pubs    []int          // the publishers' member indices
	pubSlot map[string]int // a publisher's user id -> its index in pubs (read-only)
	shards  [fanoutShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
	// chatd: the step in progress (its phase and schedule), to time the acks; and their histogram.
	clock atomic.Pointer[fanoutClock]
	ackMu sync.Mutex
	acks  *hdrhistogram.Histogram

	readers sync.WaitGroup
	closing atomic.Bool

	// Cumulative over the ladder: messages written, stored (chatd: acked) and refused.
	sent, stored, refused atomic.Int64
	// Delivery checks of the readers, and clients whose socket closed under them.
	outOfOrder, duplicates, deaths atomic.Int64

	mu       sync.Mutex
	codes    map[string]int64 // refusals by errCode
	whyDeath string           // the first dropped client's error
}

// fanoutClock is a step's schedule: message j is sent at t0 + j/rate.
type fanoutClock struct {
	phase int
	t0    time.Time
	rate  float64
}

func (c *fanoutClock) at(j int) time.Time {
	return c.t0.Add(time.Duration(float64(j) / c.rate * float64(time.Second)))
}

// fanoutMember is one client.
type fanoutMember struct {
	i    int
	conn *websocket.Conn // replaced only between steps, when revived
	// got counts message frames received; a member (re)connected starts at what it is owed then.
	got  atomic.Int64
	dead atomic.Bool
	// rawSeq: a rawhub publisher's last seq written (its publishing goroutine only).
	rawSeq uint64
}

func newFanoutFleet(name string, srv *child, p fanoutParams, dial func(context.Context, int, bool) (*websocket.Conn, error), chat bool) *fanoutFleet {
	f := &fanoutFleet{name: name, srv: srv, p: p, chat: chat, dial: dial, pubSlot: map[string]int{}, codes: map[string]int64{}}
	for i := range fanoutMembers {
		f.members = append(f.members, &fanoutMember{i: i})
	}
	for k := range fanoutPublishers {
		i := k * fanoutMembers / fanoutPublishers
		f.pubSlot[fanoutUser(i)] = len(f.pubs)
		f.pubs = append(f.pubs, i)
	}
	for k := range f.shards {
		f.shards[k].h = newHist()
	}
	f.acks = newHist()
	return f
}

// owedNow is what every connected member must have received once everything is delivered.
func (f *fanoutFleet) owedNow() int64 { return f.stored.Load() }

// connect connects every member (member 0 first: on chatd it creates the group).
func (f *fanoutFleet) connect(ctx context.Context) error {
	if err := f.attach(ctx, 0, true); err != nil {
		return err
	}
	if err := parallel(fanoutMembers-1, 8, func(i int) error { return f.attach(ctx, i+1, false) }); err != nil {
		return err
	}
	if !f.chat {
		// rawhub registers a client just after answering its upgrade: let the last ones in.
		sleepUntil(ctx, time.Now().Add(300*time.Millisecond))
	}
	return nil
}

// attach dials member i and starts its reader.
func (f *fanoutFleet) attach(ctx context.Context, i int, create bool) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := f.dial(dctx, i, create)
	if err != nil {
		return err
	}
	m := f.members[i]
	m.conn = conn
	m.got.Store(f.owedNow())
	m.dead.Store(false)
	f.readers.Add(1)
	go f.read(m, conn)
	return nil
}

// revive reconnects the members dropped so far (between steps, with nothing in flight).
func (f *fanoutFleet) revive(ctx context.Context) error {
	n := 0
	for _, m := range f.members {
		if m.dead.Load() {
			m.conn.Close()
			if err := f.attach(ctx, m.i, false); err != nil {
				return fmt.Errorf("reconnect %s: %w", fanoutUser(m.i), err)
			}
			n++
		}
	}
	if n > 0 && !f.chat {
		sleepUntil(ctx, time.Now().Add(300*time.Millisecond))
	}
	return nil
}

// close closes every socket and waits (a bounded time) for the readers.
func (f *fanoutFleet) close() {
	f.closing.Store(true)
	for _, m := range f.members {
		if m.conn != nil {
			m.conn.Close()
		}
	}
	done := make(chan struct{})
	go func() { f.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		logf("fanout %s: readers still running after close", f.name)
	}
}

// Frames are recognized by their start: the gateway writes its frames' fields in their struct's
// order, cmd first, and the rawhub publishers write a message frame the same way.
var (
	fanoutMessagePrefix = []byte(`{"cmd":"message"`)
	fanoutAckPrefix     = []byte(`{"cmd":"ack"`)
	fanoutErrorPrefix   = []byte(`{"cmd":"error"`)
	fanoutSeqKey        = []byte(`"seq":`)
	fanoutFromKey       = []byte(`"from":`)
	fanoutMsgKey        = []byte(`"msg":`)
	fanoutIDKey         = []byte(`"id":`)
	fanoutCodeKey       = []byte(`"errCode":`)
)

// read is member m's reader: it counts and checks the message frames, records their latency, and
// on a publisher counts the answers to its messages. Every other frame is ignored.
func (f *fanoutFleet) read(m *fanoutMember, conn *websocket.Conn) {
	defer f.readers.Done()
	shard := &f.shards[m.i%fanoutShards]
	var (
		buf     []byte
		lastSeq uint64                        // chatd: the seq of the last message frame
		lastBy  = make([]uint64, len(f.pubs)) // rawhub: per publisher, its seq of the last message frame
	)
	for {
		data, err := fanoutReadFrame(conn, buf[:0])
		if err != nil {
			if !f.closing.Load() {
				m.dead.Store(true)
				f.deaths.Add(1)
				f.mu.Lock()
				if f.whyDeath == "" {
					f.whyDeath = fmt.Sprintf("%s: %v", fanoutUser(m.i), err)
				}
				f.mu.Unlock()
			}
			return
		}
		buf = data
		now := time.Now()
		switch {
		case bytes.HasPrefix(data, fanoutMessagePrefix):
			seq, from, text, ok := fanoutParseMessage(data)
			if !ok {
				f.outOfOrder.Add(1) // unreadable: counted as a broken delivery
				continue
			}
			last := &lastSeq
			if !f.chat {
				slot, known := f.pubSlot[string(from)]
				if !known {
					f.outOfOrder.Add(1)
					continue
				}
				last = &lastBy[slot]
			}
			switch {
			case seq == *last:
				f.duplicates.Add(1)
			case seq < *last:
				f.outOfOrder.Add(1)
			}
			*last = max(*last, seq)
			if _, sent, ok := parseMsgText(string(text)); ok {
				shard.mu.Lock()
				record(shard.h, now.Sub(time.Unix(0, sent)))
				shard.mu.Unlock()
			}
			m.got.Add(1) // after the record: whoever sees the count sees the sample
		case f.chat && bytes.HasPrefix(data, fanoutAckPrefix):
			if id, ok := fanoutField(data, fanoutIDKey); ok {
				f.timeAck(id, now)
			}
			f.stored.Add(1)
		case f.chat && bytes.HasPrefix(data, fanoutErrorPrefix):
			code, _ := fanoutField(data, fanoutCodeKey)
			f.mu.Lock()
			f.codes[string(code)]++
			f.mu.Unlock()
			if id, _ := fanoutField(data, fanoutIDKey); bytes.HasPrefix(id, []byte("m")) {
				f.refused.Add(1)
			}
		}
	}
}

// timeAck records the send-to-ack time of message id ("m<phase>-<j>") of the step in progress.
func (f *fanoutFleet) timeAck(id []byte, now time.Time) {
	c := f.clock.Load()
	ph, j, ok := bytes.Cut(bytes.TrimPrefix(id, []byte("m")), []byte("-"))
	if c == nil || !ok || string(ph) != strconv.Itoa(c.phase) {
		return
	}
	n, err := strconv.Atoi(string(j))
	if err != nil {
		return
	}
	f.ackMu.Lock()
	record(f.acks, now.Sub(c.at(n)))
	f.ackMu.Unlock()
}

// fanoutReadFrame reads the next frame into buf (grown as needed), to spare a thousand readers
// an allocation per frame.
func fanoutReadFrame(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// fanoutParseMessage reads seq, from and msg of a message frame without decoding all of it (a
// thousand readers on a shared machine: the harness must cost little per delivery). It relies on
// what the harness sends: texts without escapes.
func fanoutParseMessage(data []byte) (seq uint64, from, msg []byte, ok bool) {
	s, ok1 := fanoutField(data, fanoutSeqKey)
	from, ok2 := fanoutField(data, fanoutFromKey)
	msg, ok3 := fanoutField(data, fanoutMsgKey)
	if !ok1 || !ok2 || !ok3 || len(s) == 0 {
		return 0, nil, nil, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, nil, nil, false
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq, from, msg, true
}

// fanoutField returns the value of key (`"name":`) in a compact JSON object: a string's contents
// (which must hold no escape) or a number's digits.
func fanoutField(data, key []byte) ([]byte, bool) {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil, false
	}
	v := data[i+len(key):]
	if len(v) > 0 && v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 || bytes.IndexByte(v[1:1+end], '\\') >= 0 {
			return nil, false
		}
		return v[1 : 1+end], true
	}
	end := bytes.IndexAny(v, ",}")
	if end < 0 {
		return nil, false
	}
	return v[:end], true
}

// frame is publisher slot's j-th message of the step phase, scheduled at sched. On chatd, a
// message command (id and mid "m<phase>-<j>"); on rawhub, the message frame chatd would deliver
// for it, with a seq of the publisher's own, so that both servers move frames of the same size.
func (f *fanoutFleet) frame(m *fanoutMember, phase, j int, sched time.Time) []byte {
	text := msgText(phase, sched)
	mid := "m" + strconv.Itoa(phase) + "-" + strconv.Itoa(j)
	var v any
	if f.chat {
		v = schemas.ClientFrame{Cmd: schemas.CmdMessage, ID: mid, Conv: fanoutConv, Type: "text", Msg: &text, Mid: mid}
	} else {
		m.rawSeq++
		v = schemas.MessageFrame{Cmd: schemas.CmdMessage, Conv: fanoutConv, Seq: m.rawSeq, Mid: mid,
			From: fanoutUser(m.i), Type: "text", Msg: text, Ts: schemas.FormatTime(sched)}
	}
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and numbers always encode
	}
	return data
}

// publish sends n messages of step phase at rate messages/s from t0, message j by publisher j mod
// the publishers, each at its scheduled time however late the previous ones were (open loop).
func (f *fanoutFleet) publish(ctx context.Context, phase int, rate float64, t0 time.Time, n int) {
	var wg sync.WaitGroup
	for slot, i := range f.pubs {
		m := f.members[i]
		wg.Go(func() {
			clock := fanoutClock{phase: phase, t0: t0, rate: rate}
			for j := slot; j < n && ctx.Err() == nil; j += len(f.pubs) {
				sched := clock.at(j)
				sleepUntil(ctx, sched)
				if m.dead.Load() {
					return
				}
				data := f.frame(m, phase, j, sched)
				_ = m.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := m.conn.WriteMessage(websocket.TextMessage, data); err != nil {
					return // its reader sees the socket closed: a dropped client
				}
				f.sent.Add(1)
				if !f.chat {
					f.stored.Add(1) // rawhub stores nothing and answers nothing: what is written is owed
				}
			}
		})
	}
	wg.Wait()
}

// delivered is the message frames received by every member, dropped ones included.
func (f *fanoutFleet) delivered() int64 {
	var n int64
	for _, m := range f.members {
		n += m.got.Load()
	}
	return n
}

// owed is the deliveries still owed to connected members.
func (f *fanoutFleet) owed() int64 {
	want := f.owedNow()
	var n int64
	for _, m := range f.members {
		if !m.dead.Load() {
			n += max(0, want-m.got.Load())
		}
	}
	return n
}

// waitDelivered waits until every message written is answered (chatd) and every connected member
// has every stored message, or max passed; it reports whether it got there.
func (f *fanoutFleet) waitDelivered(ctx context.Context, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		answered := !f.chat || f.stored.Load()+f.refused.Load() >= f.sent.Load()
		if answered && f.owed() == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// takeLatency merges and clears the readers' histograms.
func (f *fanoutFleet) takeLatency() latency {
	all := newHist()
	for k := range f.shards {
		s := &f.shards[k]
		s.mu.Lock()
		all.Merge(s.h)
		s.h.Reset()
		s.mu.Unlock()
	}
	return summarize(all)
}

func (f *fanoutFleet) refusedCodes() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.codes) == 0 {
		return nil
	}
	out := map[string]int64{}
	for k, v := range f.codes {
		out[k] = v
	}
	return out
}

// step runs one rate: publish for its length, drain, measure.
func (f *fanoutFleet) step(ctx context.Context, kind string, k, phase int) *fanoutStep {
	length := f.p.probe
	if kind == "fine" {
		length = f.p.fine
	}
	rate := fanoutRate(k)
	st := &fanoutStep{Kind: kind, Grid: k, OfferedMsgsPerSec: rate, OfferedDeliveries: rate * fanoutMembers,
		Seconds: length.Seconds()}
	n := max(1, int(math.Round(rate*length.Seconds())))
	f.takeLatency() // anything recorded between steps is not this step's
	sent0, stored0, refused0, deaths0, got0 := f.sent.Load(), f.stored.Load(), f.refused.Load(), f.deaths.Load(), f.delivered()
	cpu, harness0, writes0, busy0 := meterCPU(f.srv), cpuTime(), fanoutWriteCalls(f.srv), fanoutBusy()
	var stopProfile func()
	if base := os.Getenv("CHATBENCH_FANOUT_PROFILE"); base != "" && kind == "fine" {
		stopProfile = childProfiler(f.srv, fmt.Sprintf("%s-%s-%.1f.pprof", base, f.name, rate), length)()
	}
	t0 := time.Now().Add(20 * time.Millisecond)
	end := t0.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	f.clock.Store(&fanoutClock{phase: phase, t0: t0, rate: rate})
	var m0 gatewayMetrics
	if f.chat {
		m0, _ = scrapeMetrics(ctx, f.srv.URL)
		f.ackMu.Lock()
		f.acks.Reset()
		f.ackMu.Unlock()
	}
	// What has arrived 100 ms after the last scheduled send: the step's throughput.
	inTime := make(chan int64, 1)
	go func() { sleepUntil(ctx, end.Add(fanoutP99)); inTime <- f.delivered() }()
	f.publish(ctx, phase, rate, t0, n)
	if stopProfile != nil {
		stopProfile()
	}
	st.Drained = f.waitDelivered(ctx, f.p.drain)
	drainEnd := time.Now()
	used, cores := cpu.stop()
	harness := cpuTime() - harness0
	writes := fanoutWriteCalls(f.srv) - writes0
	busy := fanoutBusy() - busy0
	st.DrainMs = max(0, fanoutMs(drainEnd.Sub(end)))
	st.SendToDeliver = f.takeLatency()
	st.Sent, st.Stored, st.Refused = f.sent.Load()-sent0, f.stored.Load()-stored0, f.refused.Load()-refused0
	st.Dropped = f.deaths.Load() - deaths0
	st.Deliveries = f.delivered() - got0
	st.DeliveriesPerSec = float64(<-inTime-got0) / length.Seconds()
	st.ServerCores = cores
	if st.Deliveries > 0 {
		st.ServerCPUPerDelivU = float64(used.Microseconds()) / float64(st.Deliveries)
		st.ServerWritesPerDeliv = float64(writes) / float64(st.Deliveries)
	}
	st.HarnessCores = harness.Seconds() / drainEnd.Sub(t0).Seconds()
	if busy > 0 {
		st.OtherCores = max(0, (busy-used-harness).Seconds()/drainEnd.Sub(t0).Seconds())
	}
	if f.chat {
		f.ackMu.Lock()
		acks := summarize(f.acks)
		f.ackMu.Unlock()
		st.SendToAck = &acks
		if m1, err := scrapeMetrics(ctx, f.srv.URL); err == nil && m0 != nil {
			const lag = "chat_gateway_live_lag_seconds"
			if n := m1[lag+"_count"] - m0[lag+"_count"]; n > 0 {
				st.LiveLagMeanMs = 1000 * (m1[lag+"_sum"] - m0[lag+"_sum"]) / n
			}
		}
	}
	switch {
	case st.Dropped > 0:
		st.Why = fmt.Sprintf("%d clients dropped", st.Dropped)
	case st.Refused > 0 || st.Sent < int64(n):
		st.Why = fmt.Sprintf("%d of %d messages refused or unsent", st.Refused+int64(n)-st.Sent, n)
	case !st.Drained:
		st.Why = fmt.Sprintf("%d deliveries still owed %s after the last send", f.owed(), f.p.drain)
	case st.SendToDeliver.P99 >= fanoutMs(fanoutP99):
		st.Why = fmt.Sprintf("p99 %.0f ms", st.SendToDeliver.P99)
	case st.DeliveriesPerSec < fanoutKeptUp*st.OfferedDeliveries:
		st.Why = fmt.Sprintf("%.0f%% of the offered deliveries in time", 100*st.DeliveriesPerSec/st.OfferedDeliveries)
	default:
		st.Pass = true
	}
	pass := "kept up"
	if !st.Pass {
		pass = "did not keep up: " + st.Why
	}
	chat := ""
	if st.SendToAck != nil {
		chat = fmt.Sprintf(", ack p50 %.1f p99 %.1f ms, live lag %.1f ms", st.SendToAck.P50, st.SendToAck.P99, st.LiveLagMeanMs)
	}
	logf("fanout %s %s %6.1f msgs/s: %7.0f deliveries/s, p50 %.1f p99 %.1f max %.1f ms%s, drain %.0f ms, server %.2f cores %.2f µs/delivery %.2f writes/delivery, harness %.2f cores, others %.2f cores: %s",
		f.name, kind, rate, st.DeliveriesPerSec, st.SendToDeliver.P50, st.SendToDeliver.P99, st.SendToDeliver.Max, chat,
		st.DrainMs, st.ServerCores, st.ServerCPUPerDelivU, st.ServerWritesPerDeliv, st.HarnessCores, st.OtherCores, pass)
	return st
}

func (r *fanoutResult) print(w io.Writer) {
	fmt.Fprintf(w, "  %d members online in one group, %d publishers open loop; a step keeps up with p99 < %.0f ms and >= %.0f%% of the offered deliveries\n",
		r.Members, r.Publishers, r.P99LimitMs, 100*fanoutKeptUp)
	for _, l := range []*fanoutLadder{r.Chat, r.Raw} {
		if l == nil {
			continue
		}
		fmt.Fprintf(w, "\n  %s (setup %.1f s)\n", l.Server, l.SetupSeconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  step\tmsgs/s\tdeliveries/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tdrain ms\tserver cores\tserver µs/deliv\twrites/deliv\tharness cores\tother cores\t\t")
		for _, s := range l.Steps {
			verdict := "ok"
			if !s.Pass {
				verdict = s.Why
			}
			fmt.Fprintf(tw, "  %s\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", s.Kind, s.OfferedMsgsPerSec,
				s.DeliveriesPerSec, s.SendToDeliver.P50, s.SendToDeliver.P99, s.SendToDeliver.P999, s.SendToDeliver.Max,
				s.DrainMs, s.ServerCores, s.ServerCPUPerDelivU, s.ServerWritesPerDeliv, s.HarnessCores, s.OtherCores, verdict)
		}
		tw.Flush()
		best := "none"
		if l.Max != nil {
			best = fmt.Sprintf("%.0f deliveries/s (%.1f msgs/s)", l.Max.DeliveriesPerSec, l.Max.OfferedMsgsPerSec)
			if l.Capped {
				best += ", the grid's end"
			}
		}
		fmt.Fprintf(w, "  max kept up: %s; dropped clients %d, lost %d, out of order %d, repeated %d\n",
			best, l.Dropped, l.Lost, l.OutOfOrder, l.Duplicates)
		if l.DropReason != "" {
			fmt.Fprintf(w, "  first client dropped: %s\n", l.DropReason)
		}
		if len(l.Refused) > 0 {
			fmt.Fprintf(w, "  refused: %v\n", l.Refused)
		}
		if l.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", l.Error)
		}
	}
	verdict := "below"
	if r.ChatOverRaw >= r.Target {
		verdict = "meets"
	}
	fmt.Fprintf(w, "\n  chatd / raw max deliveries/s: %.2f (%s the target %.1f)\n", r.ChatOverRaw, verdict, r.Target)
	if e := r.EqualRate; e != nil {
		fmt.Fprintf(w, "  at %.1f msgs/s, both kept up: server CPU per delivery chatd %.2f µs, raw %.2f µs (%.2f x); writes per delivery %.2f / %.2f; harness %.2f / %.2f cores\n",
			e.OfferedMsgsPerSec, e.ChatCPUPerDelivU, e.RawCPUPerDelivU, e.ChatOverRaw, e.ChatWritesPerDeliv, e.RawWritesPerDeliv,
			e.ChatHarnessCores, e.RawHarnessCores)
	}
}
