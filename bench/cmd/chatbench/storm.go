package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
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

// The storm scenario: thousands of clients reconnect at once, each having missed messages. The
// users are members of public groups of stormGroupSize, all connected; every client notes its
// last seq (of the last event it read) and drops its socket; publishers then store stormMissed
// messages in every group (each acknowledged), so that every client has missed that many; then
// every client reconnects on an open-loop schedule spread evenly over the window (in a shuffled
// order, so groups mix) and syncs from its last seq. Its catch-up time runs from its scheduled
// reconnect to the synced answer, with every missed message received: exactly the seqs the
// publishers were acknowledged, each once, in order. A client that gets an error, loses its
// socket or is not caught up within stormClientBound has failed (the failures are counted by
// their error).
//
// The raw baseline is the same schedule against rawhub: each client dials and waits for the echo
// of one message (a room of its own): the floor of a reconnect, the WebSocket handshake and one
// round trip, under the same arrival rate.
//
// CHATBENCH_STORM_PROFILE=<file> writes a CPU profile of chatd over the storm to <file>.

func init() {
	register(&scenario{name: "storm", order: 50, run: runStorm,
		doc: "reconnect storm: 5k clients reconnect within 5 s, each having missed 50 messages; catch-up time (target p99 ≤ 2 s), against rawhub's dial plus one echo"})
}

const (
	stormGroupSize   = 50
	stormMissed      = 50
	stormPublishers  = 4
	stormPubWindow   = 256              // messages a publisher has in flight
	stormTargetP99   = 2 * time.Second  // the target
	stormClientBound = 30 * time.Second // a client not caught up by then has failed
)

// stormParams size the scenario.
type stormParams struct {
	Clients int           `json:"clients"`
	Groups  int           `json:"groups"`
	Missed  int           `json:"missed"` // messages each client missed
	Window  time.Duration `json:"-"`      // the reconnects are spread over it
}

func stormDefaults(quick bool) stormParams {
	if quick {
		return stormParams{Clients: 1000, Groups: 1000 / stormGroupSize, Missed: stormMissed, Window: 2 * time.Second}
	}
	return stormParams{Clients: 5000, Groups: 5000 / stormGroupSize, Missed: stormMissed, Window: 5 * time.Second}
}

