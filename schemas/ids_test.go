package schemas

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
)

var (
	s64 = strings.Repeat("a", 64)
	s65 = strings.Repeat("a", 65)
)

func TestValidUserAndGroup(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"alice", true},
		{"a", true},
		{"0", true},
		{"a_b-c9", true},
		{"_", true},
		{"-", true},
		{s64, true},
		{s65, false},
		{"", false},
		{"Alice", false},
		{"ALICE", false},
		{"al.ice", false},
		{".", false},
		{"al*", false},
		{"*", false},
		{">", false},
		{"a>", false},
		{"al ice", false},
		{" alice", false},
		{"alice ", false},
		{"alice\n", false},
		{"al\tice", false},
		{"al:ice", false},
		{"al/ice", false},
		{"ålice", false},
		{"алиса", false},
		{"a\x00", false},
		{"\xff", false},
		{strings.Repeat("é", 32), false},
	}
	for _, c := range cases {
		if got := ValidUser(c.in); got != c.want {
			t.Errorf("ValidUser(%q) = %v, want %v", c.in, got, c.want)
		}
		if got := ValidGroup(c.in); got != c.want {
			t.Errorf("ValidGroup(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestValidMid(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"m1", true},
		{"Abc-_9", true},
		{"M", true},
		{strings.Repeat("Z", 64), true},
		{strings.Repeat("Z", 65), false},
		{"", false},
		{"m.1", false},
		{"m*", false},
		{"m>", false},
		{"m 1", false},
		{"m:1", false},
		{"mé", false},
		{"m\n", false},
	}
	for _, c := range cases {
		if got := ValidMid(c.in); got != c.want {
			t.Errorf("ValidMid(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseConv(t *testing.T) {
	valid := []struct {
		in   string
		want Conv
	}{
		{"dm:alice:bob", Conv{Kind: ConvDirect, A: "alice", B: "bob"}},
		{"dm:a:b", Conv{Kind: ConvDirect, A: "a", B: "b"}},
		{"dm:-:_", Conv{Kind: ConvDirect, A: "-", B: "_"}},
		{"dm:" + s64 + ":" + strings.Repeat("b", 64), Conv{Kind: ConvDirect, A: s64, B: strings.Repeat("b", 64)}},
		{"dm:bob:bob2", Conv{Kind: ConvDirect, A: "bob", B: "bob2"}},
		{"g:team", Conv{Kind: ConvGroup, Group: "team"}},
		{"g:dm", Conv{Kind: ConvGroup, Group: "dm"}},
		{"g:" + s64, Conv{Kind: ConvGroup, Group: s64}},
	}
	for _, c := range valid {
		got, err := ParseConv(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseConv(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.String() != c.in {
			t.Errorf("ParseConv(%q).String() = %q", c.in, got.String())
		}
		if got.IsDirect() != strings.HasPrefix(c.in, "dm:") {
			t.Errorf("ParseConv(%q).IsDirect() = %v", c.in, got.IsDirect())
		}
	}
	invalid := []string{
		"",
		"dm:bob:alice",   // not canonical
		"dm:alice:alice", // self
		"dm:Alice:bob",   // upper case
		"dm:alice:Bob",
		"DM:alice:bob",
		"G:team",
		"g:Team",
		"g:" + s65,
		"dm:" + s65 + ":zz",
		"dm:a:" + s65,
		"g:",
		"dm:",
		"dm::bob",
		"dm:alice:",
		"dm:alice",
		"dm:alice:bob:carol",
		"dm:alice.x:bob",
		"g:team.x",
		"g:*",
		"g:>",
		"dm:*:>",
		"g:te am",
		"g:team ",
		" g:team",
		"dm:alice:bob\n",
		"g:tëam",
		"g:团队",
		"g:g:team",
		"x:team",
		"team",
		"group:team",
	}
	for _, in := range invalid {
		c, err := ParseConv(in)
		if err == nil {
			t.Errorf("ParseConv(%q) = %+v, want an error", in, c)
			continue
		}
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseConv(%q) error %v does not wrap ErrInvalidID", in, err)
		}
		if c != (Conv{}) {
			t.Errorf("ParseConv(%q) returned a non-zero Conv with its error", in)
		}
	}
}

func TestDirectConv(t *testing.T) {
	for _, c := range []struct{ u1, u2, want string }{
		{"alice", "bob", "dm:alice:bob"},
		{"bob", "alice", "dm:alice:bob"},
		{"b", "a-", "dm:a-:b"},
		{"a_", "a-", "dm:a-:a_"}, // byte order: '-' < '_'
		{"z", "0", "dm:0:z"},
	} {
		got, err := DirectConv(c.u1, c.u2)
		if err != nil || got.String() != c.want {
			t.Errorf("DirectConv(%q, %q) = %v, %v; want %s", c.u1, c.u2, got, err, c.want)
			continue
		}
		back, err := ParseConv(got.String())
		if err != nil || back != got {
			t.Errorf("ParseConv(DirectConv(%q, %q)) = %v, %v", c.u1, c.u2, back, err)
		}
		if !got.Has(c.u1) || !got.Has(c.u2) || got.Has("carol") {
			t.Errorf("%v.Has is wrong", got)
		}
		if got.Other(c.u1) != c.u2 || got.Other(c.u2) != c.u1 {
			t.Errorf("%v.Other is wrong", got)
		}
	}
	for _, c := range [][2]string{
		{"alice", "alice"}, // self
		{"Alice", "bob"},
		{"alice", "BOB"},
		{s65, "bob"},
		{"", "bob"},
		{"alice", ""},
		{"al.ice", "bob"},
		{"alice", "b*"},
		{"alice", ">"},
		{"alice", "b ob"},
		{"alice", "bøb"},
	} {
		if got, err := DirectConv(c[0], c[1]); err == nil || !errors.Is(err, ErrInvalidID) {
			t.Errorf("DirectConv(%q, %q) = %v, %v; want ErrInvalidID", c[0], c[1], got, err)
		}
	}
}

func TestGroupConv(t *testing.T) {
	c, err := GroupConv("team")
	if err != nil || c.String() != "g:team" || c.IsDirect() || c.Has("team") {
		t.Errorf("GroupConv(team) = %+v, %v", c, err)
	}
	for _, g := range []string{"", "Team", s65, "t.m", "*", ">", "a b", "tëam"} {
		if _, err := GroupConv(g); !errors.Is(err, ErrInvalidID) {
			t.Errorf("GroupConv(%q) error %v, want ErrInvalidID", g, err)
		}
	}
	if (Conv{}).String() != "" {
		t.Error("the zero Conv has a string form")
	}
}

func TestDecodeEvent(t *testing.T) {
	good := `{"type":"chat.message.v1","conv":"dm:alice:bob","ts":"2025-03-01T12:00:00.000Z","from":"alice","mid":"m","msgType":"text","msg":"hi"}`
	e, err := DecodeEvent([]byte(good))
	if err != nil || e.From != "alice" || e.MsgType != "text" {
		t.Fatalf("DecodeEvent = %+v, %v", e, err)
	}
	for _, good := range []struct {
		in   string
		want Event
	}{
		{`{"type":"chat.message.v1","conv":"g:team","ts":"2025-03-01T12:00:00.000Z","from":"bob","tid":"bob","kind":"react","ref":42,"refFrom":"alice","emoji":"👍","remove":true}`,
			Event{Type: TypeMessage, Conv: "g:team", Ts: gts, From: "bob", Tid: "bob", Kind: KindReact, Ref: 42,
				RefFrom: "alice", Emoji: "👍", Remove: true}},
		{`{"type":"chat.message.v1","conv":"dm:alice:bob","ts":"2025-03-01T12:00:00.000Z","from":"alice","kind":"edit","ref":7,"refFrom":"alice","msg":"x"}`,
			Event{Type: TypeMessage, Conv: "dm:alice:bob", Ts: gts, From: "alice", Kind: KindEdit, Ref: 7, RefFrom: "alice", Msg: "x"}},
		{`{"type":"chat.read.v1","conv":"dm:alice:bob","ts":"2025-03-01T12:00:00.000Z","from":"bob","seq":42}`,
			Event{Type: TypeRead, Conv: "dm:alice:bob", Ts: gts, From: "bob", Seq: 42}},
		{`{"type":"chat.contact.v1","ts":"2025-03-01T12:00:00.000Z","from":"alice","user":"bob","action":"add"}`,
			Event{Type: TypeContact, Ts: gts, From: "alice", User: "bob", Action: ContactAdd}},
		// schemas.Event marshals conv even when empty; a contact event with "conv":"" decodes.
		{`{"type":"chat.contact.v1","conv":"","ts":"2025-03-01T12:00:00.000Z","from":"alice","user":"bob","action":"remove"}`,
			Event{Type: TypeContact, Ts: gts, From: "alice", User: "bob", Action: ContactRemove}},
		{`{"type":"chat.gone.v1","conv":"g:team","ts":"2025-03-01T12:00:00.000Z","ref":42}`,
			Event{Type: TypeGone, Conv: "g:team", Ts: gts, Ref: 42}},
	} {
		e, err := DecodeEvent([]byte(good.in))
		if err != nil || !reflect.DeepEqual(e, good.want) {
			t.Errorf("DecodeEvent(%s) = %+v, %v; want %+v", good.in, e, err, good.want)
		}
		// What Go writes, Go reads back.
		data, _ := json.Marshal(e)
		if again, err := DecodeEvent(data); err != nil || !reflect.DeepEqual(again, e) {
			t.Errorf("round trip of %s: %+v, %v", data, again, err)
		}
	}
	for _, bad := range []string{
		`{`,
		`{"type":"chat.message.v2","conv":"dm:alice:bob"}`,
		`{"type":"chat.member.v1","conv":"dm:bob:alice"}`,
		`{"type":"chat.member.v1","conv":"g:a.b"}`,
		`{"conv":"g:team"}`,
		`{"type":"chat.read.v1","from":"bob","seq":1}`,
		`{"type":"chat.read.v1","conv":"dm:bob:alice","from":"bob","seq":1}`,
		`{"type":"chat.gone.v1","conv":"","ref":1}`,
		`{"type":"chat.gone.v1","conv":"g:*","ref":1}`,
		`{"type":"chat.contact.v1","from":"alice","action":"add"}`,
		`{"type":"chat.contact.v1","user":"bob","action":"add"}`,
		`{"type":"chat.contact.v1","from":"alice","user":"Bob","action":"add"}`,
		`{"type":"chat.contact.v1","from":"a.b","user":"bob","action":"add"}`,
		`{"type":"chat.contact.v1","from":"alice","user":"` + s65 + `","action":"add"}`,
		`{"type":"chat.contact.v1","from":"alice","user":"bob","action":"add","remove":"x"}`,
	} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("DecodeEvent(%s) succeeded", bad)
		}
	}
}

func TestVisibleTo(t *testing.T) {
	pub := Event{Type: TypeMessage, From: "alice"}
	priv := Event{Type: TypeMessage, From: "alice", Tid: "bob"}
	if !pub.VisibleTo("carol") || !priv.VisibleTo("alice") || !priv.VisibleTo("bob") || priv.VisibleTo("carol") {
		t.Error("VisibleTo is wrong")
	}
	// Edits, deletes and reactions copy the tid of the message they refer to; RefFrom is its sender.
	for _, c := range []struct {
		name string
		e    Event
		sees []string // the users who see it, of alice, bob, carol
	}{
		{"reaction to a public message", Event{Type: TypeMessage, From: "carol", Kind: KindReact, Ref: 1, RefFrom: "alice", Emoji: "x"},
			[]string{"alice", "bob", "carol"}},
		{"edit of a private message", Event{Type: TypeMessage, From: "alice", Tid: "bob", Kind: KindEdit, Ref: 1, RefFrom: "alice"},
			[]string{"alice", "bob"}},
		{"delete of a private message", Event{Type: TypeMessage, From: "alice", Tid: "bob", Kind: KindDelete, Ref: 1, RefFrom: "alice"},
			[]string{"alice", "bob"}},
		{"reaction by the tid user to a private message", Event{Type: TypeMessage, From: "bob", Tid: "bob", Kind: KindReact, Ref: 1,
			RefFrom: "alice", Emoji: "x"}, []string{"alice", "bob"}},
		{"reaction by the sender to their private message", Event{Type: TypeMessage, From: "alice", Tid: "bob", Kind: KindReact,
			Ref: 1, RefFrom: "alice", Emoji: "x"}, []string{"alice", "bob"}},
		{"reaction by the tid user, sender carol", Event{Type: TypeMessage, From: "alice", Tid: "alice", Kind: KindReact,
			Ref: 1, RefFrom: "carol", Emoji: "x"}, []string{"alice", "carol"}},
	} {
		for _, u := range []string{"alice", "bob", "carol"} {
			if got, want := c.e.VisibleTo(u), slices.Contains(c.sees, u); got != want {
				t.Errorf("%s: VisibleTo(%s) = %v, want %v", c.name, u, got, want)
			}
		}
	}
}

func TestAudience(t *testing.T) {
	for _, c := range []struct {
		name string
		e    Event
		want []string
	}{
		{"public message", Event{Type: TypeMessage, From: "alice"}, nil},
		{"reaction to a public message", Event{Type: TypeMessage, From: "bob", Kind: KindReact, RefFrom: "alice"}, nil},
		{"member event", Event{Type: TypeMember, User: "alice", Action: ActionJoined}, nil},
		{"private message", Event{Type: TypeMessage, From: "alice", Tid: "bob"}, []string{"alice", "bob"}},
		{"edit of a private message", Event{Type: TypeMessage, From: "alice", Tid: "bob", Kind: KindEdit, RefFrom: "alice"},
			[]string{"alice", "bob"}},
		{"reaction by the tid user", Event{Type: TypeMessage, From: "bob", Tid: "bob", Kind: KindReact, RefFrom: "alice"},
			[]string{"bob", "alice"}},
		{"reaction by the sender", Event{Type: TypeMessage, From: "alice", Tid: "bob", Kind: KindReact, RefFrom: "alice"},
			[]string{"alice", "bob"}},
	} {
		got := c.e.Audience()
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Audience() = %v, want %v", c.name, got, c.want)
		}
		seen := map[string]bool{}
		for _, u := range got {
			if seen[u] {
				t.Errorf("%s: Audience() = %v has %s twice", c.name, got, u)
			}
			seen[u] = true
			if !c.e.VisibleTo(u) {
				t.Errorf("%s: %s is in the audience but may not see it", c.name, u)
			}
		}
		// Everyone else may not see a private event.
		if got != nil {
			for _, u := range []string{"alice", "bob", "carol", "dave"} {
				if !seen[u] && c.e.VisibleTo(u) {
					t.Errorf("%s: %s sees it but is not in the audience %v", c.name, u, got)
				}
			}
		}
	}
}

func TestFormatTime(t *testing.T) {
	re := regexp.MustCompile(schemaPattern(t, "ts"))
	for _, c := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), "2025-03-01T12:00:00.000Z"},
		{time.Date(2025, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600)), "2025-03-01T12:00:00.123Z"},
		{time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), "1999-12-31T23:59:59.999Z"},
	} {
		got := FormatTime(c.in)
		if got != c.want || !re.MatchString(got) {
			t.Errorf("FormatTime(%v) = %q, want %q (matching the schema)", c.in, got, c.want)
		}
	}
}

