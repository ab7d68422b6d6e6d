package gateway_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func TestUsersOnTwoGatewaysTalk(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 1)
	ben2 := e.dial(ben.token, 0) // ben on both gateways
	ann.msg(to("ben"), "across", "m1")
	event(t, ben.c, hasText("across"))
	event(t, ben2, hasText("across"))
	ben.msg(to("ann"), "back", "m1")
	event(t, ann.c, hasText("back"))
	ann.ok(map[string]any{"cmd": "create", "conv": "g:both", "members": []string{"ben"}})
	ben.msg(conv("g:both"), "group across", "m2")
	event(t, ann.c, hasText("group across"))
}

func TestSyncResumesExactlyAfterCursor(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	e.user("cat", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:g1", "members": []string{"ben"}})
	a1 := ann.msg(to("ben"), "one", "m1")
	ben.c.Close()
	// While ben is away.
	ann.msg(to("ben"), "two", "m2")
	ann.msg(conv("g:g1"), "three", "m3")
	ann.ok(map[string]any{"cmd": "invite", "conv": "g:g1", "user": "cat"})
	head := ann.msg(to("cat"), "not for ben", "m4")

	got := syncFrom(t, e.dial(ben.token, 0), a1.Seq())
	if txt := messageTexts(got); txt != "two|three|" {
		t.Fatalf("sync after %d: %s (%v)", a1.Seq(), txt, got)
	}
	if last := got[len(got)-1]; last.Cmd() != "member" || last.Str("user") != "cat" {
		t.Fatalf("last synced event %v, want cat's invite", last)
	}
	// From the start: the joins too, in order.
	all := syncFrom(t, e.dial(ben.token, 0), 0)
	if txt := messageTexts(all); txt != "one|two|three|" || all[0].Str("action") != "joined" {
		t.Fatalf("full sync: %s %v", txt, all)
	}
	// Nothing missed: synced carries the head.
	c := e.dial(ben.token, 0)
	if err := c.Send(map[string]any{"cmd": "sync", "after": head.Seq(), "id": "s"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reply("s", wait)
	if err != nil || r.Cmd() != "synced" || r.Seq() != head.Seq() {
		t.Fatalf("sync at head: %v %v", r, err)
	}
}

// A session gets live events held back during its sync, and nothing twice.
func TestSyncWhileLiveTrafficFlows(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	for i := 0; i < 50; i++ {
		ann.msg(to("ben"), fmt.Sprint("before-", i), fmt.Sprint("b", i))
	}
	c := e.dial(ben.token, 0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			_ = ann.c.Send(map[string]any{"cmd": "message", "to": "ben", "type": "text",
				"msg": fmt.Sprint("during-", i), "mid": fmt.Sprint("d", i), "id": fmt.Sprint("x", i)})
		}
	}()
	if err := c.Send(map[string]any{"cmd": "sync", "after": 0, "id": "s"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	seen := map[string]bool{}
	var last uint64
	syncedSeen := false
	for len(seen) < 100 {
		f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "message" || f.Cmd() == "synced" })
		if err != nil {
			t.Fatalf("after %d messages: %v", len(seen), err)
		}
		if f.Cmd() == "synced" {
			syncedSeen = true
			continue
		}
		if f.Seq() <= last {
			t.Fatalf("seq %d after %d", f.Seq(), last)
		}
		last = f.Seq()
		if seen[f.Str("msg")] {
			t.Fatalf("%s twice", f.Str("msg"))
		}
		seen[f.Str("msg")] = true
	}
	if !syncedSeen {
		// synced comes before any held-back live event, so after 100 messages it has come.
		t.Fatal("no synced frame")
	}
	ann.msg(to("ben"), "marker", "mk")
	if got := upTo(t, c, hasText("marker")); len(got) != 1 {
		t.Fatalf("extra events after sync: %v", got)
	}
}

// A gateway stopped mid-conversation: its clients reconnect to another gateway and resume with
// sync, losing nothing and seeing nothing twice.
func TestGatewayRestartClientsResumeWithSync(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann := e.user("ann", 1) // the sender stays on gateway 1
	ben := e.user("ben", 0) // the reader is on gateway 0, which will go away
	ann.ok(map[string]any{"cmd": "create", "conv": "g:r", "members": []string{"ben"}})
	events(t, ben.c, 2)

	const total = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < total; i++ {
			if err := ann.c.Send(map[string]any{"cmd": "message", "conv": "g:r", "type": "text",
				"msg": fmt.Sprint("n", i), "mid": fmt.Sprint("n", i), "id": fmt.Sprint("n", i)}); err != nil {
				return
			}
			time.Sleep(time.Millisecond) // pace the sender so the restart falls mid-stream
		}
	}()
	// Ben reads until some messages have arrived, then his gateway shuts down.
	var cursor uint64
	seen := map[string]bool{}
	for len(seen) < 30 {
		f := event(t, ben.c, func(f gt.Frame) bool { return f.Cmd() == "message" })
		seen[f.Str("msg")], cursor = true, f.Seq()
	}
	stopped := make(chan error, 1)
	go func() { stopped <- e.gws[0].Stop() }()
	// Whatever the old socket still delivers before its close counts too.
	for {
		f, err := ben.c.Next(wait)
		if err != nil {
			break
		}
		if f.Cmd() == "message" {
			if seen[f.Str("msg")] {
				t.Fatalf("%s twice before the restart", f.Str("msg"))
			}
			seen[f.Str("msg")], cursor = true, f.Seq()
		}
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if ce, ok := (<-ben.c.Closed).(interface{ Error() string }); !ok || ce == nil {
		t.Fatal("no close")
	}
	<-sent
	// Reconnect to the surviving gateway and resume from the last seq seen.
	c := e.dial(ben.token, 1)
	for _, f := range syncFrom(t, c, cursor) {
		if f.Cmd() != "message" {
			continue
		}
		if seen[f.Str("msg")] {
			t.Fatalf("%s delivered again after resume", f.Str("msg"))
		}
		seen[f.Str("msg")] = true
	}
	// Anything still being stored arrives live.
	for len(seen) < total {
		f := event(t, c, func(f gt.Frame) bool { return f.Cmd() == "message" })
		if seen[f.Str("msg")] {
			t.Fatalf("%s twice", f.Str("msg"))
		}
		seen[f.Str("msg")] = true
	}
	for i := 0; i < total; i++ {
		if !seen[fmt.Sprint("n", i)] {
			t.Fatalf("n%d lost", i)
		}
	}
}

// SIGTERM drains: messages already accepted get their acks before the socket closes with 1001.
func TestShutdownAcksEverythingAcceptedThenClosesGoingAway(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann := e.user("ann", 0)
	e.user("ben", 0)
	const n = 200
	for i := 0; i < n; i++ {
		if err := ann.c.Send(map[string]any{"cmd": "message", "to": "ben", "type": "text",
			"msg": "m", "mid": fmt.Sprint("s", i), "id": fmt.Sprint("s", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the gateway has taken in at least the first frame, then stop it.
	if _, err := ann.c.Reply("s0", wait); err != nil {
		t.Fatal(err)
	}
	if err := e.gws[0].Stop(); err != nil {
		t.Fatal(err)
	}
	acked := 1
	for {
		f, err := ann.c.Next(wait)
		if err != nil {
			break
		}
		switch f.Cmd() {
		case "ack":
			acked++
		case "error":
			t.Fatalf("error during drain: %v", f)
		}
	}
	err := <-ann.c.Closed
	if !isClose(err, 1001) {
		t.Fatalf("closed with %v, want 1001", err)
	}
	// Frames read before the stop were all acknowledged; later ones were never read (the client
	// retries them after reconnecting, and mid dedup makes that safe).
	if acked == 0 {
		t.Fatal("no acks")
	}
	// Every ack names a stored message: a new gateway on the same NATS has them all.
	g := gt.StartGW(t, e.ns, nil)
	tok, _ := gt.Account(g.URL, "ben")
	c, _, err := gt.Dial(g.URL, gt.DialOpts{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := syncFrom(t, c, 0); len(got) < acked {
		t.Fatalf("%d acked, %d stored", acked, len(got))
	}
}
