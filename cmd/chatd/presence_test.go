package main

import (
	"testing"
	"time"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

// client is a logged-in WebSocket session of the all-in-one.
type client struct {
	t *testing.T
	*gt.Client
	n int
}

func connect(t *testing.T, url, token string) *client {
	t.Helper()
	c, _, err := gt.Dial(url, gt.DialOpts{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &client{t: t, Client: c}
}

func (c *client) do(f map[string]any) gt.Frame {
	c.t.Helper()
	c.n++
	id := "q" + time.Now().Format("150405.000000") + string(rune('a'+c.n%26))
	f["id"] = id
	if err := c.Send(f); err != nil {
		c.t.Fatal(err)
	}
	r, err := c.Reply(id, 10*time.Second)
	if err != nil {
		c.t.Fatalf("%v: %v", f, err)
	}
	return r
}

func presenceOf(user, status string) func(gt.Frame) bool {
	return func(f gt.Frame) bool {
		return f.Cmd() == "presence" && f.Str("user") == user && f.Str("status") == status
	}
}

// Presence through the whole system: gateway reports, the presence service aggregates, peers get
// pushed changes, queries answer from the bucket.
func TestPresenceEndToEnd(t *testing.T) {
	url, stop := start(t, t.TempDir())
	defer stop()
	tok := map[string]string{}
	for _, u := range []string{"ann", "ben", "eve"} {
		var err error
		if tok[u], err = gt.Account(url, u); err != nil {
			t.Fatal(err)
		}
	}
	ben := connect(t, url, tok["ben"])
	// ann and ben share a conversation; eve shares nothing with ann.
	if r := ben.do(map[string]any{"cmd": "message", "to": "ann", "type": "text", "msg": "hi", "mid": "m1"}); r.Cmd() != "ack" {
		t.Fatal(r)
	}
	eve := connect(t, url, tok["eve"])

	// ann comes online on two devices: one online event for ben, none for eve.
	ann1 := connect(t, url, tok["ann"])
	if _, err := ben.Await(10*time.Second, presenceOf("ann", "online")); err != nil {
		t.Fatal(err)
	}
	ann2 := connect(t, url, tok["ann"])
	// The gateway reports a connection to presence before it reads the session's first frame, but
	// after the socket opened: one round trip on ann2 puts its connect report ahead of ann1's
	// reports below (same gateway, same NATS connection, so presence gets them in that order).
	// Without it, ann1 going idle could be counted before ann2 is, an extra away and online.
	ann2.do(map[string]any{"cmd": "ping"})

	// Query: ben sees ann online; eve may not see ann; nobody-yet users are offline with null.
	r := ben.do(map[string]any{"cmd": "presence", "users": []string{"ann", "eve"}})
	items := r["items"].([]any)
	if it := items[0].(map[string]any); it["status"] != "online" || it["lastSeen"] == nil {
		t.Fatalf("ben's view of ann: %v", it)
	}
	if it := items[1].(map[string]any); it["status"] != "offline" || it["lastSeen"] != nil {
		t.Fatalf("ben's view of eve (no shared conversation): %v", it)
	}
	if it := eve.do(map[string]any{"cmd": "presence", "users": []string{"ann"}})["items"].([]any)[0].(map[string]any); it["status"] != "offline" || it["lastSeen"] != nil {
		t.Fatalf("eve's view of ann: %v", it)
	}
	if r := eve.do(map[string]any{"cmd": "presence", "users": []string{"Ann"}}); r.Str("errCode") != "bad_request" {
		t.Fatalf("bad id: %v", r)
	}

	// All of ann's sessions idle: away; one active again: online.
	ann1.do(map[string]any{"cmd": "activity", "idle": true})
	ann2.do(map[string]any{"cmd": "activity", "idle": true})
	if _, err := ben.Await(10*time.Second, presenceOf("ann", "away")); err != nil {
		t.Fatal(err)
	}
	ann2.do(map[string]any{"cmd": "activity", "idle": false})
	if _, err := ben.Await(10*time.Second, presenceOf("ann", "online")); err != nil {
		t.Fatal(err)
	}

	// Both sessions active again (so closing them in either order leaves no idle-only state).
	ann1.do(map[string]any{"cmd": "activity", "idle": false})
	// One device closes: still online. A reload within the grace: no events at all.
	ann1.Close()
	ann2.Close()
	ann3 := connect(t, url, tok["ann"]) // back within the 1 s grace
	// Then a clean close of the last session: offline after the grace, with lastSeen.
	ann3.Close()
	f, err := ben.Await(10*time.Second, func(f gt.Frame) bool { return f.Cmd() == "presence" && f.Str("user") == "ann" })
	if err != nil {
		t.Fatal(err)
	}
	if f.Str("status") != "offline" || f.Str("lastSeen") == "" {
		t.Fatalf("after the reload and the close, ben got %v; want only offline", f)
	}
	// Eve got none of ann's changes: they were all pushed, in one callback each, before ben's
	// offline arrived, so anything for eve is queued before the answer to this ping.
	eve.do(map[string]any{"cmd": "ping"})
	for {
		f, err := eve.Await(0, func(f gt.Frame) bool { return f.Cmd() == "presence" })
		if err != nil {
			break
		}
		t.Fatalf("eve got %v", f)
	}
}
