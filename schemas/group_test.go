package schemas

import (
	"reflect"
	"slices"
	"testing"
)

const gts = "2025-03-01T12:00:00.000Z"

func memberEvent(user, action, by string) *Event {
	return &Event{Type: TypeMember, Conv: "g:team", Ts: gts, User: user, Action: action, By: by}
}

type logEntry struct {
	seq uint64
	e   *Event
}

// teamLog is the membership log of g:team; gaps in seq are other conversations' events.
func teamLog() []logEntry {
	first := memberEvent("alice", ActionJoined, "alice")
	first.Name, first.Public = "Team", true
	return []logEntry{
		{1, first},
		{2, memberEvent("bob", ActionJoined, "alice")},
		{5, memberEvent("carol", ActionInvited, "bob")},
		{7, memberEvent("bob", ActionLeft, "")},
		{9, memberEvent("bob", ActionJoined, "")},
		{12, memberEvent("dave", ActionLeft, "")}, // not a member: changes nothing but the seq
		{14, memberEvent("carol", ActionJoined, "")},
	}
}

func TestGroupApply(t *testing.T) {
	g := &Group{Group: "team"}
	if g.Exists() || g.IsMember("alice") {
		t.Fatal("an empty group exists")
	}
	for _, le := range teamLog() {
		if !g.Apply(le.e, le.seq) {
			t.Fatalf("Apply(seq %d) = false", le.seq)
		}
		if g.Seq != le.seq {
			t.Fatalf("Seq = %d after applying %d", g.Seq, le.seq)
		}
	}
	if !g.Exists() || g.Name != "Team" || !g.Public || g.Creator != "alice" || g.Created != gts {
		t.Errorf("group attributes %+v", g)
	}
	members := g.CurrentMembers()
	slices.Sort(members)
	if !slices.Equal(members, []string{"alice", "bob", "carol"}) {
		t.Errorf("members %v", members)
	}
	if g.IsMember("dave") || g.MemberAt("dave", 12) {
		t.Error("dave is a member")
	}
	// joined again while a member: membership keeps its start.
	if g.Members["carol"].Since != 5 {
		t.Errorf("carol since %d, want 5", g.Members["carol"].Since)
	}
	for _, c := range []struct {
		user string
		seq  uint64
		want bool
	}{
		{"alice", 1, true},
		{"alice", 100, true},
		{"alice", 0, false},
		{"bob", 1, false},
		{"carol", 4, false},
		{"carol", 5, true},
		{"carol", 14, true},
		// bob left at 7 and rejoined at 9: the current membership starts at 9.
		{"bob", 8, false},
		{"bob", 7, false},
		{"bob", 9, true},
		{"bob", 20, true},
		{"nobody", 5, false},
	} {
		if got := g.MemberAt(c.user, c.seq); got != c.want {
			t.Errorf("MemberAt(%s, %d) = %v, want %v", c.user, c.seq, got, c.want)
		}
	}
}

func TestGroupLeave(t *testing.T) {
	g := &Group{Group: "team"}
	log := teamLog()
	for _, le := range log[:4] { // up to bob leaving at 7
		g.Apply(le.e, le.seq)
	}
	if g.IsMember("bob") {
		t.Error("bob is a member after leaving")
	}
	for seq, want := range map[uint64]bool{1: false, 2: true, 6: true, 7: false, 8: false} {
		if got := g.MemberAt("bob", seq); got != want {
			t.Errorf("after leave: MemberAt(bob, %d) = %v, want %v", seq, got, want)
		}
	}
	// Leaving twice changes nothing but the seq.
	before := g.Members["bob"].Left
	g.Apply(memberEvent("bob", ActionLeft, ""), 8)
	if g.Members["bob"].Left != before || g.Seq != 8 {
		t.Errorf("second leave: left %d, seq %d", g.Members["bob"].Left, g.Seq)
	}
	// Rejoin.
	g.Apply(memberEvent("bob", ActionInvited, "alice"), 10)
	if !g.IsMember("bob") || g.Members["bob"].Since != 10 || g.Members["bob"].Left != 0 {
		t.Errorf("rejoined bob: %+v", g.Members["bob"])
	}
}

func TestGroupApplyIsIdempotent(t *testing.T) {
	live := &Group{Group: "team"}
	log := teamLog()
	for i, le := range log {
		live.Apply(le.e, le.seq)
		// Redeliver everything up to here: nothing changes.
		snapshot := live.Clone()
		for _, old := range log[:i+1] {
			if live.Apply(old.e, old.seq) {
				t.Fatalf("redelivery of seq %d changed the state", old.seq)
			}
		}
		if !reflect.DeepEqual(live, snapshot) {
			t.Fatalf("redelivery changed the state:\n%+v\n%+v", live, snapshot)
		}
	}
	// A rebuild from the log, with duplicates, equals the live state.
	rebuilt := &Group{Group: "team"}
	for _, le := range log {
		rebuilt.Apply(le.e, le.seq)
		rebuilt.Apply(le.e, le.seq)
	}
	if !reflect.DeepEqual(live, rebuilt) {
		t.Errorf("rebuild differs:\n%+v\n%+v", live, rebuilt)
	}
	// An older event arriving late is ignored as well.
	if live.Apply(memberEvent("eve", ActionJoined, ""), 3) || live.IsMember("eve") {
		t.Error("an event below Seq was applied")
	}
	// Content events are not membership.
	if live.Apply(&Event{Type: TypeMessage, Conv: "g:team", From: "eve", User: "eve", Action: ActionJoined}, 100) || live.IsMember("eve") {
		t.Error("a message event was applied")
	}
}

func TestGroupCloneAndEncoding(t *testing.T) {
	g := &Group{Group: "team"}
	for _, le := range teamLog() {
		g.Apply(le.e, le.seq)
	}
	c := g.Clone()
	c.Apply(memberEvent("alice", ActionLeft, ""), 20)
	c.Members["bob"].Since = 99
	if !g.IsMember("alice") || g.Members["bob"].Since != 9 || g.Seq != 14 {
		t.Error("Clone shares state with the original")
	}
	data, err := MarshalGroup(g)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalGroup(data)
	if err != nil || !reflect.DeepEqual(back, g) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	empty, err := UnmarshalGroup([]byte(`{"group":"x","seq":0}`))
	if err != nil || empty.Members == nil || empty.Exists() {
		t.Errorf("UnmarshalGroup(empty) = %+v, %v", empty, err)
	}
	if _, err := UnmarshalGroup([]byte(`{`)); err == nil {
		t.Error("UnmarshalGroup accepted bad JSON")
	}
	var nilGroup *Group
	if nilGroup.Exists() || nilGroup.IsMember("alice") || nilGroup.MemberAt("alice", 1) {
		t.Error("a nil group has members")
	}
}
