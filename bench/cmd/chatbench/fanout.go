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
	"strconv"
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
// the last probe that passed, with longer steps, up to the first that fails.

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
		return fanoutParams{probe: time.Second, fine: 2 * time.Second, drain: 2 * time.Second, settle: 5 * time.Second,
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
	HarnessCores       float64 `json:"harnessCores"`           // this process (clients) over the same time
	Dropped            int64   `json:"dropped,omitempty"`      // clients whose socket closed during the step
	Pass               bool    `json:"pass"`
	Why                string  `json:"why,omitempty"` // why it did not keep up
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

// step returns the step at grid point k, the longer one if both kinds ran there.
func (l *fanoutLadder) step(k int) *fanoutStep {
	var found *fanoutStep
	for _, s := range l.Steps {
		if s.Grid == k && (found == nil || s.Kind == "fine") {
			found = s
		}
	}
	return found
}

// fanoutEqual compares the servers' CPU per delivery at the highest rate both kept up with.
type fanoutEqual struct {
	OfferedMsgsPerSec float64 `json:"offeredMsgsPerSec"`
	ChatCPUPerDelivU  float64 `json:"chatCpuPerDeliveryUs"`
	RawCPUPerDelivU   float64 `json:"rawCpuPerDeliveryUs"`
	ChatOverRaw       float64 `json:"chatOverRaw"`
	ChatHarnessCores  float64 `json:"chatHarnessCores"`
	RawHarnessCores   float64 `json:"rawHarnessCores"`
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
	res.Chat, err = fanoutRun(ctx, p, "chatd", func() (*child, error) { return startChatd(chatdOptions{Fsync: false}) },
		func(srv *child) func(context.Context, int, bool) (*websocket.Conn, error) {
			return chatJoiner(srv, mint)
		})
	errs = append(errs, err)
	res.Raw, err = fanoutRun(ctx, p, "rawhub", startRawhub,
		func(srv *child) func(context.Context, int, bool) (*websocket.Conn, error) {
			return func(ctx context.Context, i int, _ bool) (*websocket.Conn, error) {
				return dialHub(ctx, srv.URL, fanoutGroup, i)
			}
		})
	errs = append(errs, err)
	if res.Chat.Max != nil && res.Raw.Max != nil {
		res.ChatOverRaw = ratio(res.Chat.Max.DeliveriesPerSec, res.Raw.Max.DeliveriesPerSec)
		k := min(res.Chat.Max.Grid, res.Raw.Max.Grid)
		if c, r := res.Chat.step(k), res.Raw.step(k); c != nil && r != nil {
			res.EqualRate = &fanoutEqual{OfferedMsgsPerSec: c.OfferedMsgsPerSec, ChatCPUPerDelivU: c.ServerCPUPerDelivU,
				RawCPUPerDelivU: r.ServerCPUPerDelivU, ChatOverRaw: ratio(c.ServerCPUPerDelivU, r.ServerCPUPerDelivU),
				ChatHarnessCores: c.HarnessCores, RawHarnessCores: r.HarnessCores}
		}
	}
	return res, errors.Join(errs...)
}

// fanoutRun starts one server, connects the members and climbs its ladder, then closes everything.
func fanoutRun(ctx context.Context, p fanoutParams, name string, start func() (*child, error),
	dialer func(*child) func(context.Context, int, bool) (*websocket.Conn, error)) (*fanoutLadder, error) {
	l := &fanoutLadder{Server: name}
	srv, err := start()
	if err != nil {
		l.Error = err.Error()
		return l, fmt.Errorf("%s: %w", name, err)
	}
	defer srv.stop()
	f := newFanoutFleet(name, srv, p, dialer(srv), name == "chatd")
	defer f.close()
	t0 := time.Now()
	if err := f.connect(ctx); err != nil {
		l.Error = err.Error()
		return l, fmt.Errorf("%s: connect: %w", name, err)
	}
	// The joins fan out member and presence frames to everyone: wait for them to go through.
	fanoutQuiet(ctx, srv, 45*time.Second)
	l.SetupSeconds = time.Since(t0).Seconds()
	logf("fanout %s: %d members connected and in the group in %.1fs", name, fanoutMembers, l.SetupSeconds)
	err = f.ladder(ctx, l)
	if err != nil {
		l.Error = err.Error()
	}
	// Whatever is still owed to a connected member is lost.
	f.waitDelivered(ctx, p.settle)
	l.Lost = f.owed()
	l.Dropped, l.OutOfOrder, l.Duplicates = f.deaths.Load(), f.outOfOrder.Load(), f.duplicates.Load()
	l.Refused = f.refusedCodes()
	f.mu.Lock()
	l.DropReason = f.whyDeath
	f.mu.Unlock()
	if err != nil {
		return l, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
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
	return f
}

// owedNow is what every connected member must have received once everything is delivered.
func (f *fanoutFleet) owedNow() int64 { return f.stored.Load() }

// connect connects every member (member 0 first: on chatd it creates the group).
func (f *fanoutFleet) connect(ctx context.Context) error {
	if err := f.attach(ctx, 0, true); err != nil {
		return err
	}
	if err := parallel(fanoutMembers-1, 32, func(i int) error { return f.attach(ctx, i+1, false) }); err != nil {
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
			for j := slot; j < n && ctx.Err() == nil; j += len(f.pubs) {
				sched := t0.Add(time.Duration(float64(j) / rate * float64(time.Second)))
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
	cpu, harness0 := meterCPU(f.srv), cpuTime()
	t0 := time.Now().Add(20 * time.Millisecond)
	end := t0.Add(time.Duration(float64(n) / rate * float64(time.Second)))
	// What has arrived 100 ms after the last scheduled send: the step's throughput.
	inTime := make(chan int64, 1)
	go func() { sleepUntil(ctx, end.Add(fanoutP99)); inTime <- f.delivered() }()
	f.publish(ctx, phase, rate, t0, n)
	st.Drained = f.waitDelivered(ctx, f.p.drain)
	drainEnd := time.Now()
	used, cores := cpu.stop()
	harness := cpuTime() - harness0
	st.DrainMs = max(0, fanoutMs(drainEnd.Sub(end)))
	st.SendToDeliver = f.takeLatency()
	st.Sent, st.Stored, st.Refused = f.sent.Load()-sent0, f.stored.Load()-stored0, f.refused.Load()-refused0
	st.Dropped = f.deaths.Load() - deaths0
	st.Deliveries = f.delivered() - got0
	st.DeliveriesPerSec = float64(<-inTime-got0) / length.Seconds()
	st.ServerCores = cores
	if st.Deliveries > 0 {
		st.ServerCPUPerDelivU = float64(used.Microseconds()) / float64(st.Deliveries)
	}
	st.HarnessCores = harness.Seconds() / drainEnd.Sub(t0).Seconds()
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
	logf("fanout %s %s %6.1f msgs/s: %7.0f deliveries/s, p50 %.1f p99 %.1f max %.1f ms, drain %.0f ms, server %.2f cores %.2f µs/delivery, harness %.2f cores: %s",
		f.name, kind, rate, st.DeliveriesPerSec, st.SendToDeliver.P50, st.SendToDeliver.P99, st.SendToDeliver.Max,
		st.DrainMs, st.ServerCores, st.ServerCPUPerDelivU, st.HarnessCores, pass)
	return st
}

// ladder probes the grid, then climbs it point by point from the last probe that kept up.
func (f *fanoutFleet) ladder(ctx context.Context, l *fanoutLadder) error {
	phase := 0
	run := func(kind string, k int) (bool, error) {
		// A failed step may leave a backlog, and dropped clients: clear both first.
		if !f.waitDelivered(ctx, f.p.settle) {
			return false, fmt.Errorf("a backlog of %d deliveries did not clear within %s", f.owed(), f.p.settle)
		}
		if err := f.revive(ctx); err != nil {
			return false, err
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("scenario deadline: %w", ctx.Err())
		}
		phase++
		st := f.step(ctx, kind, k, phase)
		l.Steps = append(l.Steps, st)
		if st.Pass && (l.Max == nil || k > l.Max.Grid || (k == l.Max.Grid && kind == "fine")) {
			l.Max = st
		}
		return st.Pass, nil
	}
	lastPass, firstFail := -1, -1
	for k := 0; k <= fanoutMaxGrid; k += fanoutProbeEvery {
		ok, err := run("probe", k)
		if err != nil {
			return err
		}
		if !ok {
			firstFail = k
			break
		}
		lastPass = k
	}
	if firstFail < 0 {
		l.Capped = true
		return nil
	}
	if lastPass < 0 {
		return nil // not even the lowest rate
	}
	for k := lastPass + 1; k <= fanoutMaxGrid; k++ {
		ok, err := run("fine", k)
		if err != nil || !ok {
			return err
		}
	}
	return nil
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
		fmt.Fprintln(tw, "  step\tmsgs/s\tdeliveries/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tdrain ms\tserver cores\tserver µs/deliv\tharness cores\t\t")
		for _, s := range l.Steps {
			verdict := "ok"
			if !s.Pass {
				verdict = s.Why
			}
			fmt.Fprintf(tw, "  %s\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t\n", s.Kind, s.OfferedMsgsPerSec,
				s.DeliveriesPerSec, s.SendToDeliver.P50, s.SendToDeliver.P99, s.SendToDeliver.P999, s.SendToDeliver.Max,
				s.DrainMs, s.ServerCores, s.ServerCPUPerDelivU, s.HarnessCores, verdict)
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
		fmt.Fprintf(w, "  at %.1f msgs/s, both kept up: server CPU per delivery chatd %.2f µs, raw %.2f µs (%.2f x); harness %.2f / %.2f cores\n",
			e.OfferedMsgsPerSec, e.ChatCPUPerDelivU, e.RawCPUPerDelivU, e.ChatOverRaw, e.ChatHarnessCores, e.RawHarnessCores)
	}
}
