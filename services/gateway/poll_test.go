package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
)

// pollAns is a decoded poll answer (or error body).
type pollAns struct {
	status  int
	took    time.Duration
	Cursor  uint64     `json:"cursor"`
	Frames  []gt.Frame `json:"frames"`
	ErrCode string     `json:"errCode"`
	ErrMsg  string     `json:"errMsg"`
}

var pollClient = &http.Client{Timeout: 2 * time.Minute}

// pollRaw posts body (any JSON value, or raw bytes) to /v1/poll?wait=wait.
func pollRaw(t *testing.T, base, token string, wait int, body any, hdr http.Header) pollAns {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	case nil:
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	u := base + "/v1/poll"
	if wait >= 0 {
		u += fmt.Sprintf("?wait=%d", wait)
	}
	req, err := http.NewRequest("POST", u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := pollClient.Do(req)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("poll: read: %v", err)
	}
	a := pollAns{status: resp.StatusCode, took: time.Since(start)}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("poll answer %d %q: %v", resp.StatusCode, raw, err)
	}
	if a.status == http.StatusOK {
		if a.Frames == nil || !strings.Contains(string(raw), `"cursor":`) {
			t.Fatalf("poll answer without cursor or frames: %s", raw)
		}
		for _, f := range a.Frames {
			if (f.Cmd() == "message" || f.Cmd() == "member") && f.Seq() > a.Cursor {
				t.Fatalf("frame %v has seq above the cursor %d", f, a.Cursor)
			}
		}
	}
	return a
}

// poll polls with a cursor (nil: none) and frames; it must answer 200.
func poll(t *testing.T, base, token string, wait int, cursor *uint64, frames ...map[string]any) pollAns {
	t.Helper()
	body := map[string]any{}
	if cursor != nil {
		body["cursor"] = *cursor
	}
	if len(frames) > 0 {
		body["frames"] = frames
	}
	a := pollRaw(t, base, token, wait, body, nil)
	if a.status != http.StatusOK {
		t.Fatalf("poll: %d %s %s", a.status, a.ErrCode, a.ErrMsg)
	}
	return a
}

func ptr[T any](v T) *T { return &v }

// evs are the event frames (message, member) of an answer.
func (a pollAns) evs() []gt.Frame {
	var out []gt.Frame
	for _, f := range a.Frames {
		if f.Cmd() == "message" || f.Cmd() == "member" {
			out = append(out, f)
		}
	}
	return out
}

// reply is the frame answering id, or nil.
func (a pollAns) reply(id string) gt.Frame {
	for _, f := range a.Frames {
		if f.Str("id") == id && f.Cmd() != "message" && f.Cmd() != "member" {
			return f
		}
	}
	return nil
}

func texts(fs []gt.Frame) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Str("msg"))
	}
	return strings.Join(out, ",")
}

// pollUntil polls from cursor until the events collected satisfy done or the deadline passes;
// it returns the events and the last cursor.
func pollUntil(t *testing.T, base, token string, cursor uint64, done func([]gt.Frame) bool) ([]gt.Frame, uint64) {
	t.Helper()
	var got []gt.Frame
	deadline := time.Now().Add(wait)
	for !done(got) {
		if time.Now().After(deadline) {
			t.Fatalf("polling from %d: got %s", cursor, texts(got))
		}
		a := poll(t, base, token, 2, &cursor)
		got = append(got, a.evs()...)
		cursor = a.Cursor
	}
	return got, cursor
}

func TestPollFirstWithoutCursorAnswersHeadAtOnce(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	s1 := ben.msg(to("ann"), "old", "m1").Seq()
	a := poll(t, e.gws[0].URL, ann.token, 30, nil)
	if a.took > 5*time.Second {
		t.Fatalf("first poll took %v", a.took)
	}
	if a.Cursor < s1 || len(a.Frames) != 0 {
		t.Fatalf("first poll: cursor %d (old message at %d), frames %v", a.Cursor, s1, a.Frames)
	}
	// Polling on from there: only what comes after.
	s2 := ben.msg(to("ann"), "new", "m2").Seq()
	got, _ := pollUntil(t, e.gws[0].URL, ann.token, a.Cursor, func(fs []gt.Frame) bool { return len(fs) >= 1 })
	if texts(got) != "new" || got[0].Seq() != s2 {
		t.Fatalf("after the first poll: %v", got)
	}
}