// schemaPattern reads the pattern of a definition of defs.json.
func schemaPattern(t testing.TB, def string) string {
	t.Helper()
	defsOnce.Do(func() {
		data, err := SchemaFS.ReadFile("jsonschema/defs.json")
		if err == nil {
			err = json.Unmarshal(data, &defsDoc)
		}
		defsErr = err
	})
	if defsErr != nil {
		t.Fatal(defsErr)
	}
	p := defsDoc.Defs[def].Pattern
	if p == "" {
		t.Fatalf("defs.json: %s has no pattern", def)
	}
	return p
}

var (
	defsOnce sync.Once
	defsErr  error
	defsDoc  struct {
		Defs map[string]struct {
			Pattern string `json:"pattern"`
		} `json:"$defs"`
	}
)

// checkSubject asserts that s is a literal NATS subject of exactly n tokens: no empty tokens, no
// wildcards, nothing but the characters identifiers are made of.
func checkSubject(t *testing.T, s string, n int) {
	t.Helper()
	toks := strings.Split(s, ".")
	if len(toks) != n {
		t.Fatalf("subject %q has %d tokens, want %d", s, len(toks), n)
	}
	for _, tok := range toks {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, "*> \t\r\n\x00") {
			t.Fatalf("subject %q has a bad token %q", s, tok)
		}
		for _, r := range tok {
			if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("subject %q has a non-ASCII, space or control character", s)
			}
		}
	}
}

