package gateway_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func TestCreateGivesEveryInitialMemberAJoinedEventPerMember(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 1), e.user("cat", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:trio", "name": "Trio", "members": []string{"ben", "cat", "ben"}})
	for _, u := range []*user{ann, ben, cat} {
		got := events(t, u.c, 3)
		var joined []string
		for _, f := range got {
			if f.Cmd() != "member" || f.Str("action") != "joined" || f.Str("conv") != "g:trio" || f.Seq() == 0 {
				t.Fatalf("%s: %v", u.name, f)
			}
			joined = append(joined, f.Str("user"))
		}
		sort.Strings(joined)
		if strings.Join(joined, ",") != "ann,ben,cat" {
			t.Fatalf("%s saw joins of %v", u.name, joined)
		}
	}
	ann.fails("conflict", map[string]any{"cmd": "create", "conv": "g:trio", "members": []string{}})
	ben.fails("conflict", map[string]any{"cmd": "create", "conv": "g:trio", "members": []string{"ann"}})
	ann.fails("not_found", map[string]any{"cmd": "create", "conv": "g:other", "members": []string{"ghost"}})
	ann.fails("bad_request", map[string]any{"cmd": "create", "conv": "g:Bad", "members": []string{}})
	ann.fails("bad_request", map[string]any{"cmd": "create", "conv": "dm:ann:ben", "members": []string{}})
	ann.fails("bad_request", map[string]any{"cmd": "create", "conv": "g:x", "members": []string{"UPPER"}})
	ann.fails("bad_request", map[string]any{"cmd": "create", "conv": "g:x", "name": strings.Repeat("n", 129)})
	// The failed creates left nothing behind: g:other can still be made.
	ann.ok(map[string]any{"cmd": "create", "conv": "g:other", "members": []string{}})
}

func TestConcurrentCreatesOfOneGroupOneWins(t *testing.T) {
	e := newEnv(t, 2, nil)
	users := []*user{e.user("u0", 0), e.user("u1", 1), e.user("u2", 0), e.user("u3", 1)}
	results := make(chan string, len(users))
	for _, u := range users {
		go func(u *user) {
			id := "c-" + u.name
			_ = u.c.Send(map[string]any{"cmd": "create", "conv": "g:race", "members": []string{}, "id": id})
			r, err := u.c.Reply(id, wait)
			if err != nil {
				results <- err.Error()
				return
			}
			results <- r.Cmd() + r.Str("errCode")
		}(u)
	}
	got := map[string]int{}
	for range users {
		got[<-results]++
	}
	if got["ok"] != 1 || got["errorconflict"] != len(users)-1 {
		t.Fatalf("results %v", got)
	}
}

func TestJoinLeaveInvite(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat, dan := e.user("ann", 0), e.user("ben", 1), e.user("cat", 0), e.user("dan", 1)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:open", "public": true, "members": []string{"ben"}})
	ann.ok(map[string]any{"cmd": "create", "conv": "g:closed", "members": []string{"ben"}})

	// join: public only; joining twice changes nothing.
	cat.ok(map[string]any{"cmd": "join", "conv": "g:open"})
	cat.ok(map[string]any{"cmd": "join", "conv": "g:open"})
	cat.fails("forbidden", map[string]any{"cmd": "join", "conv": "g:closed"})
	f := event(t, ann.c, func(f gt.Frame) bool { return f.Str("action") == "joined" && f.Str("user") == "cat" })
	if f.Str("conv") != "g:open" {
		t.Fatal(f)
	}
	event(t, cat.c, func(f gt.Frame) bool { return f.Str("action") == "joined" && f.Str("user") == "cat" })
	cat.msg(conv("g:open"), "cat here", "c1")
	event(t, ben.c, hasText("cat here"))

	// invite: members only, makes the user a member at once.
	dan.fails("forbidden", map[string]any{"cmd": "invite", "conv": "g:closed", "user": "dan"})
	ben.fails("not_found", map[string]any{"cmd": "invite", "conv": "g:closed", "user": "ghost"})
	ben.fails("bad_request", map[string]any{"cmd": "invite", "conv": "g:closed", "user": "Dan"})
	ben.ok(map[string]any{"cmd": "invite", "conv": "g:closed", "user": "dan"})
	inv := event(t, dan.c, func(f gt.Frame) bool { return f.Str("action") == "invited" })
	if inv.Str("user") != "dan" || inv.Str("conv") != "g:closed" || inv.Str("by") != "ben" {
		t.Fatalf("invited event %v", inv)
	}
	dan.msg(conv("g:closed"), "thanks", "d1") // sent through the other gateway right away
	event(t, ann.c, hasText("thanks"))
	ann.ok(map[string]any{"cmd": "history", "conv": "g:closed"})

	// leave: the leaver's sessions get the left event, then nothing more of the group.
	dan2 := e.dial(dan.token, 0)
	dan.ok(map[string]any{"cmd": "leave", "conv": "g:closed"})
	for _, c := range []*gt.Client{dan.c, dan2} {
		event(t, c, func(f gt.Frame) bool { return f.Str("action") == "left" && f.Str("user") == "dan" })
	}
	ann.msg(conv("g:closed"), "after dan left", "a1")
	event(t, ben.c, hasText("after dan left"))
	dan.fails("forbidden", map[string]any{"cmd": "history", "conv": "g:closed"})
	dan.fails("forbidden", map[string]any{"cmd": "message", "conv": "g:closed", "type": "text", "msg": "x", "mid": "d2"})
	dan.fails("forbidden", map[string]any{"cmd": "leave", "conv": "g:closed"})
	ann.msg(to("dan"), "dm marker", "a2")
	for _, c := range []*gt.Client{dan.c, dan2} {
		got := upTo(t, c, hasText("dm marker"))
		for _, f := range got {
			if f.Str("msg") == "after dan left" {
				t.Fatalf("dan saw %v after leaving", f)
			}
		}
	}
	// A sync from the start shows dan his time in the group, not what came after.
	dan3 := e.dial(dan.token, 1)
	r := syncFrom(t, dan3, 0)
	for _, f := range r {
		if f.Str("msg") == "after dan left" {
			t.Fatalf("sync showed %v", f)
		}
	}
	texts := messageTexts(r)
	if !strings.Contains(texts, "thanks") || !strings.Contains(texts, "dm marker") {
		t.Fatalf("sync missing dan's own events: %s", texts)
	}
}