// stormSide is what the storm measured on one server.
type stormSide struct {
	Server string `json:"server"`
	// CaughtUp: clients that got everything they missed and synced (chatd), or their echo (raw).
	CaughtUp int `json:"caughtUp"`
	// Failed: clients that did not (a dial error, a closed socket, an error answer, the bound).
	Failed     int    `json:"failed"`
	FirstError string `json:"firstError,omitempty"`
	// Failures counts the failures by their error, numbers left out.
	Failures map[string]int `json:"failures,omitempty"`
	// CatchUp: from the scheduled reconnect to caught up; Dial: to the socket open.
	CatchUp latency `json:"catchUp"`
	Dial    latency `json:"dial"`
	// Delivery checks (chatd): missed messages that did not come, came twice, came out of order,
	// and message events that were not among those missed.
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"outOfOrder"`
	Unexpected int64 `json:"unexpected"`
	// The server's CPU from the first scheduled reconnect until every client was done.
	Seconds  float64 `json:"seconds"`
	CPUSecs  float64 `json:"cpuSeconds"`
	CPUCores float64 `json:"cpuCores"`

	lost, duplicates, outOfOrder, unexpected atomic.Int64 // counted by the clients
}

// stormResult is the scenario's result.
type stormResult struct {
	Params stormParams `json:"params"`
	Window float64     `json:"windowSeconds"`
	// Setup: connecting and joining every client; Publish: storing the missed messages.
	SetupSeconds   float64    `json:"setupSeconds"`
	PublishSeconds float64    `json:"publishSeconds"`
	Chat           *stormSide `json:"chat,omitempty"`
	Raw            *stormSide `json:"raw,omitempty"`
	TargetP99Ms    float64    `json:"targetP99Ms"`
	MetTarget      bool       `json:"metTarget"`
	Errors         []string   `json:"errors,omitempty"`
}

func (r *stormResult) failed() bool {
	if len(r.Errors) > 0 {
		return true
	}
	for _, s := range []*stormSide{r.Chat, r.Raw} {
		if s != nil && (s.Failed > 0 || s.Lost > 0 || s.Duplicates > 0 || s.OutOfOrder > 0 || s.Unexpected > 0) {
			return true
		}
	}
	return false
}

func (r *stormResult) targets() []target {
	const name = "5. reconnect storm: 5,000 clients within 5 s, 50 missed each"
	goal := fmt.Sprintf("all caught up, p99 ≤ %.0f s", stormTargetP99.Seconds())
	if r.Chat == nil {
		return []target{missing(50, name, goal)}
	}
	c := r.Chat
	measured := fmt.Sprintf("%d/%d caught up, p50 %.0f ms, p99 %.0f ms (raw dial+echo p99 %.0f ms)", c.CaughtUp,
		r.Params.Clients, c.CatchUp.P50, c.CatchUp.P99, r.rawP99())
	if r.Params.Clients != 5000 {
		measured += fmt.Sprintf("; %d clients over %.0f s", r.Params.Clients, r.Window)
	}
	return []target{{Order: 50, Name: name, Goal: goal, Measured: measured, Met: r.MetTarget}}
}

func (r *stormResult) rawP99() float64 {
	if r.Raw == nil {
		return 0
	}
	return r.Raw.CatchUp.P99
}

func stormUser(i int) string      { return "storm" + strconv.Itoa(i) }
func stormPublisher(p int) string { return "stormpub" + strconv.Itoa(p) }
func stormConv(k int) string      { return "g:storm" + strconv.Itoa(k) }

func runStorm(quick bool) (scenarioResult, error) {
	p := stormDefaults(quick)
	res := &stormResult{Params: p, Window: p.Window.Seconds(), TargetP99Ms: float64(stormTargetP99.Milliseconds())}
	if _, err := raiseNoFile(uint64(p.Clients + fdMargin)); err != nil {
		return res, err
	}
	// The same shuffled schedule for both servers: the k-th reconnect is client order[k].
	order := rand.New(rand.NewPCG(7, 11)).Perm(p.Clients)

	logf("storm: chatd, %d clients in %d groups, %d missed each, reconnecting over %s", p.Clients, p.Groups, p.Missed, p.Window)
	chat, err := startChatd(chatdOptions{})
	if err != nil {
		return res, err
	}
	res.Chat, err = stormChat(chat, p, order, res)
	chat.stop()
	if err != nil {
		res.Errors = append(res.Errors, "chatd: "+err.Error())
	}

	logf("storm: rawhub, %d dials with one echo each over %s", p.Clients, p.Window)
	raw, err := startRawhub()
	if err != nil {
		return res, err
	}
	res.Raw, err = stormRaw(raw, p, order)
	raw.stop()
	if err != nil {
		res.Errors = append(res.Errors, "rawhub: "+err.Error())
	}
	if c := res.Chat; c != nil {
		res.MetTarget = c.CaughtUp == p.Clients && c.CatchUp.P99 <= float64(stormTargetP99.Milliseconds())
	}
	return res, nil
}

// stormFrame is what the clients read of a server frame.
type stormFrame struct {
	Cmd     string `json:"cmd"`
	ID      string `json:"id"`
	Conv    string `json:"conv"`
	Seq     uint64 `json:"seq"`
	User    string `json:"user"`
	Action  string `json:"action"`
	ErrCode string `json:"errCode"`
	ErrMsg  string `json:"errMsg"`
}

// stormConn is a connection of the setup: a reader goroutine answers pings, hands the answers
// (frames with an id) to whoever waits for them and notes the seqs of the events.
type stormConn struct {
	conn    *websocket.Conn
	answers chan stormFrame
	done    chan struct{}
	wmu     sync.Mutex
	user    string
	maxSeq  atomic.Uint64 // the highest seq of the events read
	joinSeq atomic.Uint64 // the seq of its user's joined event
	err     error         // why the reader stopped, set before done is closed
}

func newStormConn(conn *websocket.Conn, user string) *stormConn {
	c := &stormConn{conn: conn, user: user, answers: make(chan stormFrame, 1024), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			var f stormFrame
			if json.Unmarshal(data, &f) != nil {
				continue
			}
			if f.ID == "" {
				if f.Seq > c.maxSeq.Load() {
					c.maxSeq.Store(f.Seq) // only this goroutine writes it
				}
				if f.Cmd == schemas.CmdMember && f.User == c.user && f.Action == "joined" {
					c.joinSeq.Store(f.Seq)
				}
				continue
			}
			select {
			case c.answers <- f:
			default: // nobody reads them: never expected with the windows used here
			}
		}
	}()
	return c
}

func (c *stormConn) send(f *schemas.ClientFrame) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

// answer waits for the next answer.
func (c *stormConn) answer(ctx context.Context) (stormFrame, error) {
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case f := <-c.answers:
		return f, nil
	case <-c.done:
		return stormFrame{}, fmt.Errorf("socket closed: %w", c.err)
	case <-t.C:
		return stormFrame{}, errors.New("no answer in 15 s")
	case <-ctx.Done():
		return stormFrame{}, ctx.Err()
	}
}

// request sends f and waits for its answer: ok, or an error. Joins of one group at
// once may answer internal (contention on the group's state): tried again a few times.
func (c *stormConn) request(ctx context.Context, f *schemas.ClientFrame) (stormFrame, error) {
	id := f.ID
	for attempt := 0; ; attempt++ {
		f.ID = id + "." + strconv.Itoa(attempt)
		if err := c.send(f); err != nil {
			return stormFrame{}, err
		}
		var a stormFrame
		var err error
		for a.ID != f.ID && err == nil {
			a, err = c.answer(ctx)
		}
		if err != nil {
			return a, err
		}
		if a.Cmd != schemas.CmdError {
			return a, nil
		}
		if a.ErrCode != string(schemas.CodeInternal) || attempt == 7 {
			return a, fmt.Errorf("%s answered %s: %s", f.Cmd, a.ErrCode, a.ErrMsg)
		}
		sleepUntil(ctx, time.Now().Add(time.Duration(20+rand.IntN(20<<attempt))*time.Millisecond))
	}
}

func (c *stormConn) close() {
	_ = c.conn.Close()
	<-c.done
}

// stormChat runs the storm against chatd: setup, disconnect, publish, reconnect.
func stormChat(srv *child, p stormParams, order []int, res *stormResult) (*stormSide, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m, err := newMinter()
	if err != nil {
		return nil, err
	}
	tokens := make([]string, p.Clients)
	for i := range tokens {
		if tokens[i], err = m.token(stormUser(i)); err != nil {
			return nil, err
		}
	}

	// Setup: the publishers create the groups (publisher k mod stormPublishers creates group k),
	// then every client joins its group (group i / stormGroupSize).
	t0 := time.Now()
	pubs := make([]*stormConn, stormPublishers)
	defer func() {
		for _, pc := range pubs {
			if pc != nil {
				pc.close()
			}
		}
	}()
	for k := range pubs {
		tok, err := m.token(stormPublisher(k))
		if err != nil {
			return nil, err
		}
		conn, err := dialChat(ctx, srv.URL, tok, k)
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", k, err)
		}
		pubs[k] = newStormConn(conn, stormPublisher(k))
	}
	err = parallel(p.Groups, 16, func(k int) error {
		f := schemas.ClientFrame{Cmd: schemas.CmdCreate, ID: "c" + strconv.Itoa(k), Conv: stormConv(k), Public: true, Members: []string{}}
		_, err := pubs[k%stormPublishers].request(ctx, &f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create the groups: %w", err)
	}
	clients := make([]*stormConn, p.Clients)
	closeClients := func() {
		for i, c := range clients {
			if c != nil {
				c.close()
				clients[i] = nil
			}
		}
	}
	defer closeClients()
	// The members of one group join one after the other (concurrent joins of a group contend),
	// the groups side by side.
	err = parallel(p.Groups, 64, func(k int) error {
		for i := k * stormGroupSize; i < (k+1)*stormGroupSize && i < p.Clients; i++ {
			conn, err := dialChat(ctx, srv.URL, tokens[i], i)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			clients[i] = newStormConn(conn, stormUser(i))
			f := schemas.ClientFrame{Cmd: schemas.CmdJoin, ID: "j", Conv: stormConv(k)}
			if _, err := clients[i].request(ctx, &f); err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	// Each client's last seq is the last event it read. A group's last event is its last
	// member's joined (the joins of a group go one after the other): once every member has read
	// that one, each has seen all of its group's events. (A sync per client would tell the same,
	// at the cost of a consumer each on the server; the storm is what measures syncs.)
	lastSeq := make([]uint64, p.Clients)
	if err := stormSettle(ctx, clients, p); err != nil {
		return nil, err
	}
	for i, c := range clients {
		lastSeq[i] = c.maxSeq.Load()
	}
	res.SetupSeconds = time.Since(t0).Seconds()
	logf("storm: chatd set up in %.1f s: %d clients joined", res.SetupSeconds, p.Clients)

	// Every client drops its socket, then the publishers store the messages they miss.
	closeClients()
	t0 = time.Now()
	expected, err := stormPublish(ctx, pubs, p)
	if err != nil {
		return nil, err
	}
	res.PublishSeconds = time.Since(t0).Seconds()
	logf("storm: chatd stored %d messages in %.1f s", p.Groups*p.Missed, res.PublishSeconds)
	for k, pc := range pubs {
		pc.close()
		pubs[k] = nil
	}

	// The storm.
	var stopProfile func()
	if path := os.Getenv("CHATBENCH_STORM_PROFILE"); path != "" {
		window := p.Window + 3*time.Second
		stopProfile = childProfiler(srv, path, window)()
	}
	side := &stormSide{Server: srv.name}
	run := newStormRun(p, order)
	meter := meterCPU(srv)
	run.each(ctx, func(ctx context.Context, i int, sched time.Time) (time.Duration, time.Duration, error) {
		k := i / stormGroupSize
		return stormCatchUp(ctx, srv, tokens[i], i, lastSeq[i], stormConv(k), expected[k], sched, side)
	})
	used, cores := meter.stop()
	if stopProfile != nil {
		stopProfile()
	}
	run.summarize(side, used, cores)
	logf("storm: chatd %d/%d caught up: p50 %.0f ms, p99 %.0f ms, max %.0f ms; lost %d, duplicates %d, out of order %d, unexpected %d; %.2f cores",
		side.CaughtUp, p.Clients, side.CatchUp.P50, side.CatchUp.P99, side.CatchUp.Max, side.Lost, side.Duplicates,
		side.OutOfOrder, side.Unexpected, side.CPUCores)
	return side, nil
}

// stormSettle waits until every client has read its group's last event, the joined of the
// group's last member.
func stormSettle(ctx context.Context, clients []*stormConn, p stormParams) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		behind := 0
		for k := range p.Groups {
			last := clients[min((k+1)*stormGroupSize, p.Clients)-1].joinSeq.Load()
			for i := k * stormGroupSize; i < (k+1)*stormGroupSize && i < p.Clients; i++ {
				if last == 0 || clients[i].maxSeq.Load() != last {
					behind++
				}
			}
		}
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("setup: %d clients have not read their group's last event after 30 s", behind)
		}
		sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
	}
}

// stormPublish stores p.Missed messages in every group, stormPubWindow in flight per publisher,
// and returns every group's acknowledged seqs, in order.
func stormPublish(ctx context.Context, pubs []*stormConn, p stormParams) ([][]uint64, error) {
	expected := make([][]uint64, p.Groups)
	var mu sync.Mutex
	err := parallel(len(pubs), len(pubs), func(pi int) error {
		pc := pubs[pi]
		var groups []int
		for k := pi; k < p.Groups; k += len(pubs) {
			groups = append(groups, k)
		}
		total := len(groups) * p.Missed
		acked := make(chan error, 1)
		// The acks come on the reader's answers; a slot of the window is freed by each.
		window := make(chan struct{}, stormPubWindow)
		go func() {
			for n := 0; n < total; n++ {
				a, err := pc.answer(ctx)
				if err == nil && a.Cmd != schemas.CmdAck {
					err = fmt.Errorf("message %s answered %s %s: %s", a.ID, a.Cmd, a.ErrCode, a.ErrMsg)
				}
				if err != nil {
					acked <- err
					return
				}
				k, err := strconv.Atoi(strings.TrimPrefix(a.Conv, "g:storm"))
				if err != nil || k < 0 || k >= p.Groups {
					acked <- fmt.Errorf("ack for %q", a.Conv)
					return
				}
				mu.Lock()
				expected[k] = append(expected[k], a.Seq)
				mu.Unlock()
				<-window
			}
			acked <- nil
		}()
		text := "missed while away"
		for j := range p.Missed {
			for _, k := range groups {
				select {
				case window <- struct{}{}:
				case err := <-acked:
					return err
				}
				id := "m" + strconv.Itoa(k) + "-" + strconv.Itoa(j)
				f := schemas.ClientFrame{Cmd: schemas.CmdMessage, ID: id, Conv: stormConv(k), Type: "text", Msg: &text, Mid: id}
				if err := pc.send(&f); err != nil {
					return err
				}
			}
		}
		return <-acked
	})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	for k := range expected {
		if len(expected[k]) != p.Missed {
			return nil, fmt.Errorf("publish: group %d has %d acknowledged messages, not %d", k, len(expected[k]), p.Missed)
		}
		slices.Sort(expected[k]) // acks of one group may come out of order (a retried batch)
	}
	return expected, nil
}

// stormCatchUp is one chatd client's reconnect: dial at sched, sync from last, read until synced.
// It returns the dial and catch-up times; the delivery checks go into side.
func stormCatchUp(ctx context.Context, srv *child, token string, i int, last uint64, conv string, want []uint64,
	sched time.Time, side *stormSide) (dial, caught time.Duration, err error) {
	conn, dial, err := stormDial(ctx, sched, func(ctx context.Context) (*websocket.Conn, error) {
		return dialChat(ctx, srv.URL, token, i)
	})
	if err != nil {
		return dial, 0, err
	}
	bound := time.AfterFunc(time.Until(sched.Add(stormClientBound)), func() { _ = conn.Close() })
	defer bound.Stop()
	data, _ := json.Marshal(schemas.ClientFrame{Cmd: schemas.CmdSync, ID: "r" + strconv.Itoa(i), After: &last})
	if err := conn.WriteMessage(websocket.TextMessage, data); err != nil {
		conn.Close()
		return dial, 0, err
	}
	// The missed seqs, checked as they come: want is sorted, so in order means want[got] next.
	got := 0
	var prev uint64
	seen := make(map[uint64]bool, len(want))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			return dial, 0, fmt.Errorf("read: %w", err)
		}
		var f stormFrame
		if err := json.Unmarshal(data, &f); err != nil {
			continue
		}
		switch f.Cmd {
		case schemas.CmdMessage:
			switch {
			case seen[f.Seq]:
				side.duplicates.Add(1)
				continue
			case f.Conv != conv || !containsSeq(want, f.Seq):
				side.unexpected.Add(1)
				continue
			case f.Seq < prev:
				side.outOfOrder.Add(1)
			}
			seen[f.Seq], prev = true, f.Seq
			got++
		case schemas.CmdSynced:
			caught = time.Since(sched)
			// Keep the socket open until the whole storm is done, as a client would.
			go stormHold(conn)
			if lost := len(want) - got; lost > 0 {
				side.lost.Add(int64(lost))
				return dial, 0, fmt.Errorf("synced after %d of %d missed messages", got, len(want))
			}
			return dial, caught, nil
		case schemas.CmdError:
			conn.Close()
			return dial, 0, fmt.Errorf("sync answered %s: %s", f.ErrCode, f.ErrMsg)
		}
		// Anything else (presence pushes of the group's members coming back) is not counted.
	}
}

// stormDial opens a client's socket at its scheduled time, within the client's bound; the socket
// closes when ctx (the storm) ends.
func stormDial(ctx context.Context, sched time.Time, dial func(context.Context) (*websocket.Conn, error)) (*websocket.Conn, time.Duration, error) {
	dctx, cancel := context.WithDeadline(ctx, sched.Add(stormClientBound))
	defer cancel()
	conn, err := dial(dctx)
	if err != nil {
		return nil, 0, err
	}
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, time.Since(sched), nil
}

// stormHold keeps a caught-up client's socket open, reading so that pings are answered, until
// the storm's end closes it.
func stormHold(conn *websocket.Conn) {
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

func containsSeq(sorted []uint64, seq uint64) bool {
	lo, hi := 0, len(sorted)
	for lo < hi {
		mid := (lo + hi) / 2
		if sorted[mid] < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo < len(sorted) && sorted[lo] == seq
}

// stormRaw runs the same schedule against rawhub: dial, one message, its echo.
func stormRaw(srv *child, p stormParams, order []int) (*stormSide, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	side := &stormSide{Server: srv.name}
	run := newStormRun(p, order)
	meter := meterCPU(srv)
	run.each(ctx, func(ctx context.Context, i int, sched time.Time) (time.Duration, time.Duration, error) {
		conn, dial, err := stormDial(ctx, sched, func(ctx context.Context) (*websocket.Conn, error) {
			return dialHub(ctx, srv.URL, "s"+strconv.Itoa(i), i)
		})
		if err != nil {
			return dial, 0, err
		}
		bound := time.AfterFunc(time.Until(sched.Add(stormClientBound)), func() { _ = conn.Close() })
		defer bound.Stop()
		msg := []byte(`{"echo":` + strconv.Itoa(i) + `}`)
		if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			conn.Close()
			return dial, 0, err
		}
		if _, _, err := conn.ReadMessage(); err != nil {
			conn.Close()
			return dial, 0, err
		}
		caught := time.Since(sched)
		go stormHold(conn)
		return dial, caught, nil
	})
	used, cores := meter.stop()
	run.summarize(side, used, cores)
	logf("storm: rawhub %d/%d echoed: p50 %.0f ms, p99 %.0f ms, max %.0f ms; %.2f cores",
		side.CaughtUp, p.Clients, side.CatchUp.P50, side.CatchUp.P99, side.CatchUp.Max, side.CPUCores)
	return side, nil
}

// stormRun is one open-loop storm: client order[k] reconnects at t0 + k x window / clients.
type stormRun struct {
	p       stormParams
	order   []int
	t0      time.Time
	mu      sync.Mutex
	catchUp []*hdrhistogram.Histogram
	dial    []*hdrhistogram.Histogram
	caught  int
	failed  int
	first   string
	reasons map[string]int
	end     time.Time
}

func newStormRun(p stormParams, order []int) *stormRun {
	return &stormRun{p: p, order: order, reasons: map[string]int{}}
}

// digits are left out of failure reasons, so that they add up.
var digits = regexp.MustCompile(`[0-9]+`)

// each runs f for every client at its scheduled time, every client on its own goroutine (open
// loop: a slow answer delays nobody else's reconnect), and waits for all. The sockets stay open
// until all are done; they close when each's context ends.
func (r *stormRun) each(ctx context.Context, f func(ctx context.Context, i int, sched time.Time) (dial, caught time.Duration, err error)) {
	held, release := context.WithCancel(ctx)
	defer release()
	r.t0 = time.Now().Add(200 * time.Millisecond)
	var wg sync.WaitGroup
	const shards = 16
	r.catchUp, r.dial = make([]*hdrhistogram.Histogram, shards), make([]*hdrhistogram.Histogram, shards)
	var hmu [shards]sync.Mutex
	for s := range shards {
		r.catchUp[s], r.dial[s] = newHist(), newHist()
	}
	for k, i := range r.order {
		sched := r.t0.Add(time.Duration(int64(r.p.Window) * int64(k) / int64(len(r.order))))
		wg.Go(func() {
			sleepUntil(ctx, sched)
			dial, caught, err := f(held, i, sched)
			s := k % shards
			hmu[s].Lock()
			if dial > 0 {
				record(r.dial[s], dial)
			}
			if err == nil {
				record(r.catchUp[s], caught)
			}
			hmu[s].Unlock()
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				r.failed++
				r.reasons[digits.ReplaceAllString(err.Error(), "N")]++
				if r.first == "" {
					r.first = fmt.Sprintf("client %d: %v", i, err)
				}
				return
			}
			r.caught++
			if now := time.Now(); now.After(r.end) {
				r.end = now
			}
		})
	}
	wg.Wait()
}

// summarize writes the run's figures into side.
func (r *stormRun) summarize(side *stormSide, used time.Duration, cores float64) {
	side.CaughtUp, side.Failed, side.FirstError = r.caught, r.failed, r.first
	if len(r.reasons) > 0 {
		side.Failures = r.reasons
	}
	side.CatchUp, side.Dial = summarize(merge(r.catchUp)), summarize(merge(r.dial))
	side.Lost, side.Duplicates = side.lost.Load(), side.duplicates.Load()
	side.OutOfOrder, side.Unexpected = side.outOfOrder.Load(), side.unexpected.Load()
	if !r.end.IsZero() {
		side.Seconds = r.end.Sub(r.t0).Seconds()
	}
	side.CPUSecs, side.CPUCores = used.Seconds(), cores
}

func (r *stormResult) print(w io.Writer) {
	fmt.Fprintf(w, "  %d clients in %d groups of %d, %d messages missed each, reconnecting over %.0f s (open loop, shuffled); setup %.1f s, publish %.1f s\n",
		r.Params.Clients, r.Params.Groups, stormGroupSize, r.Params.Missed, r.Window, r.SetupSeconds, r.PublishSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tcaught up\tfailed\tcatch-up p50 ms\tp99\tp99.9\tmax\tdial p50 ms\tp99\tlost\tdup\tunexpected\tCPU cores\tdone after s\t")
	for _, s := range []*stormSide{r.Chat, r.Raw} {
		if s == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t%d\t%d\t%.2f\t%.1f\t\n", s.Server, s.CaughtUp, s.Failed,
			s.CatchUp.P50, s.CatchUp.P99, s.CatchUp.P999, s.CatchUp.Max, s.Dial.P50, s.Dial.P99, s.Lost, s.Duplicates,
			s.Unexpected, s.CPUCores, s.Seconds)
	}
	tw.Flush()
	for _, s := range []*stormSide{r.Chat, r.Raw} {
		if s == nil || s.FirstError == "" {
			continue
		}
		fmt.Fprintf(w, "  %s first failure: %s\n", s.Server, s.FirstError)
		reasons := slices.Sorted(maps.Keys(s.Failures))
		for _, why := range reasons {
			fmt.Fprintf(w, "    %6d  %s\n", s.Failures[why], why)
		}
	}
	verdict := "missed"
	if r.MetTarget {
		verdict = "met"
	}
	fmt.Fprintf(w, "  raw is the floor: dial plus one echo. Target: all caught up with p99 ≤ %.0f ms: %s\n", r.TargetP99Ms, verdict)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}