func TestPollCursorResumeRedeliversTheSameEvents(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	start := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	var seqs []uint64
	for i := 1; i <= 3; i++ {
		seqs = append(seqs, ben.msg(to("ann"), fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i)).Seq())
	}
	// Events are pending: the poll answers at once, whatever its wait.
	a := poll(t, e.gws[0].URL, ann.token, 30, &start)
	if a.took > 5*time.Second {
		t.Fatalf("a poll with events pending took %v", a.took)
	}
	if texts(a.evs()) != "m1,m2,m3" || a.Cursor < seqs[2] {
		t.Fatalf("answer %v cursor %d, want m1..m3 up to %d", a.Frames, a.Cursor, seqs[2])
	}
	for i, f := range a.evs() {
		if f.Seq() != seqs[i] || f.Str("from") != "ben" || f.Str("conv") != dm("ann", "ben") {
			t.Fatalf("event %d: %v", i, f)
		}
	}
	// The same older cursor: the same events again, and the same cursor.
	again := poll(t, e.gws[0].URL, ann.token, 30, &start)
	if fmt.Sprint(again.Frames) != fmt.Sprint(a.Frames) || again.Cursor != a.Cursor {
		t.Fatalf("again: %v %d, first %v %d", again.Frames, again.Cursor, a.Frames, a.Cursor)
	}
	// From the middle: the rest.
	mid := seqs[0]
	if r := poll(t, e.gws[0].URL, ann.token, 30, &mid); texts(r.evs()) != "m2,m3" {
		t.Fatalf("from %d: %v", mid, r.Frames)
	}
	// From the new cursor with wait=0: nothing, the same cursor.
	if r := poll(t, e.gws[0].URL, ann.token, 0, &a.Cursor); len(r.Frames) != 0 || r.Cursor != a.Cursor {
		t.Fatalf("caught up: %v cursor %d, want none at %d", r.Frames, r.Cursor, a.Cursor)
	}
}

func TestPollWaitsAndAnswersWhenAMessageArrives(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	cur := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	// Nothing to deliver: a short wait elapses, answered empty with the same cursor.
	empty := poll(t, e.gws[0].URL, ann.token, 1, &cur)
	if len(empty.Frames) != 0 || empty.Cursor != cur || empty.took < 900*time.Millisecond {
		t.Fatalf("empty poll: %v cursor %d after %v", empty.Frames, empty.Cursor, empty.took)
	}
	done := make(chan pollAns, 1)
	go func() { done <- poll(t, e.gws[0].URL, ann.token, 40, &cur) }()
	time.Sleep(500 * time.Millisecond) // the poll is (most likely) waiting
	s := ben.msg(to("ann"), "hello", "m1").Seq()
	select {
	case a := <-done:
		if texts(a.evs()) != "hello" || a.evs()[0].Seq() != s || a.Cursor < s {
			t.Fatalf("woken poll: %v cursor %d", a.Frames, a.Cursor)
		}
		if a.took > 30*time.Second {
			t.Fatalf("woken poll took %v", a.took)
		}
	case <-time.After(35 * time.Second):
		t.Fatal("the waiting poll was not answered")
	}
}

