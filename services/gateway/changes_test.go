package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func edit(c string, seq uint64, text string) map[string]any {
	return map[string]any{"cmd": "edit", "conv": c, "seq": seq, "msg": text}
}

func del(c string, seq uint64) map[string]any {
	return map[string]any{"cmd": "delete", "conv": c, "seq": seq}
}

func react(c string, seq uint64, emoji string) map[string]any {
	return map[string]any{"cmd": "react", "conv": c, "seq": seq, "emoji": emoji}
}

func with(f map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		f[kv[i].(string)] = kv[i+1]
	}
	return f
}

// isKind matches the change of kind that refers to ref.
func isKind(kind string, ref uint64) func(gt.Frame) bool {
	return func(f gt.Frame) bool { return f.Cmd() == "message" && f.Str("kind") == kind && f.Uint("ref") == ref }
}

// ackOf checks that r is the ack of a change of conv.
func ackOf(t *testing.T, r gt.Frame, c, mid string) uint64 {
	t.Helper()
	if r.Cmd() != "ack" || r.Str("conv") != c || r.Seq() == 0 || r.Str("ts") == "" || r.Str("mid") != mid {
		t.Fatalf("ack %v: want conv %s, a seq, a ts and mid %q", r, c, mid)
	}
	if _, has := r["mid"]; mid == "" && has {
		t.Fatalf("ack %v carries a mid the command did not", r)
	}
	return r.Seq()
}

func TestEditDeleteReactPermissionsAndErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben, cat, zed := e.user("ann", 0), e.user("ben", 0), e.user("cat", 0), e.user("zed", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben", "cat"}})
	m := ann.msg(conv("g:team"), "hello", "m1").Seq()
	dmSeq := ann.msg(to("ben"), "in private", "m2").Seq()

	// Only the author edits or deletes; non-members are forbidden whatever the seq.
	ben.fails("forbidden", edit("g:team", m, "mine now"))
	ben.fails("forbidden", del("g:team", m))
	for _, f := range []map[string]any{edit("g:team", m, "x"), del("g:team", m), react("g:team", m, "👍"),
		edit("g:team", 999999, "x"), edit("g:nosuch", m, "x"), react("dm:ann:ben", dmSeq, "👍")} {
		zed.fails("forbidden", f)
	}

	// Only an ordinary message of the conversation can be changed.
	var memberSeq uint64
	for _, f := range historyOf(t, ann, "g:team") {
		if f.Cmd() == "member" {
			memberSeq = f.Seq()
		}
	}
	for _, f := range []map[string]any{
		edit("g:team", 0, "x"), edit("g:team", 999999, "x"), edit("g:team", dmSeq, "x"),
		del("dm:ann:ben", m), react("g:team", memberSeq, "👍"), edit("g:team", memberSeq, "x"),
	} {
		ann.fails("not_found", f)
	}
	e1 := ackOf(t, ann.do(edit("g:team", m, "hello, edited")), "g:team", "")
	ann.fails("not_found", edit("g:team", e1, "an edit of an edit"))
	ben.fails("not_found", react("g:team", e1, "👍"))

	// Any member reacts, and takes it back.
	ackOf(t, ben.do(react("g:team", m, "👍")), "g:team", "")
	ackOf(t, cat.do(react("g:team", m, "🎉")), "g:team", "")
	ackOf(t, ben.do(with(react("g:team", m, "👍"), "remove", true)), "g:team", "")
	ackOf(t, ann.do(with(react("g:team", m, "👍"), "remove", false)), "g:team", "")

	// Malformed changes.
	for _, tc := range []struct {
		f    map[string]any
		code string
	}{
		{react("g:team", m, ""), "bad_request"},
		{react("g:team", m, strings.Repeat("x", 65)), "bad_request"},
		{react("g:team", m, "a\u0007b"), "bad_request"},
		{with(react("g:team", m, "👍"), "remove", "yes"), "bad_request"},
		{map[string]any{"cmd": "react", "conv": "g:team", "seq": m}, "bad_request"},
		{map[string]any{"cmd": "edit", "conv": "g:team", "msg": "no seq"}, "bad_request"},
		{map[string]any{"cmd": "edit", "conv": "g:team", "seq": m}, "bad_request"},
		{edit("g:team", m, ""), "bad_request"},
		{edit("g:team", m, strings.Repeat("x", 16*1024+1)), "too_large"},
		{with(edit("g:team", m, "x"), "mid", "bad mid!"), "bad_request"},
		{edit("team", m, "x"), "bad_request"},
		{with(del("g:team", m), "seq", -1), "bad_request"},
		{with(del("g:team", m), "seq", "1"), "bad_request"},
	} {
		ann.fails(tc.code, tc.f)
	}
	if n := len([]rune(strings.Repeat("😀", 64))); n != 64 {
		t.Fatal(n)
	}
	ackOf(t, cat.do(react("g:team", m, strings.Repeat("😀", 64))), "g:team", "")

	// A retried mid gets the first ack unchanged, whatever its content.
	first := ann.do(with(edit("g:team", m, "once"), "mid", "e1"))
	ackOf(t, first, "g:team", "e1")
	again := ann.do(with(edit("g:team", m, "twice"), "mid", "e1"))
	for _, k := range []string{"conv", "seq", "ts", "mid"} {
		if fmt.Sprint(again[k]) != fmt.Sprint(first[k]) {
			t.Fatalf("retried edit ack %v, first %v", again, first)
		}
	}

	// Delete: once. Then nothing changes the message any more.
	d := ann.do(with(del("g:team", m), "mid", "d1"))
	ackOf(t, d, "g:team", "d1")
	ann.fails("not_found", del("g:team", m))
	ann.fails("not_found", edit("g:team", m, "too late"))
	ben.fails("not_found", react("g:team", m, "👍"))
	// Retries of what was stored before the delete still get their first acks.
	if r := ann.do(with(del("g:team", m), "mid", "d1")); r.Seq() != d.Seq() || r.Str("ts") != d.Str("ts") {
		t.Fatalf("retried delete %v, first %v", r, d)
	}
	if r := ann.do(with(edit("g:team", m, "thrice"), "mid", "e1")); r.Seq() != first.Seq() || r.Str("ts") != first.Str("ts") {
		t.Fatalf("retried edit after the delete %v, first %v", r, first)
	}
	// The retries stored nothing: the delete is still the last event of the conversation.
	h := historyOf(t, ann, "g:team")
	if last := h[len(h)-1]; last.Seq() != d.Seq() || last.Str("kind") != "delete" {
		t.Fatalf("last event %v, want the delete %v", last, d)
	}
}

