package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func TestDirectMessageReachesEverySessionOfBothUsers(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	alice2 := e.dial(alice.token, 0) // a second device
	bob2 := e.dial(bob.token, 0)

	ack := alice.msg(to("bob"), "hello bob", "m1")
	if ack.Str("conv") != "dm:alice:bob" || ack.Seq() == 0 || ack.Str("mid") != "m1" || ack.Str("ts") == "" {
		t.Fatalf("ack %v", ack)
	}
	for _, c := range []*gt.Client{alice.c, alice2, bob.c, bob2} {
		f := event(t, c, hasText("hello bob"))
		if f.Seq() != ack.Seq() || f.Str("from") != "alice" || f.Str("conv") != "dm:alice:bob" ||
			f.Str("type") != "text" || f.Str("mid") != "m1" || f.Str("ts") != ack.Str("ts") {
			t.Fatalf("frame %v does not match ack %v", f, ack)
		}
		if _, ok := f["kind"]; ok {
			t.Fatalf("ordinary message carries kind: %v", f)
		}
	}
	// Answer by conv id; seq grows.
	ack2 := bob.msg(conv("dm:alice:bob"), "hi alice", "m1") // mids are per sender
	if ack2.Seq() <= ack.Seq() {
		t.Fatalf("seq did not grow: %d then %d", ack.Seq(), ack2.Seq())
	}
	event(t, alice.c, hasText("hi alice"))
}

func TestRetriedMidStoresNothingNewAndReturnsFirstAck(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	first := alice.msg(to("bob"), "once", "same-mid")
	// A retry with other content, even to another conversation, gets the first ack unchanged.
	e.user("carol", 0)
	for _, target := range []map[string]any{to("bob"), to("carol")} {
		again := alice.msg(target, "twice", "same-mid")
		for _, k := range []string{"conv", "ts", "mid"} {
			if again.Str(k) != first.Str(k) {
				t.Fatalf("retry ack %v differs from first %v in %s", again, first, k)
			}
		}
		if again.Seq() != first.Seq() {
			t.Fatalf("retry seq %d, first %d", again.Seq(), first.Seq())
		}
	}
	alice.msg(to("bob"), "marker", "m2")
	got := upTo(t, bob.c, hasText("marker"))
	if len(got) != 2 || got[0].Str("msg") != "once" {
		t.Fatalf("bob got %v, want once then marker", got)
	}
}