func TestPollRepliesComeInTheSameAnswer(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	_ = ben
	cur := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	a := poll(t, e.gws[0].URL, ann.token, 30, &cur,
		map[string]any{"cmd": "ping", "id": "p1"},
		map[string]any{"cmd": "message", "id": "s1", "to": "ben", "type": "text", "msg": "hi ben", "mid": "pm1"},
		map[string]any{"cmd": "sync", "id": "y1", "after": 0},
		map[string]any{"cmd": "login", "id": "l1", "token": ann.token},
		map[string]any{"cmd": "message", "id": "s2", "conv": "g:nope", "type": "text", "msg": "x", "mid": "pm2"},
		map[string]any{"cmd": "bogus", "id": "b1"},
		map[string]any{"cmd": "history", "id": "h1", "conv": dm("ann", "ben")},
	)
	if a.took > 10*time.Second {
		t.Fatalf("took %v", a.took)
	}
	if f := a.reply("p1"); f == nil || f.Cmd() != "pong" {
		t.Fatalf("ping: %v", a.Frames)
	}
	ack := a.reply("s1")
	if ack == nil || ack.Cmd() != "ack" || ack.Str("mid") != "pm1" {
		t.Fatalf("message: %v", a.Frames)
	}
	// The message itself comes too (the answer reads the log after the acks), within the cursor.
	if ev := a.evs(); len(ev) != 1 || ev[0].Seq() != ack.Seq() || ev[0].Str("msg") != "hi ben" || a.Cursor < ack.Seq() {
		t.Fatalf("events %v cursor %d, ack %v", ev, a.Cursor, ack)
	}
	for id, code := range map[string]string{"y1": "bad_request", "l1": "bad_request", "s2": "forbidden", "b1": "bad_request"} {
		if f := a.reply(id); f == nil || f.Cmd() != "error" || f.Str("errCode") != code {
			t.Fatalf("%s: want error %s, got %v", id, code, f)
		}
	}
	if h := a.reply("h1"); h == nil || h.Cmd() != "history" {
		t.Fatalf("history: %v", h)
	}
	for name, labels := range map[string]map[string]string{
		"chat_gateway_polls_total":        {"result": "frames"},
		"chat_gateway_poll_frames_total":  nil,
		"chat_gateway_poll_clients":       nil,
		"chat_gateway_connections_total":  {"transport": "longpoll"},
		"chat_gateway_poll_seconds_count": nil,
		"chat_gateway_frames_in_total":    {"cmd": "ping"},
	} {
		if v := metricValue(t, e.gws[0], name, labels); v < 1 {
			t.Errorf("metric %s%v = %v", name, labels, v)
		}
	}
	// A frame that is not a JSON object: bad_request in the answer.
	b := pollRaw(t, e.gws[0].URL, ann.token, 0, []byte(`{"cursor":`+fmt.Sprint(a.Cursor)+`,"frames":[5,{"id":"x"}]}`), nil)
	if b.status != 200 || len(b.Frames) != 2 || b.Frames[0].Str("errCode") != "bad_request" || b.reply("x").Str("errCode") != "bad_request" {
		t.Fatalf("bad frames: %d %v", b.status, b.Frames)
	}
}

// A client switches between WebSocket and long-poll mid-conversation, each time resuming from
// where the other left off: every message exactly once, in order.
func TestPollSwitchTransportLosesAndRepeatsNothing(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	ann.c.Close()
	base := e.gws[0].URL
	n := 0
	send := func(k int) {
		for i := 0; i < k; i++ {
			n++
			ben.msg(to("ann"), fmt.Sprintf("m%d", n), fmt.Sprintf("m%d", n))
		}
	}
	var got []gt.Frame
	send(2)
	// Long-poll from the beginning.
	a := poll(t, base, ann.token, 30, ptr(uint64(0)))
	got = append(got, a.evs()...)
	cursor := a.Cursor
	send(3)
	// WebSocket: sync after the poll cursor.
	c := e.dial(ann.token, 0)
	if err := c.Send(map[string]any{"cmd": "sync", "id": "y", "after": cursor}); err != nil {
		t.Fatal(err)
	}
	synced, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "synced" })
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, upTo(t, c, hasText("m5"))...)
	// Live on the socket.
	send(2)
	got = append(got, upTo(t, c, hasText("m7"))...)
	last := got[len(got)-1].Seq()
	if synced.Seq() < cursor {
		t.Fatalf("synced %d below the cursor %d", synced.Seq(), cursor)
	}
	c.Close()
	send(2)
	// Back to long-poll from the last seq seen on the socket.
	more, _ := pollUntil(t, base, ann.token, last, func(fs []gt.Frame) bool { return len(fs) >= 2 })
	got = append(got, more...)
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("m%d", i))
	}
	if texts(got) != strings.Join(want, ",") {
		t.Fatalf("got %s, want %s", texts(got), strings.Join(want, ","))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq() <= got[i-1].Seq() {
			t.Fatalf("out of order: %v", got)
		}
	}
}

