package gateway_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsConn connects the test to the env's NATS, as another service would.
func (e *env) natsConn() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// lastOn returns the last event on subject and its seq (0 if none).
func (e *env) lastOn(subject string) (schemas.Event, uint64) {
	e.t.Helper()
	js, err := jetstream.New(e.natsConn())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, schemas.EventsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if err == jetstream.ErrMsgNotFound {
		return schemas.Event{}, 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	ev, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev, m.Sequence
}

func TestReadStoresAMarker(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben, zed := e.user("ann", 0), e.user("ben", 0), e.user("zed", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben"}})
	s1 := ben.msg(to("ann"), "one", "m1").Seq()
	ben.msg(conv("g:team"), "two", "m2")

	if r := ann.do(map[string]any{"cmd": "read", "conv": "dm:ann:ben", "seq": s1}); r.Cmd() != "ok" {
		t.Fatalf("read answered %v", r)
	}
	ev, seq := e.lastOn(schemas.ReadSubject("ann"))
	if ev.Type != schemas.TypeRead || ev.Conv != "dm:ann:ben" || ev.From != "ann" || ev.Seq != s1 || ev.Ts == "" || seq <= s1 {
		t.Fatalf("stored read marker %+v at %d", ev, seq)
	}
	// Past the end is fine (the unread service clamps it); 0 moves nothing and stores nothing.
	ann.ok(map[string]any{"cmd": "read", "conv": "g:team", "seq": 1 << 40})
	ev, seq2 := e.lastOn(schemas.ReadSubject("ann"))
	if ev.Conv != "g:team" || ev.Seq != 1<<40 || seq2 <= seq {
		t.Fatalf("stored read marker %+v at %d", ev, seq2)
	}
	ann.ok(map[string]any{"cmd": "read", "conv": "g:team", "seq": 0})
	if _, seq3 := e.lastOn(schemas.ReadSubject("ann")); seq3 != seq2 {
		t.Fatalf("read of seq 0 stored an event at %d", seq3)
	}

	for _, c := range []string{"dm:ann:ben", "g:team", "g:nosuch"} {
		zed.fails("forbidden", map[string]any{"cmd": "read", "conv": c, "seq": s1})
	}
	for _, f := range []map[string]any{
		{"cmd": "read", "conv": "g:team"},
		{"cmd": "read", "conv": "g:team", "seq": -1},
		{"cmd": "read", "conv": "g:team", "seq": 1.5},
		{"cmd": "read", "conv": "g:team", "seq": "3"},
		{"cmd": "read", "conv": "g:team", "seq": nil},
		{"cmd": "read", "conv": "dm:ben:ann", "seq": 1},
		{"cmd": "read", "seq": 1},
	} {
		ann.fails("bad_request", f)
	}
	// Read markers are not events of any conversation: nobody gets them live or in sync.
	for _, f := range syncFrom(t, e.dial(ann.token, 0), 0) {
		if f.Cmd() != "message" && f.Cmd() != "member" {
			t.Fatalf("sync delivered %v", f)
		}
	}
}

func isUnread(c string) func(gt.Frame) bool {
	return func(f gt.Frame) bool { return f.Cmd() == "unread" && f.Str("conv") == c }
}

// The unread service's pushes (chat.unread.changed.<user>) reach every session of the user on
// every gateway, once each, even when several unread instances publish the same change.
func TestUnreadChangesReachEverySessionOnce(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben := e.user("ann", 0), e.user("ben", 1)
	annSessions := []*gt.Client{ann.c, e.dial(ann.token, 0), e.dial(ann.token, 1)}
	nc := e.natsConn()
	publish := func(ch schemas.UnreadChanged) {
		t.Helper()
		data, _ := json.Marshal(ch)
		if err := nc.Publish(schemas.UnreadChangedSubject(ch.User), data); err != nil {
			t.Fatal(err)
		}
	}
	change := schemas.UnreadChanged{User: "ann", Conv: "dm:ann:ben", Count: 3, ReadSeq: 10, Cause: 12}
	publish(change) // two unread instances: the same change twice
	publish(change)
	publish(schemas.UnreadChanged{User: "ann", Conv: "dm:ann:ben", Count: 7, ReadSeq: 9, Cause: 11}) // late
	publish(schemas.UnreadChanged{User: "ann", Conv: "g:x", Count: 0, ReadSeq: 5, Cause: 11})        // other conv: its own order
	publish(schemas.UnreadChanged{User: "ann", Conv: "g:marker", Count: 1, ReadSeq: 2, Cause: 13})
	publish(schemas.UnreadChanged{User: "ben", Conv: "g:marker", Count: 1, ReadSeq: 2, Cause: 13})
	publish(schemas.UnreadChanged{User: "ann", Conv: "dm:ann:ben", Count: 0, ReadSeq: 20, Cause: 21})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, c := range annSessions {
		var got []gt.Frame
		for {
			f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "unread" })
			if err != nil {
				t.Fatalf("session %d: %v after %v", i, err, got)
			}
			got = append(got, f)
			if f.Uint("readSeq") == 20 {
				break
			}
		}
		for _, f := range got {
			if len(f) != 4 {
				t.Fatalf("unread frame %v: want cmd, conv, count, readSeq", f)
			}
		}
		s := ""
		for _, f := range got {
			if s != "" {
				s += " "
			}
			b, _ := json.Marshal([]any{f["conv"], f["count"], f["readSeq"]})
			s += string(b)
		}
		want := `["dm:ann:ben",3,10] ["g:x",0,5] ["g:marker",1,2] ["dm:ann:ben",0,20]`
		if s != want {
			t.Fatalf("session %d got %s, want %s", i, s, want)
		}
	}
	f, err := ben.c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "unread" })
	if err != nil || f.Str("conv") != "g:marker" {
		t.Fatalf("ben got %v %v, want only his own change", f, err)
	}
}