func TestConcurrentRetriesOfOneMidStoreOnce(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, bob := e.user("alice", 0), e.user("bob", 0)
	// Many frames with the same mid in flight at once land in the same group-commit batch.
	for i := 0; i < 20; i++ {
		if err := alice.c.Send(map[string]any{"cmd": "message", "to": "bob", "type": "text",
			"msg": fmt.Sprint("copy ", i), "mid": "dup", "id": fmt.Sprint("d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	for i := 0; i < 20; i++ {
		r, err := alice.c.Reply(fmt.Sprint("d", i), wait)
		if err != nil || r.Cmd() != "ack" {
			t.Fatalf("retry %d: %v %v", i, r, err)
		}
		if seq == 0 {
			seq = r.Seq()
		} else if r.Seq() != seq {
			t.Fatalf("retry %d acked seq %d, first %d", i, r.Seq(), seq)
		}
	}
	alice.msg(to("bob"), "marker", "m2")
	if got := upTo(t, bob.c, hasText("marker")); len(got) != 2 {
		t.Fatalf("bob got %d events, want 2: %v", len(got), got)
	}
}

func TestDirectConversationErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice := e.user("alice", 0)
	e.user("bob", 0)
	base := map[string]any{"cmd": "message", "type": "text", "msg": "x", "mid": "m"}
	with := func(kv ...any) map[string]any {
		f := map[string]any{}
		for k, v := range base {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(f, kv[i].(string))
			} else {
				f[kv[i].(string)] = kv[i+1]
			}
		}
		return f
	}
	for _, tc := range []struct {
		name  string
		frame map[string]any
		code  string
	}{
		{"self by to", with("to", "alice"), "bad_request"},
		{"self by conv", with("conv", "dm:alice:alice"), "bad_request"},
		{"non-canonical", with("conv", "dm:bob:alice"), "bad_request"},
		{"unknown user", with("to", "nobody"), "not_found"},
		{"to and conv", with("to", "bob", "conv", "dm:alice:bob"), "bad_request"},
		{"neither", with(), "bad_request"},
		{"tid in direct", with("to", "bob", "tid", "bob"), "bad_request"},
		{"upper-case user", with("to", "Bob"), "bad_request"},
		{"subject injection", with("to", "bob.>"), "bad_request"},
		{"other people's dm", with("conv", "dm:bob:carol"), "forbidden"},
		{"bad conv", with("conv", "room1"), "bad_request"},
		{"bad mid", with("to", "bob", "mid", "has space"), "bad_request"},
		{"missing mid", with("to", "bob", "mid", nil), "bad_request"},
		{"long mid", with("to", "bob", "mid", strings.Repeat("m", 65)), "bad_request"},
		{"bad type", with("to", "bob", "type", "video"), "bad_request"},
		{"empty msg", with("to", "bob", "msg", ""), "bad_request"},
		{"missing msg", with("to", "bob", "msg", nil), "bad_request"},
		{"msg too long", with("to", "bob", "msg", strings.Repeat("é", 8193)), "too_large"},
		{"msg wrong type", with("to", "bob", "msg", 12), "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) { alice.fails(tc.code, tc.frame) })
	}
	// 16 KiB exactly is fine.
	alice.msg(to("bob"), strings.Repeat("x", 16*1024), "max")
}

func TestNonMemberIsForbiddenLikeMissingConversation(t *testing.T) {
	e := newEnv(t, 1, nil)
	alice, mallory := e.user("alice", 0), e.user("mallory", 0)
	e.user("bob", 0)
	alice.ok(map[string]any{"cmd": "create", "conv": "g:secret", "members": []string{"bob"}})
	alice.msg(conv("g:secret"), "classified", "m1")

	for _, c := range []string{"g:secret", "g:doesnotexist"} {
		a := mallory.fails("forbidden", map[string]any{"cmd": "message", "conv": c, "type": "text", "msg": "hi", "mid": "x" + c[2:]})
		b := mallory.fails("forbidden", map[string]any{"cmd": "history", "conv": c})
		mallory.fails("forbidden", map[string]any{"cmd": "join", "conv": c})
		mallory.fails("forbidden", map[string]any{"cmd": "invite", "conv": c, "user": "mallory"})
		mallory.fails("forbidden", map[string]any{"cmd": "leave", "conv": c})
		if a.Str("errMsg") != "not a member of this conversation" || b.Str("errMsg") != a.Str("errMsg") {
			t.Fatalf("answers differ: %v %v", a, b)
		}
		var body map[string]any
		st, err := gt.HTTP("GET", e.gws[0].URL+"/v1/conversations/"+c+"/messages", mallory.token, nil, &body)
		if err != nil || st != http.StatusForbidden || body["errCode"] != "forbidden" {
			t.Fatalf("GET messages of %s: %d %v %v", c, st, body, err)
		}
	}
	mallory.fails("forbidden", map[string]any{"cmd": "history", "conv": "dm:alice:bob"})
	alice.msg(conv("g:secret"), "marker", "m2")
	// mallory saw nothing of the group: a direct message sent after it is the first event she gets.
	alice.msg(to("mallory"), "dm marker", "m3")
	got := upTo(t, mallory.c, hasText("dm marker"))
	if len(got) != 1 {
		t.Fatalf("mallory saw %v", got)
	}
}

func TestInterleavedGroupMessagesArriveInOneOrderEverywhere(t *testing.T) {
	e := newEnv(t, 2, nil)
	a, b := e.user("ann", 0), e.user("ben", 1)
	readers := []*user{e.user("cat", 0), e.user("dan", 1)}
	a.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben", "cat", "dan"}})
	for _, u := range append(readers, a, b) {
		events(t, u.c, 4) // the four joined events
	}
	const n = 100 // per sender
	var wg sync.WaitGroup
	for _, s := range []*user{a, b} {
		wg.Add(1)
		go func(s *user) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				// Pipelined: don't wait for acks.
				if err := s.c.Send(map[string]any{"cmd": "message", "conv": "g:team", "type": "text",
					"msg": fmt.Sprintf("%s-%d", s.name, i), "mid": fmt.Sprint("i", i), "id": fmt.Sprint("q", i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	var orders [][]string
	for _, u := range append(readers, a, b) {
		got := events(t, u.c, 2*n)
		var order []string
		var last uint64
		next := map[string]int{}
		for _, f := range got {
			if f.Seq() <= last {
				t.Fatalf("%s: seq %d after %d", u.name, f.Seq(), last)
			}
			last = f.Seq()
			// Each sender's messages keep the order they were sent in.
			want := fmt.Sprintf("%s-%d", f.Str("from"), next[f.Str("from")])
			if f.Str("msg") != want {
				t.Fatalf("%s: got %s, want %s", u.name, f.Str("msg"), want)
			}
			next[f.Str("from")]++
			order = append(order, fmt.Sprint(f.Seq(), f.Str("msg")))
		}
		orders = append(orders, order)
	}
	for i := 1; i < len(orders); i++ {
		if strings.Join(orders[i], ",") != strings.Join(orders[0], ",") {
			t.Fatalf("member %d saw another order", i)
		}
	}
}