func FuzzParseConv(f *testing.F) {
	for _, s := range []string{"dm:alice:bob", "dm:bob:alice", "dm:a:a", "g:team", "g:", "dm:", "g:a.b",
		"g:*", "g:>", "dm:a:b:c", "dm:a.b:c", "g:a b", "g:é", "dm:-:_", "g:" + s64, "g:" + s65, "x", ""} {
		f.Add(s)
	}
	convRe := regexp.MustCompile(schemaPattern(f, "conv"))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConv(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v does not wrap ErrInvalidID", err)
			}
			// The schema pattern cannot express a < b; everything else it accepts parses.
			if convRe.MatchString(s) {
				parts := strings.Split(s, ":")
				if len(parts) != 3 || parts[0] != "dm" || parts[1] < parts[2] {
					t.Fatalf("%q matches the schema pattern but does not parse: %v", s, err)
				}
			}
			return
		}
		if !convRe.MatchString(s) {
			t.Fatalf("%q parses but does not match the schema pattern", s)
		}
		if c.String() != s {
			t.Fatalf("ParseConv(%q).String() = %q", s, c.String())
		}
		if again, err := ParseConv(c.String()); err != nil || again != c {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
		switch c.Kind {
		case ConvDirect:
			if !(c.A < c.B) || !ValidUser(c.A) || !ValidUser(c.B) {
				t.Fatalf("bad direct conversation %+v", c)
			}
			checkSubject(t, ContentSubject(c), 5)
			checkSubject(t, GoneSubject(c, 1), 6)
			if SubjectKind(ContentSubject(c)) != TypeMessage || SubjectKind(GoneSubject(c, 1)) != TypeGone {
				t.Fatalf("SubjectKind of the subjects of %v is wrong", c)
			}
			if d, err := DirectConv(c.B, c.A); err != nil || d != c {
				t.Fatalf("DirectConv(%q, %q) = %+v, %v", c.B, c.A, d, err)
			}
			for _, u := range []string{c.A, c.B} {
				key := IndexKey(u, c)
				checkSubject(t, key, 3)
				if u2, c2, ok := ParseIndexKey(key); !ok || u2 != u || c2 != c {
					t.Fatalf("ParseIndexKey(%q) = %q, %+v, %v", key, u2, c2, ok)
				}
			}
		case ConvGroup:
			if !ValidGroup(c.Group) {
				t.Fatalf("bad group conversation %+v", c)
			}
			checkSubject(t, ContentSubject(c), 4)
			checkSubject(t, MemberSubject(c.Group), 4)
			checkSubject(t, GoneSubject(c, 1), 5)
			if SubjectKind(ContentSubject(c)) != TypeMessage || SubjectKind(GoneSubject(c, 1)) != TypeGone {
				t.Fatalf("SubjectKind of the subjects of %v is wrong", c)
			}
			key := IndexKey("u", c)
			checkSubject(t, key, 3)
			if u2, c2, ok := ParseIndexKey(key); !ok || u2 != "u" || c2 != c {
				t.Fatalf("ParseIndexKey(%q) = %q, %+v, %v", key, u2, c2, ok)
			}
		default:
			t.Fatalf("ParseConv(%q) has kind %d", s, c.Kind)
		}
		for _, subj := range append(ConvSubjects(c), GoneSubject(c, 1)) {
			if !matchesAny(EventSubjects, subj) {
				t.Fatalf("subject %q is not bound by the events stream", subj)
			}
		}
	})
}