func TestPollAcrossTwoGateways(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	// The first poll on gateway 0, the next on gateway 1: the cursor is everything.
	cur := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	done := make(chan pollAns, 1)
	go func() { done <- poll(t, e.gws[1].URL, ann.token, 40, &cur) }()
	time.Sleep(300 * time.Millisecond)
	s := ben.msg(to("ann"), "across", "m1").Seq() // sent on gateway 0
	var a pollAns
	select {
	case a = <-done:
	case <-time.After(35 * time.Second):
		t.Fatal("the poll on gateway 1 was not answered")
	}
	if texts(a.evs()) != "across" || a.Cursor < s {
		t.Fatalf("gateway 1: %v cursor %d", a.Frames, a.Cursor)
	}
	// The same cursor on gateway 0 delivers the same.
	if b := poll(t, e.gws[0].URL, ann.token, 0, &cur); fmt.Sprint(b.evs()) != fmt.Sprint(a.evs()) {
		t.Fatalf("gateway 0: %v, gateway 1: %v", b.evs(), a.evs())
	}
	// A reply over poll on gateway 1 reaches a WebSocket on gateway 0.
	r := poll(t, e.gws[1].URL, ann.token, 0, &a.Cursor,
		map[string]any{"cmd": "message", "id": "s", "to": "ben", "type": "text", "msg": "back", "mid": "pm1"})
	if f := r.reply("s"); f == nil || f.Cmd() != "ack" {
		t.Fatalf("ack: %v", r.Frames)
	}
	event(t, ben.c, func(f gt.Frame) bool { return f.Str("msg") == "back" })
}

func TestPollAnswerIsBounded(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.PollMaxEvents = 3 })
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	cur := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	var seqs []uint64
	for i := 1; i <= 5; i++ {
		seqs = append(seqs, ben.msg(to("ann"), fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i)).Seq())
	}
	a := poll(t, e.gws[0].URL, ann.token, 30, &cur)
	if texts(a.evs()) != "m1,m2,m3" || a.Cursor != seqs[2] {
		t.Fatalf("first page %v cursor %d, want m1..m3 and %d", a.Frames, a.Cursor, seqs[2])
	}
	b := poll(t, e.gws[0].URL, ann.token, 30, &a.Cursor)
	if texts(b.evs()) != "m4,m5" || b.took > 5*time.Second {
		t.Fatalf("second page %v after %v", b.Frames, b.took)
	}
	// A poll far behind that sends a message: its ack comes in the answer, so the answer holds
	// every event up to the ack's seq, past the bound (no frame's seq above the cursor).
	for i := 6; i <= 10; i++ {
		ben.msg(to("ann"), fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i))
	}
	c := poll(t, e.gws[0].URL, ann.token, 30, &b.Cursor,
		map[string]any{"cmd": "message", "to": "ben", "type": "text", "msg": "m11", "mid": "a11", "id": "x"})
	ack := c.reply("x")
	if ack == nil || ack.Cmd() != "ack" || c.Cursor < ack.Seq() || texts(c.evs()) != "m6,m7,m8,m9,m10,m11" {
		t.Fatalf("answer with an ack past the bound: %v cursor %d", c.Frames, c.Cursor)
	}
	for _, f := range c.Frames {
		if f.Seq() > c.Cursor {
			t.Fatalf("frame %v above the cursor %d", f, c.Cursor)
		}
	}
}

// Pushes (typing, presence) that arrive during a poll answer it.
func TestPollDeliversPushes(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	ben.msg(to("ann"), "hi", "m1")
	cur := poll(t, e.gws[0].URL, ann.token, 0, nil).Cursor
	done := make(chan pollAns, 1)
	go func() { done <- poll(t, e.gws[0].URL, ann.token, 40, &cur) }()
	time.Sleep(300 * time.Millisecond)
	// Typing notices are rate-limited per session, not lost: keep typing until the poll answers.
	var a pollAns
	for a.status == 0 {
		if err := ben.c.Send(map[string]any{"cmd": "typing", "conv": dm("ann", "ben")}); err != nil {
			t.Fatal(err)
		}
		select {
		case a = <-done:
		case <-time.After(time.Second):
		}
	}
	if len(a.Frames) == 0 || a.Frames[0].Cmd() != "typing" || a.Frames[0].Str("user") != "ben" || a.Cursor < cur {
		t.Fatalf("typing: %v cursor %d", a.Frames, a.Cursor)
	}
	nc := e.natsConn()
	go func() { done <- poll(t, e.gws[0].URL, ann.token, 40, &cur) }()
	time.Sleep(300 * time.Millisecond)
	a = pollAns{}
	for a.status == 0 {
		data, _ := json.Marshal(schemas.PresenceChanged{Type: schemas.TypePresenceChanged, User: "ben", Status: schemas.StatusOnline, LastSeen: "2026-11-22T07:13:36.123Z"})
		if err := nc.Publish(schemas.PresenceChangedSubject("ben"), data); err != nil {
			t.Fatal(err)
		}
		select {
		case a = <-done:
		case <-time.After(time.Second):
		}
	}
	if len(a.Frames) == 0 || a.Frames[0].Cmd() != "presence" || a.Frames[0].Str("user") != "ben" {
		t.Fatalf("presence: %v", a.Frames)
	}
}

