package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/gorilla/websocket"
)

// paddedPing is a ping frame of exactly n bytes.
func paddedPing(id string, n int) []byte {
	head := `{"cmd":"ping","id":"` + id + `","pad":"`
	tail := `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func TestFrameSizeLimit(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice := e.user("alice", 0)
	// 64 KiB exactly is a frame like any other.
	if err := alice.c.Send(paddedPing("exact", 64*1024)); err != nil {
		t.Fatal(err)
	}
	if r, err := alice.c.Reply("exact", wait); err != nil || r.Cmd() != "pong" {
		t.Fatalf("64 KiB frame: %v %v", r, err)
	}
	// One byte more closes the socket with 1009.
	_ = alice.c.Send(paddedPing("over", 64*1024+1))
	mustClose(t, alice.c, 1009)
	// Much more, likewise.
	c := e.dial(alice.token, 0)
	_ = c.Send(paddedPing("huge", 1<<20))
	mustClose(t, c, 1009)
	// Also as the first frame of an unauthenticated socket.
	c = dialAnon(t, e.gws[0])
	_ = c.Send(`{"cmd":"login","token":"` + strings.Repeat("t", 64*1024) + `"}`)
	mustClose(t, c, 1009)
	// The user is not locked out.
	pingOK(t, e.dial(alice.token, 0), "after")
}

func TestFrameIDLimit(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.user("alice", 0).c
	for _, id := range []string{strings.Repeat("i", 64), strings.Repeat("é", 64), "a b/c:d\"e", "x"} {
		pingOK(t, c, id)
	}
	for _, id := range []string{strings.Repeat("i", 65), strings.Repeat("é", 65), strings.Repeat("i", 1000)} {
		if err := c.Send(map[string]any{"cmd": "ping", "id": id}); err != nil {
			t.Fatal(err)
		}
		f := errorFrame(t, c, "bad_request")
		if len([]rune(f.Str("id"))) > 64 {
			t.Fatalf("error echoes an id of %d characters", len([]rune(f.Str("id"))))
		}
		pingOK(t, c, "after")
	}
}

func TestMalformedFramesAreAnsweredAndTheSocketKeepsWorking(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	c := alice.c
	for i, tc := range []struct {
		frame any
		id    string // the id the error must echo
	}{
		{"not json", ""},
		{`{"cmd":"ping"`, ""},
		{`[1,2,3]`, ""},
		{`"ping"`, ""},
		{`{"id":"x1"}`, "x1"},                                    // no cmd
		{`{"cmd":5,"id":"x2"}`, ""},                              // cmd of the wrong type
		{`{"cmd":"message","id":"x3","msg":5}`, "x3"},            // a field of the wrong type
		{`{"cmd":"history","id":"x4","limit":"ten"}`, "x4"},      // likewise
		{map[string]any{"cmd": "no-such-cmd", "id": "x5"}, "x5"}, // unknown cmd
		{map[string]any{"cmd": "", "id": "x6"}, "x6"},
	} {
		if err := c.Send(tc.frame); err != nil {
			t.Fatal(err)
		}
		f := errorFrame(t, c, "bad_request")
		if tc.id != "" && f.Str("id") != tc.id {
			t.Errorf("frame %d %v: error %v, want id %q", i, tc.frame, f, tc.id)
		}
		pingOK(t, c, fmt.Sprint("p", i))
	}
	// A binary frame.
	if err := c.Conn.WriteMessage(websocket.BinaryMessage, []byte(`{"cmd":"ping","id":"bin"}`)); err != nil {
		t.Fatal(err)
	}
	errorFrame(t, c, "bad_request")
	pingOK(t, c, "after-binary")
	// And the session still chats.
	alice.msg(to("bob"), "still here", "m1")
	event(t, bob.c, hasText("still here"))
}

func TestRepeatedBadFramesClose1008(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	mallory := e.user("mallory", 0)
	const n = 11 // the burst tolerated is 10
	for i := 0; i < n; i++ {
		if err := mallory.c.Send(fmt.Sprintf(`{"cmd":"ping","id":"b%d"`, i)); err != nil {
			break
		}
	}
	mustClose(t, mallory.c, 1008)
	// The errors queued before the close went out first.
	errs := 0
	for {
		f, err := mallory.c.Next(time.Second)
		if err != nil {
			break
		}
		if f.Cmd() == "error" && f.Str("errCode") == "bad_request" {
			errs++
		}
	}
	if errs < 10 {
		t.Errorf("%d bad_request answers before the close, want at least 10", errs)
	}
	// Others carry on; mallory may come back.
	alice.msg(to("bob"), "unaffected", "m1")
	event(t, bob.c, hasText("unaffected"))
	pingOK(t, e.dial(mallory.token, 0), "back")
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.RateLimit, c.RateBurst, c.RateStrikes = 2, 5, 4 })
	alice, bob := e.user("alice", 0), e.user("bob", 0)

	// Over the burst, frames get rate_limited with their id; the session stays open.
	const n = 8
	for i := 0; i < n; i++ {
		if err := alice.c.Send(map[string]any{"cmd": "ping", "id": fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
	limited := 0
	for i := 0; i < n; i++ {
		r, err := alice.c.Reply(fmt.Sprint("r", i), wait)
		if err != nil {
			t.Fatalf("frame r%d: %v", i, err)
		}
		switch {
		case r.Cmd() == "pong":
		case r.Cmd() == "error" && r.Str("errCode") == "rate_limited" && i >= 5:
			limited++
		default:
			t.Fatalf("frame r%d answered %v", i, r)
		}
	}
	if limited == 0 {
		t.Fatalf("%d frames at once with a burst of 5: none rate limited", n)
	}
	// The bucket refills at 2 frames a second.
	time.Sleep(time.Second)
	pingOK(t, alice.c, "refilled")

	// A session that keeps going is closed with 1008.
	mallory := e.user("mallory", 0)
	for i := 0; i < 40; i++ {
		if err := mallory.c.Send(map[string]any{"cmd": "ping", "id": fmt.Sprint("f", i)}); err != nil {
			break
		}
	}
	mustClose(t, mallory.c, 1008)
	sawLimited := false
	for {
		f, err := mallory.c.Next(time.Second)
		if err != nil {
			break
		}
		if f.Cmd() == "error" && f.Str("errCode") == "rate_limited" && strings.HasPrefix(f.Str("id"), "f") {
			sawLimited = true
		}
	}
	if !sawLimited {
		t.Error("flooding session closed without a rate_limited answer first")
	}
	// Others on the gateway are not affected.
	alice.msg(to("bob"), "after the flood", "m1")
	event(t, bob.c, hasText("after the flood"))
	pingOK(t, e.dial(mallory.token, 0), "back")
}

func TestMisbehavingClientDoesNotDisturbOthers(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	malTok, err := gt.Account(gw.URL, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			c, _, err := gt.Dial(gw.URL, gt.DialOpts{Token: malTok})
			if err != nil {
				t.Errorf("mallory round %d: %v", round, err)
				return
			}
			switch round % 3 {
			case 0: // bad frames until closed
				for i := 0; i < 20; i++ {
					if c.Send("{{{") != nil {
						break
					}
				}
			case 1: // a frame too big
				_ = c.Send(paddedPing("big", 100*1024))
			case 2: // binary garbage and unknown commands
				for i := 0; i < 20; i++ {
					_ = c.Conn.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2})
					_ = c.Send(map[string]any{"cmd": "nope"})
				}
			}
			select {
			case <-c.Closed:
			case <-time.After(wait):
				t.Errorf("mallory round %d: socket not closed", round)
			}
			c.Close()
		}
	}()
	for i := 0; i < 30; i++ {
		alice.msg(to("bob"), fmt.Sprint("hello ", i), fmt.Sprint("m", i))
	}
	got := events(t, bob.c, 30)
	for i, f := range got {
		if f.Str("msg") != fmt.Sprint("hello ", i) {
			t.Fatalf("bob's event %d: %v", i, f)
		}
	}
	bob.msg(to("alice"), "reply", "r1")
	event(t, alice.c, hasText("reply"))
	close(stop)
	wg.Wait()
}

// dialStalled opens an authenticated WebSocket that is never read until the test says so: a plain
// gorilla connection without the reader goroutine of gatewaytest.Client.
func dialStalled(t *testing.T, gw *gt.Gateway, tok string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait}
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(gw.URL, "http")+"/v1/ws", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestSlowReaderIsClosed1013(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.SendQueue = 16 })
	gw := e.gws[0]
	ann, cat := e.user("ann", 0), e.user("cat", 0)
	sidTok, err := gt.Account(gw.URL, "sid")
	if err != nil {
		t.Fatal(err)
	}
	sid := dialStalled(t, gw, sidTok)
	// The stalled socket is a live session (the connection gauge counts it) before traffic starts.
	waitMetric(t, gw, "chat_gateway_connections", nil, func(v float64) bool { return v == 3 })
	ann.ok(map[string]any{"cmd": "create", "conv": "g:flood", "members": []string{"sid", "cat"}})
	events(t, ann.c, 3)
	events(t, cat.c, 3)

	big := strings.Repeat("x", 12*1024)
	slowCloses := func() float64 {
		return metricValue(t, gw, "chat_gateway_session_closes_total", map[string]string{"code": "1013"})
	}
	const window = 4 // messages in flight: ann's and cat's queues stay far below 16
	sent := 0
	deadline := time.Now().Add(2 * time.Minute)
	for slowCloses() == 0 {
		if sent >= 4000 || time.Now().After(deadline) {
			t.Fatalf("the stalled reader is still open after %d messages of 12 KiB", sent)
		}
		for range 4 { // four windows between metric scrapes
			first := sent
			for i := 0; i < window; i++ {
				if err := ann.c.Send(map[string]any{"cmd": "message", "conv": "g:flood", "type": "text",
					"msg": fmt.Sprint(sent, " ", big), "mid": fmt.Sprint("f", sent), "id": fmt.Sprint("s", sent)}); err != nil {
					t.Fatal(err)
				}
				sent++
			}
			for k := first; k < sent; k++ {
				if r, err := ann.c.Reply(fmt.Sprint("s", k), wait); err != nil || r.Cmd() != "ack" {
					t.Fatalf("message %d: %v %v", k, r, err)
				}
			}
			for k, f := range events(t, cat.c, window) {
				if f.Str("mid") != fmt.Sprint("f", first+k) {
					t.Fatalf("cat got %v, want mid f%d", f.Str("mid"), first+k)
				}
			}
			ann.c.Drop() // ann's own copies
		}
	}
	t.Logf("stalled reader closed after %d messages", sent)

	// Sender and the third member are still served, both ways.
	for i := 0; i < 5; i++ {
		ann.msg(conv("g:flood"), fmt.Sprint("after ", i), fmt.Sprint("a", i))
	}
	for i, f := range events(t, cat.c, 5) {
		if f.Str("msg") != fmt.Sprint("after ", i) {
			t.Fatalf("cat after the close: %v", f)
		}
	}
	ann.c.Drop()
	cat.msg(conv("g:flood"), "cat speaks", "c1")
	event(t, ann.c, hasText("cat speaks"))
	pingOK(t, ann.c, "ann-ok")
	pingOK(t, cat.c, "cat-ok")

	// The stalled reader, reading at last, finds an in-order prefix of the conversation and then
	// the close 1013.
	_ = sid.SetReadDeadline(time.Now().Add(2 * wait))
	var last uint64
	next := 0
	var cerr error
	for {
		_, data, err := sid.ReadMessage()
		if err != nil {
			cerr = err
			break
		}
		var f struct {
			Cmd, Mid string
			Seq      uint64
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("undecodable frame %q", data)
		}
		if f.Cmd != "message" && f.Cmd != "member" {
			continue
		}
		if f.Seq <= last {
			t.Fatalf("stalled reader: seq %d after %d", f.Seq, last)
		}
		last = f.Seq
		if f.Cmd == "message" {
			if f.Mid != fmt.Sprint("f", next) {
				t.Fatalf("stalled reader: mid %s, want f%d (a gap)", f.Mid, next)
			}
			next++
		}
	}
	if !isClose(cerr, 1013) {
		t.Fatalf("stalled reader ended with %v after %d messages, want close 1013", cerr, next)
	}
	if next >= sent {
		t.Errorf("stalled reader got all %d messages, yet was closed as too slow", sent)
	}
	if n := slowCloses(); n != 1 {
		t.Errorf("%v sessions closed as too slow, want only the stalled one", n)
	}
	// sid comes back and catches up with sync.
	sid2 := e.dial(sidTok, 0)
	got := syncFrom(t, sid2, last)
	msgs := 0
	for _, f := range got {
		if f.Cmd() == "message" {
			msgs++
		}
	}
	if want := sent - next + 6; msgs != want || got[len(got)-1].Str("msg") != "cat speaks" {
		var desc []string
		for _, f := range got {
			desc = append(desc, fmt.Sprint(f.Seq(), ":", f.Cmd(), ":", f.Str("mid")))
		}
		t.Fatalf("sid's sync after %d (read %d of %d messages): %d messages, want %d: %v", last, next, sent, msgs, want, desc)
	}
}