func TestConversationsWithoutUnreadServiceIsUnavailable(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.UnreadTimeout = 500 * time.Millisecond })
	ann := e.user("ann", 0)
	start := time.Now()
	r := ann.fails("unavailable", map[string]any{"cmd": "conversations"})
	if r.Str("errMsg") != "the unread service is not reachable" {
		t.Fatalf("answer %v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with nobody to answer", d)
	}
	// A service that takes longer than the timeout: the same answer, after the timeout.
	nc := e.natsConn()
	sub, err := nc.QueueSubscribe(schemas.UnreadConversationsRq, schemas.UnreadQueue, func(m *nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	ann.fails("unavailable", map[string]any{"cmd": "conversations"})
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("answered after %v, before the timeout", d)
	}
}

// conversations relays the unread service's answer; its request asks for read-your-writes: at
// least the last seq the user stored or got on this gateway.
func TestConversationsRelaysTheUnreadService(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 0), e.user("cat", 0)
	nc := e.natsConn()
	var mu sync.Mutex
	asked := map[string]uint64{}
	item := schemas.ConversationItem{Conv: "dm:ann:ben", Name: "ben", LastSeq: 7, LastTs: "2026-11-22T07:13:36.123Z", Unread: 2,
		LastMessage: &schemas.MessageFrame{Cmd: "message", Conv: "dm:ann:ben", Seq: 7, Mid: "m1", From: "ben", Type: "text", Msg: "hi", Ts: "2026-11-22T07:13:36.123Z"}}
	sub, err := nc.QueueSubscribe(schemas.UnreadConversationsRq, schemas.UnreadQueue, func(m *nats.Msg) {
		var req schemas.ConversationsRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		asked[req.User] = req.MinSeq
		mu.Unlock()
		var reply schemas.ConversationsReply
		switch req.User {
		case "ann", "ben":
			reply.Items = []schemas.ConversationItem{item}
		case "cat":
			reply.ErrCode, reply.ErrMsg = schemas.CodeUnavailable, "catching up"
		} // anyone else: no items (null)
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	s := ann.msg(to("ben"), "hello", "m1").Seq()
	event(t, ben.c, hasText("hello"))
	for _, u := range []*user{ann, ben} {
		r := u.do(map[string]any{"cmd": "conversations"})
		b, _ := json.Marshal(r["items"])
		var got []schemas.ConversationItem
		if err := json.Unmarshal(b, &got); err != nil || r.Cmd() != "conversations" || !reflect.DeepEqual(got, []schemas.ConversationItem{item}) {
			t.Fatalf("%s: conversations %v (%v), want items %+v", u.name, r, err, item)
		}
		mu.Lock()
		min := asked[u.name]
		mu.Unlock()
		if min < s {
			t.Fatalf("%s asked for minSeq %d, below the message at %d it stored or got", u.name, min, s)
		}
	}
	r := cat.fails("unavailable", map[string]any{"cmd": "conversations"})
	if r.Str("errMsg") != "catching up" {
		t.Fatalf("answer %v", r)
	}
	dan := e.user("dan", 0)
	r = dan.do(map[string]any{"cmd": "conversations"})
	if items, ok := r["items"].([]any); r.Cmd() != "conversations" || !ok || len(items) != 0 {
		t.Fatalf("conversations %v, want items []", r)
	}
}