// Edits, deletes and reactions reach every member's sessions, on every gateway, live, in sync and
// in history, in seq order.
func TestChangesReachEveryMemberLiveInSyncAndHistory(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 1), e.user("cat", 0)
	ann2 := e.dial(ann.token, 1)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben", "cat"}})
	m := ann.msg(conv("g:team"), "hello", "m1").Seq()
	ed := ackOf(t, ann.do(edit("g:team", m, "hello, edited")), "g:team", "")
	re := ackOf(t, ben.do(react("g:team", m, "👍")), "g:team", "")
	rm := ackOf(t, ben.do(with(react("g:team", m, "👍"), "remove", true)), "g:team", "")
	de := ackOf(t, ann.do(del("g:team", m)), "g:team", "")
	if !(m < ed && ed < re && re < rm && rm < de) {
		t.Fatalf("seqs out of order: %d %d %d %d %d", m, ed, re, rm, de)
	}
	check := func(what string, fs []gt.Frame) {
		t.Helper()
		var got []gt.Frame
		for _, f := range fs {
			if f.Str("kind") != "" {
				got = append(got, f)
			}
		}
		if len(got) != 4 {
			t.Fatalf("%s: %d changes, want 4: %v", what, len(got), fs)
		}
		want := []struct {
			seq         uint64
			kind, from  string
			msg, emoji  string
			remove, has bool
		}{
			{ed, "edit", "ann", "hello, edited", "", false, false},
			{re, "react", "ben", "", "👍", false, false},
			{rm, "react", "ben", "", "👍", true, true},
			{de, "delete", "ann", "", "", false, false},
		}
		for i, w := range want {
			f := got[i]
			_, hasRemove := f["remove"]
			if f.Seq() != w.seq || f.Str("kind") != w.kind || f.Uint("ref") != m || f.Str("from") != w.from ||
				f.Str("msg") != w.msg || f.Str("emoji") != w.emoji || hasRemove != w.has ||
				(w.remove && f["remove"] != true) || f.Str("conv") != "g:team" || f.Str("ts") == "" {
				t.Fatalf("%s: change %d is %v, want %+v (ref %d)", what, i, f, w, m)
			}
			if _, ok := f["mid"]; ok {
				t.Fatalf("%s: change without mid carries one: %v", what, f)
			}
			if _, ok := f["type"]; ok {
				t.Fatalf("%s: change carries a type: %v", what, f)
			}
		}
	}
	for i, c := range []*gt.Client{ann.c, ann2, ben.c, cat.c} {
		check(fmt.Sprint("live ", i), upTo(t, c, isKind("delete", m)))
	}
	check("sync", syncFrom(t, e.dial(cat.token, 1), 0))
	check("history", historyOf(t, ben, "g:team"))
	st, hf, body := httpHistory(t, e.gws[1], cat.token, "g:team", "")
	if st != 200 {
		t.Fatalf("HTTP history %d: %s", st, body)
	}
	check("HTTP history", hf)

	// A direct conversation works the same.
	dmm := ann.msg(to("ben"), "dm", "m2").Seq()
	ackOf(t, ben.do(react("dm:ann:ben", dmm, "👀")), "dm:ann:ben", "")
	event(t, ann2, isKind("react", dmm))
}

