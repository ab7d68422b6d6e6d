package unread

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// Instances of every kind agree with the brute-force recount of the log: one that ran from the
// start, one started from another's shutdown snapshot, one that rebuilt from the whole log. Every
// user's list is asked through NATS, of each instance, and compared field by field.
func TestInstancesMatchRecount(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (UNREAD_SEED=%d repeats it)", seed, seed)
	e := newEnv(t)
	for u, n := range testNames {
		e.register(u, n)
	}
	g := newGen(seed, e.append, testUsers, testGroups)
	a := e.start(testConfig("a"))
	b := e.start(testConfig("b"))
	g.steps(150)

	// a stops gracefully: the snapshot it leaves (or b's, if more recent) covers all it applied.
	half := e.lastSeq()
	a.waitApplied(half)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if stored := storedSnapshotSeq(t, e); stored < half {
		t.Fatalf("snapshot at seq %d after a stopped at %d", stored, half)
	}
	c := e.start(testConfig("c"))
	if loaded := c.metric("chat_unread_snapshot_seq", "op", "load"); loaded < float64(half) {
		t.Fatalf("c loaded a snapshot at seq %v, want at least %d", loaded, half)
	}
	cfg := testConfig("d")
	cfg.Rebuild = true
	d := e.start(cfg)
	if loaded := d.metric("chat_unread_snapshot_seq", "op", "load"); loaded != 0 {
		t.Fatalf("d was to rebuild, and loaded a snapshot at %v", loaded)
	}
	g.steps(150)

	last := e.lastSeq()
	for _, in := range []*instance{b, c, d} {
		in.waitApplied(last)
	}
	log := e.readLog()
	for _, u := range testUsers {
		want := mustJSON(t, recount(log, e.names, u))
		// The queue group hands each request to any instance: ask until each has answered.
		seen := map[string]bool{}
		for try := 0; len(seen) < 3; try++ {
			if try == 500 {
				t.Fatalf("%s: only %v answered", u, seen)
			}
			rp, id := ask(t, e.nc, u, last)
			if rp.ErrCode != "" || rp.Seq < last {
				t.Fatalf("%s: answer of %s: %+v", u, id, rp)
			}
			if got := mustJSON(t, rp.Items); got != want {
				t.Fatalf("%s's conversations from %s:\n got %s\nwant %s", u, id, got, want)
			}
			seen[id] = true
		}
		if seen["a"] {
			t.Fatal("a stopped instance answered")
		}
	}
	garbage := 0
	for _, le := range log {
		if _, err := schemas.DecodeEvent(le.data); err != nil && !strings.HasPrefix(le.subject, "chat.gone.") &&
			!strings.HasPrefix(le.subject, "chat.contact.") {
			garbage++
		}
	}
	if got := d.metric("chat_unread_undecodable_total"); got != float64(garbage) {
		t.Errorf("d skipped %v undecodable events, the log has %d", got, garbage)
	}

	diffs, seq, err := Check(context.Background(), e.nc, testLog())
	if err != nil || len(diffs) != 0 || seq < last {
		t.Fatalf("check at seq %d (last %d): %v\n%s", seq, last, err, strings.Join(diffs, "\n"))
	}
}

