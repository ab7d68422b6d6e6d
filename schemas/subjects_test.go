package schemas

import (
	"slices"
	"strings"
	"testing"
)

// matchSubject reports whether NATS subject filter f matches the literal subject s.
func matchSubject(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, tok := range ft {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || tok != "*" && tok != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

func matchesAny(filters []string, s string) bool {
	for _, f := range filters {
		if matchSubject(f, s) {
			return true
		}
	}
	return false
}

func mustConv(t testing.TB, s string) Conv {
	t.Helper()
	c, err := ParseConv(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestContentSubject(t *testing.T) {
	for _, c := range []struct{ conv, want string }{
		{"dm:alice:bob", "chat.msg.dm.alice.bob"},
		{"dm:a-1:b_2", "chat.msg.dm.a-1.b_2"},
		{"g:team", "chat.msg.g.team"},
		{"g:dm", "chat.msg.g.dm"},
	} {
		got := ContentSubject(mustConv(t, c.conv))
		if got != c.want {
			t.Errorf("ContentSubject(%s) = %q, want %q", c.conv, got, c.want)
		}
		if !matchesAny(EventSubjects, got) {
			t.Errorf("%q is not bound by the events stream", got)
		}
	}
	mustPanic(t, "ContentSubject(zero)", func() { ContentSubject(Conv{}) })
}

func TestMemberSubject(t *testing.T) {
	if got := MemberSubject("team"); got != "chat.mem.g.team" {
		t.Errorf("MemberSubject(team) = %q", got)
	}
	if !matchesAny(EventSubjects, MemberSubject("team")) {
		t.Error("member subjects are not bound by the events stream")
	}
	for _, g := range []string{"", "Team", "a.b", "*", ">", "a b", s65} {
		mustPanic(t, "MemberSubject("+g+")", func() { MemberSubject(g) })
	}
}

func TestConvSubjects(t *testing.T) {
	if got := ConvSubjects(mustConv(t, "g:team")); !slices.Equal(got, []string{"chat.msg.g.team", "chat.mem.g.team"}) {
		t.Errorf("ConvSubjects(g:team) = %v", got)
	}
	if got := ConvSubjects(mustConv(t, "dm:alice:bob")); !slices.Equal(got, []string{"chat.msg.dm.alice.bob"}) {
		t.Errorf("ConvSubjects(dm:alice:bob) = %v", got)
	}
	// Content and membership subjects of different conversations never collide.
	seen := map[string]string{}
	for _, s := range []string{"dm:a:b", "dm:a:g", "dm:g:m", "g:a", "g:b", "g:dm", "g:msg", "g:mem"} {
		for _, subj := range ConvSubjects(mustConv(t, s)) {
			if prev, ok := seen[subj]; ok {
				t.Errorf("%s and %s share subject %s", prev, s, subj)
			}
			seen[subj] = s
		}
	}
}

func TestIndexKey(t *testing.T) {
	dm := mustConv(t, "dm:alice:bob")
	g := mustConv(t, "g:team")
	for _, c := range []struct {
		user string
		conv Conv
		want string
	}{
		{"alice", dm, "alice.d.bob"},
		{"bob", dm, "bob.d.alice"},
		{"alice", g, "alice.g.team"},
		{"carol", g, "carol.g.team"},
	} {
		key := IndexKey(c.user, c.conv)
		if key != c.want {
			t.Errorf("IndexKey(%s, %v) = %q, want %q", c.user, c.conv, key, c.want)
		}
		if !matchSubject(IndexPrefix(c.user), key) {
			t.Errorf("IndexPrefix(%s) does not match %q", c.user, key)
		}
		u, conv, ok := ParseIndexKey(key)
		if !ok || u != c.user || conv != c.conv {
			t.Errorf("ParseIndexKey(%q) = %q, %v, %v", key, u, conv, ok)
		}
	}
	if matchSubject(IndexPrefix("alice"), "alice2.g.team") {
		t.Error("IndexPrefix(alice) matches another user's keys")
	}
	mustPanic(t, "IndexKey(bad user)", func() { IndexKey("Alice", g) })
	mustPanic(t, "IndexKey(zero conv)", func() { IndexKey("alice", Conv{}) })
	for _, key := range []string{"", "alice", "alice.d", "alice.d.", "alice.x.bob", "alice.d.alice", "Alice.g.team",
		"alice.g.Team", "alice.g.team.x", "alice.d.bob.x", ".g.team", "alice.g.*", "alice.g.>", "alice..team"} {
		if _, _, ok := ParseIndexKey(key); ok {
			t.Errorf("ParseIndexKey(%q) succeeded", key)
		}
	}
}

func TestKeys(t *testing.T) {
	if UserKey("alice") != "alice" || GroupKey("team") != "team" || IndexPrefix("alice") != "alice.>" {
		t.Error("keys changed")
	}
	if got := DedupID("alice", "Mid-1"); got != "m:alice:Mid-1" {
		t.Errorf("DedupID = %q", got)
	}
	// The same mid from two senders is two messages.
	if DedupID("alice", "m1") == DedupID("bob", "m1") {
		t.Error("DedupID is not per sender")
	}
	mustPanic(t, "UserKey", func() { UserKey("a.b") })
	mustPanic(t, "GroupKey", func() { GroupKey("*") })
	mustPanic(t, "DedupID(bad user)", func() { DedupID("A", "m1") })
	mustPanic(t, "DedupID(bad mid)", func() { DedupID("alice", "m.1") })
	mustPanic(t, "IndexPrefix", func() { IndexPrefix(">") })
}

func TestReadContactAndGoneSubjects(t *testing.T) {
	dm, g := mustConv(t, "dm:alice:bob"), mustConv(t, "g:team")
	for _, c := range []struct {
		got, want, kind string
		tokens          int
	}{
		{ReadSubject("alice"), "chat.read.alice", TypeRead, 3},
		{ReadSubject("a-1_b"), "chat.read.a-1_b", TypeRead, 3},
		{ContactSubject("alice"), "chat.contact.alice", TypeContact, 3},
		{GoneSubject(dm, 42), "chat.gone.dm.alice.bob.42", TypeGone, 6},
		{GoneSubject(g, 1), "chat.gone.g.team.1", TypeGone, 5},
		{GoneSubject(mustConv(t, "g:dm"), 18446744073709551615), "chat.gone.g.dm.18446744073709551615", TypeGone, 5},
	} {
		if c.got != c.want {
			t.Errorf("subject %q, want %q", c.got, c.want)
		}
		checkSubject(t, c.got, c.tokens)
		if !matchesAny(EventSubjects, c.got) {
			t.Errorf("%q is not bound by the events stream", c.got)
		}
		// Read markers, contact changes and deletion markers are never delivered as conversation events.
		if matchesAny(ConvEventSubjects, c.got) {
			t.Errorf("%q is a conversation event subject", c.got)
		}
		if k := SubjectKind(c.got); k != c.kind {
			t.Errorf("SubjectKind(%q) = %q, want %q", c.got, k, c.kind)
		}
	}
	// Per-user subjects of different users never match each other.
	if matchSubject(ReadSubject("alice"), ReadSubject("alice2")) || ReadSubject("alice") == ContactSubject("alice") {
		t.Error("read and contact subjects collide")
	}
	// A gone marker of a message names the content subject of its conversation.
	for _, c := range []Conv{dm, g} {
		gone, content := GoneSubject(c, 7), ContentSubject(c)
		if strings.TrimPrefix(gone, "chat.gone.") != strings.TrimPrefix(content, "chat.msg.")+".7" {
			t.Errorf("GoneSubject(%v, 7) = %q does not follow %q", c, gone, content)
		}
	}
	if GoneSubject(dm, 1) == GoneSubject(dm, 10) || GoneSubject(g, 1) == GoneSubject(mustConv(t, "g:team1"), 1) {
		t.Error("gone subjects collide")
	}
	for _, u := range []string{"", "Alice", "a.b", "*", ">", "a b", s65} {
		mustPanic(t, "ReadSubject("+u+")", func() { ReadSubject(u) })
		mustPanic(t, "ContactSubject("+u+")", func() { ContactSubject(u) })
		mustPanic(t, "ContactsKey("+u+")", func() { ContactsKey(u) })
		mustPanic(t, "UnreadChangedSubject("+u+")", func() { UnreadChangedSubject(u) })
	}
	mustPanic(t, "GoneSubject(zero conv)", func() { GoneSubject(Conv{}, 1) })
	if got := ContactsKey("alice"); got != "alice" {
		t.Errorf("ContactsKey(alice) = %q", got)
	}
}

func TestSubjectKind(t *testing.T) {
	for _, c := range []struct{ subject, want string }{
		{ContentSubject(mustConv(t, "dm:alice:bob")), TypeMessage},
		{ContentSubject(mustConv(t, "g:team")), TypeMessage},
		{MemberSubject("team"), TypeMember},
		{ReadSubject("bob"), TypeRead},
		{ContactSubject("bob"), TypeContact},
		{GoneSubject(mustConv(t, "g:team"), 3), TypeGone},
		// Group ids that spell other subject roots do not confuse it.
		{ContentSubject(mustConv(t, "g:read")), TypeMessage},
		{MemberSubject("gone"), TypeMember},
		{ReadSubject("msg"), TypeRead},
		{ContactSubject("g"), TypeContact},
		{"", ""},
		{"chat", ""},
		{"chat.msg", ""},
		{"chat.mem.x", ""},
		{"chat.readers.x", ""},
		{"chat.contacts.x", ""},
		{"chat.unread.changed.alice", ""},
		{"chat.presence.x", ""},
		{"other.msg.g.x", ""},
	} {
		if got := SubjectKind(c.subject); got != c.want {
			t.Errorf("SubjectKind(%q) = %q, want %q", c.subject, got, c.want)
		}
	}
}

// The unread service's subjects are core NATS: none is bound by the events stream, and the pushes
// of one user match the gateways' subscription.
func TestUnreadSubjects(t *testing.T) {
	s := UnreadChangedSubject("alice")
	if s != "chat.unread.changed.alice" {
		t.Errorf("UnreadChangedSubject(alice) = %q", s)
	}
	checkSubject(t, s, 4)
	if !matchSubject(UnreadChangedAll, s) {
		t.Errorf("%s does not match %s", UnreadChangedAll, s)
	}
	for _, subj := range []string{s, UnreadConversationsRq, UnreadStateRq} {
		if matchesAny(EventSubjects, subj) {
			t.Errorf("%s is bound by the events stream", subj)
		}
		if SubjectKind(subj) != "" {
			t.Errorf("SubjectKind(%s) = %q", subj, SubjectKind(subj))
		}
	}
	if matchSubject(UnreadChangedAll, UnreadConversationsRq) || matchSubject(UnreadChangedAll, UnreadStateRq) {
		t.Error("requests match the unread pushes")
	}
}

func TestEventSubjectsCoverOnlyTheLog(t *testing.T) {
	for _, s := range []string{"chat.msg.dm.a.b", "chat.msg.g.x", "chat.mem.g.x", "chat.read.a", "chat.contact.a",
		"chat.gone.g.x.1", "chat.gone.dm.a.b.1"} {
		if !matchesAny(EventSubjects, s) {
			t.Errorf("%s not bound", s)
		}
	}
	for _, s := range []string{"chat", "chat.msg", "chat.mem", "chat.read", "chat.contact", "chat.gone",
		"chat.other.x", "other.msg.g.x", "chat.unread.changed.a"} {
		if matchesAny(EventSubjects, s) {
			t.Errorf("%s bound", s)
		}
	}
	// The conversation event subjects are a subset of the stream's.
	for _, f := range ConvEventSubjects {
		if !slices.Contains(EventSubjects, f) {
			t.Errorf("%s is not a subject of the events stream", f)
		}
	}
	for _, f := range EventSubjects {
		if !strings.HasPrefix(f, SubjectRoot+".") {
			t.Errorf("%s is outside %s", f, SubjectRoot)
		}
	}
}
