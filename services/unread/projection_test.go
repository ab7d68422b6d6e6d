package unread

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/eventchat/chat/schemas"
)

// names of the random tests' users: some with a display name, one with an empty one, some
// without an account record.
var testNames = map[string]string{"ann": "Ann Lee", "ben": "Ben", "cat": "", "eve": "Eve Moss"}

// Many random logs, each checked in full against the brute-force recount: every user's every
// conversation, field by field.
func TestProjectionMatchesRecount(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (UNREAD_SEED=%d repeats it)", seed, seed)
	for i := range uint64(40) {
		l := genLog(t, seed+i, 400)
		p := project(t, l.entries)
		compareWithRecount(t, p, l.entries, testNames)
		if p.Seq() != uint64(len(l.entries)) {
			t.Fatalf("seq %d after %d events", p.Seq(), len(l.entries))
		}
	}
}

// Applying every event twice (a redelivery right away), or the whole log again, changes nothing;
// nor does a round trip through the snapshot encoding.
func TestApplyIsIdempotentBySeq(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (UNREAD_SEED=%d repeats it)", seed, seed)
	l := genLog(t, seed, 500)
	once := project(t, l.entries)

	twice := NewProjection()
	for _, le := range l.entries {
		_ = twice.Apply(le.seq, le.subject, le.data)
		_ = twice.Apply(le.seq, le.subject, le.data)
	}
	if d := Diff(once, twice); len(d) != 0 {
		t.Fatalf("applied twice:\n%s", strings.Join(d, "\n"))
	}
	for _, le := range l.entries {
		_ = twice.Apply(le.seq, le.subject, le.data)
	}
	if d := Diff(once, twice); len(d) != 0 {
		t.Fatalf("log applied again:\n%s", strings.Join(d, "\n"))
	}

	var buf bytes.Buffer
	seq, err := once.Encode(&buf)
	if err != nil || seq != once.Seq() {
		t.Fatalf("encode: seq %d, %v", seq, err)
	}
	decoded, err := DecodeProjection(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(once, decoded); len(d) != 0 {
		t.Fatalf("after a snapshot round trip:\n%s", strings.Join(d, "\n"))
	}
	// The decoded projection goes on like the original.
	more := newMemLog()
	more.entries = slices.Clone(l.entries)
	g := newGen(seed+1, more.append, testUsers, testGroups)
	g.last = uint64(len(l.entries))
	g.steps(200)
	for _, le := range more.entries[len(l.entries):] {
		_ = once.Apply(le.seq, le.subject, le.data)
		_ = decoded.Apply(le.seq, le.subject, le.data)
	}
	if d := Diff(once, decoded); len(d) != 0 {
		t.Fatalf("after more events:\n%s", strings.Join(d, "\n"))
	}
	compareWithRecount(t, decoded, more.entries, testNames)
}

// Diff names each differing field of each user's conversation.
func TestDiffReportsATamperedProjection(t *testing.T) {
	l := newMemLog()
	put := func(subject string, e schemas.Event) uint64 {
		data, _ := json.Marshal(e)
		return l.append(subject, data, "")
	}
	ts := "2026-01-01T00:00:00.000Z"
	put(schemas.MemberSubject("team"), schemas.Event{Type: schemas.TypeMember, Conv: "g:team", Ts: ts, User: "ann",
		Action: schemas.ActionJoined, By: "ann", Name: "Team", Members: []string{"ann", "ben"}})
	put(schemas.MemberSubject("team"), schemas.Event{Type: schemas.TypeMember, Conv: "g:team", Ts: ts, User: "ben",
		Action: schemas.ActionJoined, By: "ann"})
	m1 := put(subjectOf("g:team"), schemas.Event{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Mid: "a", MsgType: "text", Msg: "one"})
	m2 := put(subjectOf("g:team"), schemas.Event{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Mid: "b", MsgType: "text", Msg: "two"})
	put(subjectOf("g:team"), schemas.Event{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Kind: schemas.KindDelete, Ref: m2, RefFrom: "ann"})
	put(schemas.ReadSubject("ben"), schemas.Event{Type: schemas.TypeRead, Conv: "g:team", Ts: ts, From: "ben", Seq: 1})

	live := project(t, l.entries)
	if d := Diff(live, project(t, l.entries)); len(d) != 0 {
		t.Fatalf("same log, differences: %v", d)
	}
	// A marker moved without a read, ben gone, and the last message wrong.
	tampered := project(t, l.entries)
	c := tampered.convs["g:team"]
	c.Users["ben"].Read = m1
	c.Group.Members["ben"].Left = m2
	c.LastPub = m2
	d := Diff(live, tampered)
	for _, w := range []string{"ben g:team listed: true != false", "ben g:team read: 1 != 3",
		"ann g:team lastMessage: 3 != 4", "ben g:team lastMessage: 3 != 4"} {
		if !slices.Contains(d, w) {
			t.Errorf("missing %q in:\n%s", w, strings.Join(d, "\n"))
		}
	}
	// The delete forgotten: ben's count has m2 again.
	tampered = project(t, l.entries)
	tampered.convs["g:team"].PubDel = nil
	if d := Diff(live, tampered); !slices.Contains(d, "ben g:team unread: 1 != 2") {
		t.Errorf("forgotten delete not reported:\n%s", strings.Join(d, "\n"))
	}
	tampered.applied++
	if d := Diff(live, tampered); !slices.Contains(d, "seq: 6 != 7") {
		t.Errorf("seq not compared: %v", d)
	}
}

// Undecodable and malformed events are skipped; the projection moves past them.
func TestBadEventsAreSkipped(t *testing.T) {
	p := NewProjection()
	for i, c := range []struct {
		subject, data string
	}{
		{"chat.msg.g.team", `{"type":`},
		{"chat.msg.g.team", `{"type":"chat.member.v1","conv":"g:team","ts":"x","user":"ann","action":"joined"}`},
		{"chat.mem.g.team", `{"type":"chat.member.v1","conv":"g:team","ts":"x","user":"ANN","action":"joined"}`},
		{"chat.mem.g.team", `{"type":"chat.member.v1","conv":"dm:a:b","ts":"x","user":"ann","action":"joined"}`},
		{"chat.read.ben", `{"type":"chat.read.v1","conv":"g:team","ts":"x","from":"ann","seq":3}`},
		{"chat.msg.g.team", `{"type":"chat.message.v1","conv":"g:team","ts":"x","from":"Not Valid"}`},
	} {
		if err := p.Apply(uint64(i+1), c.subject, []byte(c.data)); err == nil {
			t.Errorf("%s %s: applied", c.subject, c.data)
		}
	}
	// Contacts and deletion markers are skipped without a look.
	for i, subject := range []string{"chat.contact.ann", "chat.gone.g.team.3"} {
		if err := p.Apply(uint64(10+i), subject, []byte("not even json")); err != nil {
			t.Errorf("%s: %v", subject, err)
		}
	}
	if p.Seq() != 11 || len(p.convs) != 0 {
		t.Fatalf("seq %d, conversations %v", p.Seq(), p.convs)
	}
}

// Packed messages round-trip, and every truncation or corruption of them is an error, never a
// panic or a wrong projection taken for a good one.
func TestPackedMessages(t *testing.T) {
	ms := msgRefs{{Seq: 3, From: "ann"}, {Seq: 7, From: "ann", Tid: "bob"}, {Seq: 8, From: "bob"}, {Seq: 1 << 40, From: "cy", Tid: "ann"}}
	data, err := ms.GobEncode()
	if err != nil {
		t.Fatal(err)
	}
	var back msgRefs
	if err := back.GobDecode(data); err != nil || !slices.Equal(back, ms) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
	for n := range len(data) {
		var part msgRefs
		if err := part.GobDecode(data[:n]); err == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded: %v", n, len(data), part)
		}
	}
	for i := range data {
		bad := slices.Clone(data)
		bad[i] ^= 0xff
		var x msgRefs
		_ = x.GobDecode(bad) // must not panic
	}
	if _, err := (msgRefs{{Seq: 5}, {Seq: 4}}).GobEncode(); err == nil {
		t.Fatal("messages out of seq order encoded")
	}
}