// storedSnapshotSeq is the seq of the snapshot in the object store.
func storedSnapshotSeq(t *testing.T, e *env) uint64 {
	t.Helper()
	store, err := e.js.ObjectStore(context.Background(), schemas.UnreadSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.GetInfo(context.Background(), schemas.UnreadSnapshotObject)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	seq, err := strconv.ParseUint(info.Metadata["seq"], 10, 64)
	if err != nil {
		t.Fatalf("snapshot metadata %v", info.Metadata)
	}
	return seq
}

// writer appends hand-written events.
type writer struct {
	e *env
	n int
}

func (w *writer) put(subject string, ev schemas.Event) uint64 {
	w.e.t.Helper()
	w.n++
	ev.Ts = schemas.FormatTime(time.Date(2026, 1, 1, 0, 0, w.n, 0, time.UTC))
	data, err := json.Marshal(ev)
	if err != nil {
		w.e.t.Fatal(err)
	}
	return w.e.append(subject, data, fmt.Sprintf("w:%d", w.n))
}

func (w *writer) create(group string, creator string, others ...string) {
	members := append([]string{creator}, others...)
	for i, u := range members {
		ev := schemas.Event{Type: schemas.TypeMember, Conv: "g:" + group, User: u, Action: schemas.ActionJoined, By: creator}
		if i == 0 {
			ev.Name, ev.Members = group, members
		}
		w.put(schemas.MemberSubject(group), ev)
	}
}

func (w *writer) msg(conv, from, tid string) uint64 {
	return w.put(subjectOf(conv), schemas.Event{Type: schemas.TypeMessage, Conv: conv, From: from, Tid: tid,
		Mid: fmt.Sprintf("m%d", w.n), MsgType: "text", Msg: "hello"})
}

func (w *writer) del(conv string, ref uint64, from, author, tid string) uint64 {
	return w.put(subjectOf(conv), schemas.Event{Type: schemas.TypeMessage, Conv: conv, From: from, Tid: tid,
		Kind: schemas.KindDelete, Ref: ref, RefFrom: author})
}

func (w *writer) read(user, conv string, seq uint64) uint64 {
	return w.put(schemas.ReadSubject(user), schemas.Event{Type: schemas.TypeRead, Conv: conv, From: user, Seq: seq})
}

// pushes records the unread changes published, as gateways see them.
type pushes struct {
	t  *testing.T
	mu sync.Mutex
	l  []schemas.UnreadChanged
}

func watchPushes(t *testing.T, nc *nats.Conn) *pushes {
	p := &pushes{t: t}
	_, err := nc.Subscribe(schemas.UnreadChangedAll, func(m *nats.Msg) {
		var ch schemas.UnreadChanged
		if err := json.Unmarshal(m.Data, &ch); err != nil || m.Subject != schemas.UnreadChangedSubject(ch.User) {
			t.Errorf("bad unread change on %s: %s", m.Subject, m.Data)
			return
		}
		p.mu.Lock()
		p.l = append(p.l, ch)
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return p
}

// expect waits for the changes to have come, and checks there were exactly those, in order. It
// returns them.
func (p *pushes) expect(want ...schemas.UnreadChanged) []schemas.UnreadChanged {
	p.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		p.mu.Lock()
		got := slices.Clone(p.l)
		p.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got, want) {
				p.t.Fatalf("unread changes:\n got %+v\nwant %+v", got, want)
			}
			return got
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("unread changes: got %+v, want %+v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A read pushes the reader's count, even when the marker does not move; a delete pushes the
// counts it changed (not the author's, not those who had read the message, not those who cannot
// see it); a new message pushes nothing; an instance replaying old events pushes nothing.
func TestPushes(t *testing.T) {
	e := newEnv(t)
	x := e.start(testConfig("x"))
	obs := watchPushes(t, e.connect())
	w := &writer{e: e}
	const team = "g:team"
	w.create("team", "ann", "ben", "cat")
	m1 := w.msg(team, "ann", "")
	w.msg(team, "ann", "")
	w.msg(team, "cat", "")
	r1 := w.read("ben", team, 5)
	w.del(team, m1, "ben", "ann", "") // not the author's: ignored
	d1 := w.del(team, m1, "ann", "ann", "")
	c, _ := schemas.ParseConv(team)
	w.put(schemas.GoneSubject(c, m1), schemas.Event{Type: schemas.TypeGone, Conv: team, Ref: m1})
	priv := w.msg(team, "ann", "ben")
	d2 := w.del(team, priv, "ann", "ann", "ben")
	w.msg(team, "cat", "")
	r2 := w.read("ben", team, 3) // backwards: the marker stays
	dm := w.msg("dm:ann:ben", "ann", "")
	d3 := w.del("dm:ann:ben", dm, "ann", "ann", "")

	all := obs.expect(
		schemas.UnreadChanged{User: "ben", Conv: team, Count: 1, ReadSeq: 5, Cause: r1},
		schemas.UnreadChanged{User: "cat", Conv: team, Count: 1, ReadSeq: 0, Cause: d1},
		schemas.UnreadChanged{User: "ben", Conv: team, Count: 1, ReadSeq: 5, Cause: d2},
		schemas.UnreadChanged{User: "ben", Conv: team, Count: 2, ReadSeq: 5, Cause: r2},
		schemas.UnreadChanged{User: "ben", Conv: "dm:ann:ben", Count: 0, ReadSeq: 0, Cause: d3},
	)

	// A second instance replays all of it silently; then both push the next read.
	y := e.start(testConfig("y"))
	r3 := w.read("cat", team, 1000)
	again := schemas.UnreadChanged{User: "cat", Conv: team, Count: 0, ReadSeq: r3, Cause: r3}
	obs.expect(append(all, again, again)...)
	for _, c := range []struct {
		in         *instance
		read, dels float64
	}{{x, 3, 3}, {y, 1, 0}} {
		if r, d := c.in.metric("chat_unread_pushes_total", "cause", "read"), c.in.metric("chat_unread_pushes_total", "cause", "delete"); r != c.read || d != c.dels {
			t.Errorf("%s pushed %v reads and %v deletes, want %v and %v", c.in.svc.cfg.ID, r, d, c.read, c.dels)
		}
	}
}

// Requests: a bad one is answered bad_request; one whose minSeq the projection does not reach in
// time, unavailable; a user with nothing has an empty list.
func TestConversationsRequests(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig("q")
	cfg.QueryWait = 200 * time.Millisecond
	in := e.start(cfg)
	for _, data := range []string{`{`, `{"user":"Not Valid"}`, `{"user":""}`} {
		msg, err := e.nc.Request(schemas.UnreadConversationsRq, []byte(data), wait)
		if err != nil {
			t.Fatal(err)
		}
		var rp schemas.ConversationsReply
		if err := json.Unmarshal(msg.Data, &rp); err != nil || rp.ErrCode != schemas.CodeBadRequest || rp.Items == nil {
			t.Fatalf("%s: %s", data, msg.Data)
		}
	}
	if rp, _ := ask(t, e.nc, "ann", 1000); rp.ErrCode != schemas.CodeUnavailable || rp.ErrMsg != "unread projection is catching up" {
		t.Fatalf("behind minSeq: %+v", rp)
	}
	if rp, _ := ask(t, e.nc, "ann", 0); rp.ErrCode != "" || rp.Items == nil || len(rp.Items) != 0 {
		t.Fatalf("nothing yet: %+v", rp)
	}
	// A request waits for the projection: the answer includes an event appended just before.
	w := &writer{e: e}
	seq := w.msg("dm:ann:ben", "ben", "")
	rp, _ := ask(t, e.nc, "ann", seq)
	if rp.Seq < seq || len(rp.Items) != 1 || rp.Items[0].Unread != 1 || rp.Items[0].Name != "ben" {
		t.Fatalf("after a message: %+v", rp)
	}
	for _, r := range []string{"bad_request", "unavailable", "ok"} {
		if in.metric("chat_unread_queries_total", "result", r) == 0 {
			t.Errorf("no %s query counted", r)
		}
	}
}
