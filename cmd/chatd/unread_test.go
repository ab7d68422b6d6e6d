package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

// item finds conv in a conversations answer.
func item(t *testing.T, f gt.Frame, conv string) map[string]any {
	t.Helper()
	items, _ := f["items"].([]any)
	for _, it := range items {
		m := it.(map[string]any)
		if m["conv"] == conv {
			return m
		}
	}
	t.Fatalf("%s not in %v", conv, f)
	return nil
}

func convOrder(f gt.Frame) []string {
	var out []string
	items, _ := f["items"].([]any)
	for _, it := range items {
		out = append(out, it.(map[string]any)["conv"].(string))
	}
	return out
}

func num(m map[string]any, k string) uint64 { return gt.Frame(m).Uint(k) }

func unreadFor(conv string, count int, readSeq uint64) func(gt.Frame) bool {
	return func(f gt.Frame) bool {
		return f.Cmd() == "unread" && f.Str("conv") == conv && f.Uint("count") == uint64(count) &&
			f.Uint("readSeq") == readSeq
	}
}

// Unread counts, read markers and the conversation list through the whole system: the gateway
// appends, the unread service projects, pushes and answers; and all of it survives a restart.
func TestUnreadAndConversationsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	url, stop := start(t, dir)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	tok := map[string]string{}
	// ann has a display name: her direct conversations are named after it.
	if st, err := gt.HTTP("POST", url+"/v1/register", "", schemas.RegisterRequest{User: "ann",
		Password: "password-ann", Name: "Ann Lee"}, nil); err != nil || st != http.StatusCreated {
		t.Fatalf("register ann: %d %v", st, err)
	}
	for _, u := range []string{"ann", "ben", "cat"} {
		var err error
		if tok[u], err = gt.Account(url, u); err != nil {
			t.Fatal(err)
		}
	}
	ann, ben, ben2, cat := connect(t, url, tok["ann"]), connect(t, url, tok["ben"]), connect(t, url, tok["ben"]), connect(t, url, tok["cat"])
	for _, c := range []*client{ann, ben, ben2, cat} {
		if r := c.do(map[string]any{"cmd": "sync", "after": 0}); r.Cmd() != "synced" {
			t.Fatal(r)
		}
	}
	send := func(c *client, f map[string]any) uint64 {
		t.Helper()
		f["cmd"], f["type"] = "message", "text"
		r := c.do(f)
		if r.Cmd() != "ack" {
			t.Fatalf("%v: %v", f, r)
		}
		return r.Seq()
	}
	if r := ann.do(map[string]any{"cmd": "create", "conv": "g:team", "name": "The Team", "members": []string{"ben", "cat"}}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	g1 := send(ann, map[string]any{"conv": "g:team", "msg": "hello team", "mid": "g1"})
	g2 := send(cat, map[string]any{"conv": "g:team", "msg": "hi", "mid": "g2"})
	priv := send(ann, map[string]any{"conv": "g:team", "msg": "psst ben", "mid": "g3", "tid": "ben"})
	own := send(ben, map[string]any{"conv": "g:team", "msg": "mine", "mid": "g4"})
	d1 := send(ann, map[string]any{"to": "ben", "msg": "dm one", "mid": "d1"})
	d2 := send(ann, map[string]any{"to": "ben", "msg": "dm two", "mid": "d2"})
	// An edit and a reaction are activity, not messages: they change neither counts nor previews.
	if r := ann.do(map[string]any{"cmd": "edit", "conv": "dm:ann:ben", "seq": d1, "msg": "dm one, edited"}); r.Cmd() != "ack" {
		t.Fatal(r)
	}
	if r := ben.do(map[string]any{"cmd": "react", "conv": "g:team", "seq": g2, "emoji": "👍"}); r.Cmd() != "ack" {
		t.Fatal(r)
	}

	list := ben.do(map[string]any{"cmd": "conversations"})
	if got := convOrder(list); len(got) != 2 || got[0] != "dm:ann:ben" || got[1] != "g:team" {
		t.Fatalf("ben's conversations in order: %v (%v)", got, list)
	}
	dm, team := item(t, list, "dm:ann:ben"), item(t, list, "g:team")
	if dm["name"] != "Ann Lee" || num(dm, "unread") != 2 || num(dm, "lastSeq") != d2 {
		t.Fatalf("dm item: %v", dm)
	}
	if lm, _ := dm["lastMessage"].(map[string]any); lm == nil || lm["msg"] != "dm two" || num(lm, "seq") != d2 {
		t.Fatalf("dm lastMessage: %v", dm)
	}
	// ben: g1, g2 and the private message to him; not his own.
	if team["name"] != "The Team" || num(team, "unread") != 3 || num(team, "lastSeq") != own {
		t.Fatalf("team item for ben: %v", team)
	}
	catTeam := item(t, cat.do(map[string]any{"cmd": "conversations"}), "g:team")
	// cat: g1 and ben's message; not the private one, not her own.
	if num(catTeam, "unread") != 2 {
		t.Fatalf("team item for cat: %v", catTeam)
	}
	if lm, _ := catTeam["lastMessage"].(map[string]any); lm == nil || num(lm, "seq") != own {
		t.Fatalf("cat's lastMessage: %v", catTeam)
	}

	// A read answers ok and every session of the reader gets the new count.
	if r := ben.do(map[string]any{"cmd": "read", "conv": "g:team", "seq": g2}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	for _, c := range []*client{ben, ben2} {
		if _, err := c.Await(10*time.Second, unreadFor("g:team", 1, g2)); err != nil {
			t.Fatalf("unread after read: %v", err)
		}
	}
	// A marker never moves back; the answer is still ok, and the count is unchanged.
	if r := ben2.do(map[string]any{"cmd": "read", "conv": "g:team", "seq": g1}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	if _, err := ben.Await(10*time.Second, unreadFor("g:team", 1, g2)); err != nil {
		t.Fatalf("unread after a backwards read: %v", err)
	}
	// A delete takes the message out of the counts of those who had not read it, and out of
	// the preview.
	if r := ann.do(map[string]any{"cmd": "delete", "conv": "g:team", "seq": priv}); r.Cmd() != "ack" {
		t.Fatal(r)
	}
	for _, c := range []*client{ben, ben2} {
		if _, err := c.Await(10*time.Second, unreadFor("g:team", 0, g2)); err != nil {
			t.Fatalf("unread after delete: %v", err)
		}
	}
	if r := ann.do(map[string]any{"cmd": "delete", "conv": "dm:ann:ben", "seq": d2}); r.Cmd() != "ack" {
		t.Fatal(r)
	}
	if _, err := ben.Await(10*time.Second, unreadFor("dm:ann:ben", 1, 0)); err != nil {
		t.Fatalf("unread after dm delete: %v", err)
	}
	dm = item(t, ben.do(map[string]any{"cmd": "conversations"}), "dm:ann:ben")
	if lm, _ := dm["lastMessage"].(map[string]any); lm == nil || num(lm, "seq") != d1 || num(dm, "unread") != 1 {
		t.Fatalf("dm after deleting the last message: %v", dm)
	}
	// Reading past the end is reading to the end.
	if r := ben.do(map[string]any{"cmd": "read", "conv": "dm:ann:ben", "seq": 1 << 40}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	if _, err := ben.Await(10*time.Second, func(f gt.Frame) bool {
		return f.Cmd() == "unread" && f.Str("conv") == "dm:ann:ben" && f.Uint("count") == 0 && f.Uint("readSeq") > d2
	}); err != nil {
		t.Fatalf("unread after reading past the end: %v", err)
	}

	// cat leaves: the group is no longer in her list.
	if r := cat.do(map[string]any{"cmd": "leave", "conv": "g:team"}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	if got := convOrder(cat.do(map[string]any{"cmd": "conversations"})); len(got) != 0 {
		t.Fatalf("cat's conversations after leaving: %v", got)
	}
	before := ben.do(map[string]any{"cmd": "conversations"})
	delete(before, "id")
	for _, c := range []*client{ann, ben, ben2, cat} {
		c.Close()
	}
	stop()
	stopped = true

	// Everything survives a restart.
	url, stop = start(t, dir)
	stopped = false
	ben = connect(t, url, tok["ben"])
	after := ben.do(map[string]any{"cmd": "conversations"})
	delete(after, "id")
	if b, a := mustJSON(t, before), mustJSON(t, after); b != a {
		t.Fatalf("conversations changed across a restart:\n%v\n%v", before, after)
	}
}

// mustJSON encodes v with sorted map keys, to compare decoded frames.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
