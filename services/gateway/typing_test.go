package gateway_test

import (
	"testing"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func isTyping(conv, user string) func(gt.Frame) bool {
	return func(f gt.Frame) bool { return f.Cmd() == "typing" && f.Str("conv") == conv && f.Str("user") == user }
}

// Typing reaches the other members online on every gateway, never the typist's own sessions, and
// is never stored: it is in neither sync nor history.
func TestTypingIsRelayedAcrossGatewaysAndNeverStored(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 1), e.user("cat", 1)
	ann2 := e.dial(ann.token, 1) // ann's second device, on the other gateway
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben", "cat"}})

	if err := ann.c.Send(map[string]any{"cmd": "typing", "conv": "g:team"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*gt.Client{ben.c, cat.c} {
		if _, err := c.Await(wait, isTyping("g:team", "ann")); err != nil {
			t.Fatal(err)
		}
	}
	// Direct conversation: only the other user.
	if err := ben.c.Send(map[string]any{"cmd": "typing", "conv": "dm:ann:ben"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*gt.Client{ann.c, ann2} {
		if _, err := c.Await(wait, isTyping("dm:ann:ben", "ben")); err != nil {
			t.Fatal(err)
		}
	}
	// The typist's own sessions got nothing: a message sent after it arrives with no typing
	// frame of ann's before it.
	ann.msg(conv("g:team"), "marker", "m1")
	for _, c := range []*gt.Client{ann.c, ann2} {
		upTo(t, c, hasText("marker"))
		for {
			f, err := c.Await(0, func(f gt.Frame) bool { return f.Cmd() == "typing" && f.Str("user") == "ann" })
			if err != nil {
				break
			}
			t.Fatalf("ann's own session got %v", f)
		}
	}
	// Not a member: forbidden. Malformed: bad_request.
	zed := e.user("zed", 0)
	zed.fails("forbidden", map[string]any{"cmd": "typing", "conv": "g:team"})
	zed.fails("forbidden", map[string]any{"cmd": "typing", "conv": "dm:ann:ben"})
	zed.fails("bad_request", map[string]any{"cmd": "typing", "conv": "team"})

	// Never stored.
	for _, f := range syncFrom(t, e.dial(ben.token, 0), 0) {
		if f.Cmd() == "typing" {
			t.Fatalf("typing in sync: %v", f)
		}
	}
	h := ben.ok(map[string]any{"cmd": "history", "conv": "g:team"})
	for _, m := range h["messages"].([]any) {
		if m.(map[string]any)["cmd"] == "typing" {
			t.Fatalf("typing in history: %v", m)
		}
	}
}

// A session that types faster than its typing limit has the excess dropped, not answered.
func TestTypingIsRateLimitedPerSession(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	for i := 0; i < 20; i++ {
		if err := ann.c.Send(map[string]any{"cmd": "typing", "conv": "dm:ann:ben"}); err != nil {
			t.Fatal(err)
		}
	}
	ann.msg(to("ben"), "marker", "m1")
	n := 0
	for {
		f, err := ben.c.Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		if f.Cmd() == "typing" {
			n++
		}
		if hasText("marker")(f) {
			break
		}
	}
	// Burst 3 at 1/s: 3, or 4 if a token refilled during the burst.
	if n < 1 || n > 4 {
		t.Fatalf("ben got %d typing frames of 20", n)
	}
}
