package schemas

import (
	"encoding/json"
	"slices"
	"testing"
)

func contactEvent(owner, user, action string) *Event {
	return &Event{Type: TypeContact, Ts: gts, From: owner, User: user, Action: action}
}

func TestContactsApply(t *testing.T) {
	var c Contacts
	steps := []struct {
		seq     uint64
		e       *Event
		want    []string
		wantSeq uint64
	}{
		{3, contactEvent("alice", "dave", ContactAdd), []string{"dave"}, 3},
		{5, contactEvent("alice", "bob", ContactAdd), []string{"bob", "dave"}, 5},
		{6, contactEvent("alice", "carol", ContactAdd), []string{"bob", "carol", "dave"}, 6},
		// Adding twice changes nothing but the seq.
		{8, contactEvent("alice", "bob", ContactAdd), []string{"bob", "carol", "dave"}, 8},
		// Removing a user who is not a contact changes nothing but the seq.
		{9, contactEvent("alice", "erin", ContactRemove), []string{"bob", "carol", "dave"}, 9},
		{11, contactEvent("alice", "carol", ContactRemove), []string{"bob", "dave"}, 11},
		// An event at or before Seq changes nothing: redelivery is harmless.
		{11, contactEvent("alice", "bob", ContactRemove), []string{"bob", "dave"}, 11},
		{4, contactEvent("alice", "zed", ContactAdd), []string{"bob", "dave"}, 11},
		// Other events change nothing, not even the seq.
		{12, &Event{Type: TypeMessage, Conv: "g:team", From: "alice", User: "zed", Action: ContactAdd}, []string{"bob", "dave"}, 11},
		{13, &Event{Type: TypeMember, Conv: "g:team", User: "zed", Action: ActionJoined}, []string{"bob", "dave"}, 11},
		{14, contactEvent("alice", "aaron", ContactAdd), []string{"aaron", "bob", "dave"}, 14},
		{15, contactEvent("alice", "zed", ContactAdd), []string{"aaron", "bob", "dave", "zed"}, 15},
		{16, contactEvent("alice", "aaron", ContactRemove), []string{"bob", "dave", "zed"}, 16},
		{17, contactEvent("alice", "zed", ContactRemove), []string{"bob", "dave"}, 17},
		{18, contactEvent("alice", "bob", ContactRemove), []string{"dave"}, 18},
		{19, contactEvent("alice", "dave", ContactRemove), []string{}, 19},
	}
	for i, s := range steps {
		c.Apply(s.e, s.seq)
		if !slices.Equal(c.Items, s.want) || c.Seq != s.wantSeq {
			t.Fatalf("step %d: %+v, want items %v seq %d", i, c, s.want, s.wantSeq)
		}
		if !slices.IsSorted(c.Items) || len(slices.Compact(slices.Clone(c.Items))) != len(c.Items) {
			t.Fatalf("step %d: items %v not sorted and unique", i, c.Items)
		}
	}
	// Removing the last contact leaves an empty list, not a nil one: it marshals as [].
	if data, _ := json.Marshal(c); string(data) != `{"seq":19,"items":[]}` {
		t.Errorf("emptied contacts marshal as %s", data)
	}

	// Replaying the whole log, or any prefix of it again, gives the same list (idempotent by seq).
	var again Contacts
	for _, s := range steps[:9] {
		again.Apply(s.e, s.seq)
	}
	for _, s := range steps {
		again.Apply(s.e, s.seq)
	}
	if !slices.Equal(again.Items, c.Items) || again.Seq != c.Seq {
		t.Errorf("replay: %+v, want %+v", again, c)
	}
}

// The stored value survives its JSON encoding, and Apply keeps working on a decoded value.
func TestContactsEncoding(t *testing.T) {
	var c Contacts
	c.Apply(contactEvent("alice", "carol", ContactAdd), 2)
	c.Apply(contactEvent("alice", "bob", ContactAdd), 3)
	data, err := json.Marshal(c)
	if err != nil || string(data) != `{"seq":3,"items":["bob","carol"]}` {
		t.Fatalf("marshal: %s, %v", data, err)
	}
	var back Contacts
	if err := json.Unmarshal(data, &back); err != nil || back.Seq != 3 || !slices.Equal(back.Items, c.Items) {
		t.Fatalf("unmarshal: %+v, %v", back, err)
	}
	back.Apply(contactEvent("alice", "bob", ContactAdd), 3) // already applied
	back.Apply(contactEvent("alice", "alice2", ContactAdd), 4)
	if !slices.Equal(back.Items, []string{"alice2", "bob", "carol"}) || back.Seq != 4 {
		t.Errorf("after decode: %+v", back)
	}
	// The original is not changed through a shared backing array.
	if !slices.Equal(c.Items, []string{"bob", "carol"}) {
		t.Errorf("original changed: %+v", c)
	}
}

// A contact list that Apply changed is a valid stored value (kv.contacts.json), whatever came first.
func TestContactsApplyMatchesSchema(t *testing.T) {
	all := loadSchemas(t)
	for _, first := range []*Event{
		contactEvent("alice", "bob", ContactAdd),
		contactEvent("alice", "bob", ContactRemove),
	} {
		var c Contacts
		c.Apply(first, 1)
		if c.Items == nil {
			t.Fatalf("Contacts.Apply(%s %s) on an empty list leaves Items nil (marshals as null)", first.Action, first.User)
		}
		validateValue(t, all, "kv.contacts", c)
		validateValue(t, all, "server.contacts", ContactsFrame{Cmd: CmdContacts, Items: c.Items})
	}
}