func FuzzValidIDs(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "a.b", "*", ">", "a b", "é", "", s64, s65, "M-_9", "a\n"} {
		f.Add(s)
	}
	userRe := regexp.MustCompile(schemaPattern(f, "userId"))
	groupRe := regexp.MustCompile(schemaPattern(f, "groupId"))
	midRe := regexp.MustCompile(schemaPattern(f, "mid"))
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidUser(s), userRe.MatchString(s); got != want {
			t.Fatalf("ValidUser(%q) = %v, schema says %v", s, got, want)
		}
		if got, want := ValidGroup(s), groupRe.MatchString(s); got != want {
			t.Fatalf("ValidGroup(%q) = %v, schema says %v", s, got, want)
		}
		if got, want := ValidMid(s), midRe.MatchString(s); got != want {
			t.Fatalf("ValidMid(%q) = %v, schema says %v", s, got, want)
		}
		if ValidUser(s) {
			if !ValidMid(s) {
				t.Fatalf("user id %q is not a valid mid", s)
			}
			checkSubject(t, s, 1)
			checkSubject(t, MemberSubject(s), 4)
			if IndexPrefix(s) != s+".>" {
				t.Fatalf("IndexPrefix(%q) = %q", s, IndexPrefix(s))
			}
			if UserKey(s) != s || GroupKey(s) != s || ContactsKey(s) != s {
				t.Fatalf("UserKey/GroupKey/ContactsKey(%q) changed the id", s)
			}
			checkSubject(t, ReadSubject(s), 3)
			checkSubject(t, ContactSubject(s), 3)
			checkSubject(t, UnreadChangedSubject(s), 4)
			if SubjectKind(ReadSubject(s)) != TypeRead || SubjectKind(ContactSubject(s)) != TypeContact ||
				SubjectKind(MemberSubject(s)) != TypeMember {
				t.Fatalf("SubjectKind of the subjects of %q is wrong", s)
			}
			if c, err := GroupConv(s); err != nil || c.String() != "g:"+s {
				t.Fatalf("GroupConv(%q) = %v, %v", s, c, err)
			}
		} else {
			if _, err := GroupConv(s); err == nil {
				t.Fatalf("GroupConv(%q) accepted an invalid id", s)
			}
			if _, err := DirectConv(s, "zz"); err == nil {
				t.Fatalf("DirectConv(%q, zz) accepted an invalid id", s)
			}
			mustPanic(t, "MemberSubject", func() { MemberSubject(s) })
			mustPanic(t, "UserKey", func() { UserKey(s) })
			mustPanic(t, "ReadSubject", func() { ReadSubject(s) })
			mustPanic(t, "ContactSubject", func() { ContactSubject(s) })
			mustPanic(t, "ContactsKey", func() { ContactsKey(s) })
		}
		if ValidMid(s) {
			id := DedupID("alice", s)
			if id != "m:alice:"+s || strings.ContainsAny(id, ". *>") {
				t.Fatalf("DedupID(alice, %q) = %q", s, id)
			}
		} else {
			mustPanic(t, "DedupID", func() { DedupID("alice", s) })
		}
	})
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	f()
}