// A long-poll client counts as a connection for presence while it keeps polling: connect on the
// first poll, heartbeats meanwhile, disconnect once no poll came for PollDisconnectAfter.
func TestPollPresence(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) {
		c.PollDisconnectAfter = time.Second
		c.PresenceHeartbeat = 200 * time.Millisecond
	})
	tok, err := gt.Account(e.gws[0].URL, "ann")
	if err != nil {
		t.Fatal(err)
	}
	nc := e.natsConn()
	var mu sync.Mutex
	var reports []schemas.ConnEvent
	sub, err := nc.Subscribe(schemas.PresenceConnSubject("ann"), func(m *nats.Msg) {
		var ev schemas.ConnEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			mu.Lock()
			reports = append(reports, ev)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	snapshot := func() []schemas.ConnEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]schemas.ConnEvent(nil), reports...)
	}
	count := func(evs []schemas.ConnEvent, state string) int {
		n := 0
		for _, ev := range evs {
			if ev.State == state {
				n++
			}
		}
		return n
	}
	hdr := http.Header{"X-Chat-Client-Id": {"tab-1"}}
	pollAs := func(wait int, hdr http.Header, cursor uint64) pollAns {
		a := pollRaw(t, e.gws[0].URL, tok, wait, map[string]any{"cursor": cursor}, hdr)
		if a.status != 200 {
			t.Fatalf("poll %d %s", a.status, a.ErrMsg)
		}
		return a
	}
	// Keep polling for 2.5 s (more than PollDisconnectAfter): one connection, heartbeats, no disconnect.
	end := time.Now().Add(2500 * time.Millisecond)
	cur := uint64(0)
	for time.Now().Before(end) {
		cur = pollAs(1, hdr, cur).Cursor
	}
	evs := snapshot()
	if count(evs, schemas.ConnConnect) != 1 || count(evs, schemas.ConnDisconnect) != 0 || count(evs, schemas.ConnHeartbeat) == 0 {
		t.Fatalf("while polling: %+v", evs)
	}
	conn := evs[0].Conn
	for _, ev := range evs {
		if ev.Conn != conn || ev.User != "ann" {
			t.Fatalf("one client, several connections: %+v", evs)
		}
	}
	// Another tab (another client id) is another connection.
	pollAs(0, http.Header{"X-Chat-Client-Id": {"tab-2"}}, cur)
	// Stop polling: both disconnect after PollDisconnectAfter.
	deadline := time.Now().Add(wait)
	for count(snapshot(), schemas.ConnDisconnect) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no disconnects: %+v", snapshot())
		}
		time.Sleep(50 * time.Millisecond)
	}
	evs = snapshot()
	if count(evs, schemas.ConnConnect) != 2 {
		t.Fatalf("connects: %+v", evs)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.State == schemas.ConnDisconnect {
			seen[ev.Conn] = true
		}
	}
	if !seen[conn] || len(seen) != 2 {
		t.Fatalf("disconnects: %+v", evs)
	}
	// activity over poll reports idle on the client's connection.
	a := pollRaw(t, e.gws[0].URL, tok, 0, map[string]any{"cursor": cur,
		"frames": []map[string]any{{"cmd": "activity", "id": "a", "idle": true}}}, hdr)
	if f := a.reply("a"); f == nil || f.Cmd() != "ok" {
		t.Fatalf("activity: %v", a.Frames)
	}
	deadline = time.Now().Add(wait)
	for {
		evs = snapshot()
		idle := false
		for _, ev := range evs {
			idle = idle || ev.State == schemas.ConnIdle && ev.Idle
		}
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no idle report: %+v", evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPollRefusals(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) {
		c.RateLimit, c.RateBurst, c.RateStrikes = 1, 3, 4
	})
	base := e.gws[0].URL
	tok, err := gt.Account(base, "ann")
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, a pollAns, status int, code string) {
		t.Helper()
		if a.status != status || a.ErrCode != code {
			t.Fatalf("%s: %d %s %s, want %d %s", name, a.status, a.ErrCode, a.ErrMsg, status, code)
		}
	}
	check("no token", pollRaw(t, base, "", 0, map[string]any{}, nil), 401, "unauthorized")
	check("bad token", pollRaw(t, base, "nope", 0, map[string]any{}, nil), 401, "unauthorized")
	check("malformed", pollRaw(t, base, tok, 0, []byte(`{"cursor":`), nil), 400, "bad_request")
	check("negative cursor", pollRaw(t, base, tok, 0, []byte(`{"cursor":-1}`), nil), 400, "bad_request")
	check("string cursor", pollRaw(t, base, tok, 0, []byte(`{"cursor":"5"}`), nil), 400, "bad_request")
	check("frames not a list", pollRaw(t, base, tok, 0, []byte(`{"frames":{}}`), nil), 400, "bad_request")
	big := []byte(`{"frames":[{"cmd":"ping","pad":"` + strings.Repeat("x", 70<<10) + `"}]}`)
	check("too large", pollRaw(t, base, tok, 0, big, nil), 413, "too_large")
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{"cmd": "ping"}
	}
	check("too many frames", pollRaw(t, base, tok, 0, map[string]any{"frames": many}, nil), 400, "bad_request")
	req, _ := http.NewRequest("POST", base+"/v1/poll?wait=soon", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("wait=soon: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// An empty body is a first poll.
	if a := pollRaw(t, base, tok, 0, nil, nil); a.status != 200 || len(a.Frames) != 0 {
		t.Fatalf("empty body: %d %v", a.status, a.Frames)
	}
	// Rate limits hold across polls of one client: burst 3, then rate_limited; 4 strikes in a row
	// refuse the poll (429), as they close a WebSocket.
	pings := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"cmd": "ping", "id": fmt.Sprintf("p%d", i)}
		}
		return out
	}
	hdr := http.Header{"X-Chat-Client-Id": {"c1"}}
	a := pollRaw(t, base, tok, 0, map[string]any{"cursor": 0, "frames": pings(5)}, hdr)
	if a.status != 200 || a.reply("p2").Cmd() != "pong" || a.reply("p3").Str("errCode") != "rate_limited" {
		t.Fatalf("rate limit: %d %v", a.status, a.Frames)
	}
	check("flooding", pollRaw(t, base, tok, 0, map[string]any{"cursor": 0, "frames": pings(12)}, hdr), 429, "rate_limited")
	// Another client of the same user has its own limits.
	if a := pollRaw(t, base, tok, 0, map[string]any{"cursor": 0, "frames": pings(1)},
		http.Header{"X-Chat-Client-Id": {"c2"}}); a.status != 200 || a.reply("p0").Cmd() != "pong" {
		t.Fatalf("other client: %d %v", a.status, a.Frames)
	}
}

