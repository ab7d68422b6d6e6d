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

func TestEventSubjectsCoverOnlyTheLog(t *testing.T) {
	for _, s := range []string{"chat.msg.dm.a.b", "chat.msg.g.x", "chat.mem.g.x"} {
		if !matchesAny(EventSubjects, s) {
			t.Errorf("%s not bound", s)
		}
	}
	for _, s := range []string{"chat", "chat.msg", "chat.mem", "chat.other.x", "other.msg.g.x"} {
		if matchesAny(EventSubjects, s) {
			t.Errorf("%s bound", s)
		}
	}
	for _, f := range EventSubjects {
		if !strings.HasPrefix(f, SubjectRoot+".") {
			t.Errorf("%s is outside %s", f, SubjectRoot)
		}
	}
}