func TestPrivateTidMessagesReachSenderAndTargetOnly(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 1), e.user("cat", 1)
	e.user("zed", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:room", "members": []string{"ben", "cat"}})
	ann.fails("bad_request", map[string]any{"cmd": "message", "conv": "g:room", "type": "text", "msg": "x", "mid": "p0", "tid": "zed"})
	ann.fails("bad_request", map[string]any{"cmd": "message", "conv": "g:room", "type": "text", "msg": "x", "mid": "p0", "tid": "Ben"})
	ack := ann.msg(map[string]any{"conv": "g:room", "tid": "ben"}, "psst ben", "p1")
	ann.msg(conv("g:room"), "public marker", "p2")
	for _, u := range []*user{ann, ben} {
		f := event(t, u.c, hasText("psst ben"))
		if f.Str("tid") != "ben" || f.Seq() != ack.Seq() {
			t.Fatal(f)
		}
	}
	for _, f := range upTo(t, cat.c, hasText("public marker")) {
		if f.Str("msg") == "psst ben" {
			t.Fatal("cat saw the private message live")
		}
	}
	if strings.Contains(messageTexts(historyOf(t, cat, "g:room")), "psst") {
		t.Fatal("cat saw the private message in history")
	}
	if !strings.Contains(messageTexts(historyOf(t, ben, "g:room")), "psst") {
		t.Fatal("ben does not see the private message in history")
	}
	if strings.Contains(messageTexts(syncFrom(t, e.dial(cat.token, 0), 0)), "psst") {
		t.Fatal("cat saw the private message in sync")
	}
}

// syncFrom runs a sync on c and returns its events; it checks order and the synced frame.
func syncFrom(t *testing.T, c *gt.Client, after uint64) []gt.Frame {
	t.Helper()
	id := fmt.Sprint("sync-", after)
	if err := c.Send(map[string]any{"cmd": "sync", "after": after, "id": id}); err != nil {
		t.Fatal(err)
	}
	var out []gt.Frame
	last := after
	for {
		f, err := c.Await(wait, func(f gt.Frame) bool {
			return f.Cmd() == "message" || f.Cmd() == "member" || f.Str("id") == id
		})
		if err != nil {
			t.Fatalf("sync after %d: %v (got %d events)", after, err, len(out))
		}
		if f.Str("id") == id {
			if f.Cmd() != "synced" {
				t.Fatalf("sync answered %v", f)
			}
			if len(out) > 0 && f.Seq() != last {
				t.Fatalf("synced.seq %d, last delivered %d", f.Seq(), last)
			}
			return out
		}
		if f.Seq() <= last {
			t.Fatalf("sync: seq %d after %d", f.Seq(), last)
		}
		last = f.Seq()
		out = append(out, f)
	}
}

func historyOf(t *testing.T, u *user, c string) []gt.Frame {
	t.Helper()
	r := u.ok(map[string]any{"cmd": "history", "conv": c, "limit": 200})
	raw, _ := r["messages"].([]any)
	out := make([]gt.Frame, len(raw))
	for i, m := range raw {
		out[i] = gt.Frame(m.(map[string]any))
	}
	return out
}

func messageTexts(fs []gt.Frame) string {
	var b strings.Builder
	for _, f := range fs {
		if f.Cmd() == "message" {
			b.WriteString(f.Str("msg") + "|")
		}
	}
	return b.String()
}