// Polls read across the archive boundary as sync does: a cursor below the stream's first seq gets
// the older events from the archive, in order, each once, in bounded answers; without an archive
// such a poll is unavailable.
func TestPollAcrossTheArchiveBoundary(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.PollMaxEvents = 4 })
	base := e.gws[0].URL
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	var seqs []uint64
	for i := 1; i <= 10; i++ {
		seqs = append(seqs, ben.msg(to("ann"), fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i)).Seq())
	}
	d := startArchive(t, e)
	d.capture(e)
	purgeBelow(t, eventsStream(t, e), seqs[5])
	all := func(fs []gt.Frame) bool { return len(fs) >= 10 }
	got, _ := pollUntil(t, base, ann.token, 0, all)
	if texts(got) != "m1,m2,m3,m4,m5,m6,m7,m8,m9,m10" {
		t.Fatalf("from 0: %s", texts(got))
	}
	got, _ = pollUntil(t, base, ann.token, seqs[1], func(fs []gt.Frame) bool { return len(fs) >= 8 })
	if texts(got) != "m3,m4,m5,m6,m7,m8,m9,m10" {
		t.Fatalf("from m2: %s", texts(got))
	}
	if len(d.asked()) == 0 {
		t.Fatal("the archive was not asked")
	}
	// No archive: a cursor below the window is unavailable; from within it, fine.
	d.nc.Close()
	if a := pollRaw(t, base, ann.token, 0, map[string]any{"cursor": seqs[1]}, nil); a.status != 503 || a.ErrCode != "unavailable" {
		t.Fatalf("below the window without an archive: %d %s %s", a.status, a.ErrCode, a.ErrMsg)
	}
	if a := poll(t, base, ann.token, 0, &seqs[6]); texts(a.evs()) != "m8,m9,m10" {
		t.Fatalf("within the window: %v", a.Frames)
	}
}