// The edits, deletes and reactions of a private (tid) message reach its sender and target only,
// live, in sync and in history, including a reaction by the target reaching the sender.
func TestPrivateMessageChangesReachSenderAndTargetOnly(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, ben, cat := e.user("ann", 0), e.user("ben", 0), e.user("cat", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:room", "members": []string{"ben", "cat"}})
	p := ann.msg(map[string]any{"conv": "g:room", "tid": "ben"}, "psst", "p1").Seq()
	// cat cannot see the message, so cannot change it either.
	cat.fails("not_found", react("g:room", p, "👍"))
	cat.fails("not_found", edit("g:room", p, "x"))
	ben.fails("forbidden", edit("g:room", p, "x"))
	ed := ackOf(t, ann.do(edit("g:room", p, "psst, edited")), "g:room", "")
	re := ackOf(t, ben.do(react("g:room", p, "🤫")), "g:room", "")
	de := ackOf(t, ann.do(del("g:room", p)), "g:room", "")
	ann.msg(conv("g:room"), "public marker", "p2")

	want := fmt.Sprint([]uint64{p, ed, re, de})
	seqs := func(fs []gt.Frame) string {
		var out []uint64
		for _, f := range fs {
			if f.Cmd() == "message" && (f.Seq() == p || f.Uint("ref") == p) {
				out = append(out, f.Seq())
			}
		}
		return fmt.Sprint(out)
	}
	for _, u := range []*user{ann, ben} {
		fs := upTo(t, u.c, hasText("public marker"))
		if got := seqs(fs); got != want {
			t.Fatalf("%s live: %s, want %s", u.name, got, want)
		}
		if got := seqs(syncFrom(t, e.dial(u.token, 0), 0)); got != want {
			t.Fatalf("%s sync: %s, want %s", u.name, got, want)
		}
		if got := seqs(historyOf(t, u, "g:room")); got != want {
			t.Fatalf("%s history: %s, want %s", u.name, got, want)
		}
	}
	// The reaction by the target reached the sender, with the message's tid.
	for _, f := range historyOf(t, ann, "g:room") {
		if f.Seq() == re && (f.Str("from") != "ben" || f.Str("tid") != "ben" || f.Str("emoji") != "🤫") {
			t.Fatalf("reaction %v", f)
		}
	}
	if got := seqs(upTo(t, cat.c, hasText("public marker"))); got != "[]" {
		t.Fatalf("cat got %s live", got)
	}
	if got := seqs(syncFrom(t, e.dial(cat.token, 0), 0)); got != "[]" {
		t.Fatalf("cat got %s in sync", got)
	}
	if got := seqs(historyOf(t, cat, "g:room")); got != "[]" {
		t.Fatalf("cat got %s in history", got)
	}
}

// An edit and a delete of one message racing from two sessions: the log never holds the edit after
// the delete.
func TestConcurrentEditAndDeleteNeverStoreAnEditAfterTheDelete(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann := e.user("ann", 0)
	e.user("ben", 1)
	ann2 := e.dial(ann.token, 1)
	const rounds = 20
	type result struct{ msg, edit, del uint64 }
	var results []result
	edited := 0
	for i := 0; i < rounds; i++ {
		m := ann.msg(to("ben"), fmt.Sprint("m", i), fmt.Sprint("m", i)).Seq()
		eid, did := fmt.Sprint("e", i), fmt.Sprint("d", i)
		if err := ann.c.Send(with(edit("dm:ann:ben", m, "edited"), "id", eid)); err != nil {
			t.Fatal(err)
		}
		if err := ann2.Send(with(del("dm:ann:ben", m), "id", did)); err != nil {
			t.Fatal(err)
		}
		er, err := ann.c.Reply(eid, wait)
		if err != nil {
			t.Fatal(err)
		}
		dr, err := ann2.Reply(did, wait)
		if err != nil {
			t.Fatal(err)
		}
		if dr.Cmd() != "ack" {
			t.Fatalf("delete answered %v", dr)
		}
		r := result{msg: m, del: dr.Seq()}
		switch {
		case er.Cmd() == "ack":
			r.edit = er.Seq()
			edited++
			if r.edit > r.del {
				t.Fatalf("edit acked at %d after the delete at %d", r.edit, r.del)
			}
		case er.Str("errCode") != "not_found":
			t.Fatalf("edit answered %v", er)
		}
		results = append(results, r)
	}
	t.Logf("%d of %d edits got in before their delete", edited, rounds)

	// The log: per message, no edit after its delete, and exactly the acked edits.
	deleted := map[uint64]uint64{}
	edits := map[uint64][]uint64{}
	for _, f := range historyOf(t, ann, "dm:ann:ben") {
		switch f.Str("kind") {
		case "delete":
			deleted[f.Uint("ref")] = f.Seq()
		case "edit":
			edits[f.Uint("ref")] = append(edits[f.Uint("ref")], f.Seq())
		}
	}
	for _, r := range results {
		if deleted[r.msg] != r.del {
			t.Fatalf("message %d: delete at %d in the log, acked %d", r.msg, deleted[r.msg], r.del)
		}
		for _, s := range edits[r.msg] {
			if s > r.del {
				t.Fatalf("message %d: edit at %d after the delete at %d", r.msg, s, r.del)
			}
		}
		if (r.edit != 0) != (len(edits[r.msg]) == 1) || len(edits[r.msg]) > 1 {
			t.Fatalf("message %d: edits %v in the log, acked %d", r.msg, edits[r.msg], r.edit)
		}
	}
}
