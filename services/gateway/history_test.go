package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

// wsHistory asks for history over the WebSocket; params are before, after, limit (nil: absent).
func wsHistory(t *testing.T, u *user, conv string, params map[string]any) []gt.Frame {
	t.Helper()
	f := map[string]any{"cmd": "history", "conv": conv}
	for k, v := range params {
		f[k] = v
	}
	r := u.do(f)
	if r.Cmd() != "history" || r.Str("conv") != conv {
		t.Fatalf("history %v answered %v", f, r)
	}
	raw, ok := r["messages"].([]any)
	if !ok {
		t.Fatalf("history answer without a messages array: %v", r)
	}
	return asFrames(raw)
}

func asFrames(raw []any) []gt.Frame {
	out := make([]gt.Frame, len(raw))
	for i, m := range raw {
		out[i] = gt.Frame(m.(map[string]any))
	}
	return out
}

// httpHistory asks GET /v1/conversations/{convPath}/messages?query; it returns the status and, on
// 200, the messages (the raw body otherwise).
func httpHistory(t *testing.T, gw *gt.Gateway, token, convPath, query string) (int, []gt.Frame, []byte) {
	t.Helper()
	u := gw.URL + "/v1/conversations/" + convPath + "/messages"
	if query != "" {
		u += "?" + query
	}
	st, _, body := httpRaw(t, "GET", u, token, nil, nil)
	if st != http.StatusOK {
		return st, nil, body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var resp map[string]any
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, body)
	}
	raw, ok := resp["messages"].([]any)
	if !ok || len(resp) != 1 {
		t.Fatalf("GET %s answered %s, want {\"messages\":[...]}", u, body)
	}
	return st, asFrames(raw), body
}

// bothHistories asks the same query over the WebSocket and over HTTP and checks they agree.
func bothHistories(t *testing.T, gw *gt.Gateway, u *user, conv string, params map[string]any) []gt.Frame {
	t.Helper()
	ws := wsHistory(t, u, conv, params)
	q := url.Values{}
	for k, v := range params {
		q.Set(k, fmt.Sprint(v))
	}
	st, h, body := httpHistory(t, gw, u.token, url.PathEscape(conv), q.Encode())
	if st != http.StatusOK {
		t.Fatalf("GET history of %s %v: %d %s", conv, params, st, body)
	}
	sameFrames(t, fmt.Sprintf("HTTP vs WebSocket history %v", params), h, ws)
	return ws
}

// sameFrames checks that two lists of frames are equal, field for field.
func sameFrames(t *testing.T, what string, got, want []gt.Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames %s, want %d %s", what, len(got), seqList(got), len(want), seqList(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: frame %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

func seqList(fs []gt.Frame) string {
	if len(fs) > 12 {
		return fmt.Sprintf("[%s ... %s]", seqList(fs[:3]), seqList(fs[len(fs)-3:]))
	}
	var s []string
	for _, f := range fs {
		s = append(s, fmt.Sprint(f.Seq()))
	}
	return strings.Join(s, " ")
}

// sendMany sends n text messages from u to target, pipelined in chunks, and returns their acks.
func sendMany(t *testing.T, u *user, target map[string]any, n int, prefix string) []gt.Frame {
	t.Helper()
	var acks []gt.Frame
	for start := 0; start < n; start += 50 {
		end := min(n, start+50)
		for i := start; i < end; i++ {
			f := map[string]any{"cmd": "message", "type": "text", "msg": fmt.Sprintf("%s %d", prefix, i),
				"mid": fmt.Sprintf("%s-%d", prefix, i), "id": fmt.Sprintf("%s#%d", prefix, i)}
			for k, v := range target {
				f[k] = v
			}
			if err := u.c.Send(f); err != nil {
				t.Fatal(err)
			}
		}
		for i := start; i < end; i++ {
			r, err := u.c.Reply(fmt.Sprintf("%s#%d", prefix, i), wait)
			if err != nil || r.Cmd() != "ack" {
				t.Fatalf("message %s %d: %v %v", prefix, i, r, err)
			}
			acks = append(acks, r)
		}
	}
	return acks
}

// pageBackward pages through a conversation from the newest event with before = the oldest seq
// returned, and returns everything in order, checking WebSocket and HTTP agree on every page.
func pageBackward(t *testing.T, gw *gt.Gateway, u *user, conv string, limit int) []gt.Frame {
	t.Helper()
	var all []gt.Frame
	page := bothHistories(t, gw, u, conv, map[string]any{"limit": limit})
	for pages := 0; len(page) > 0; pages++ {
		if len(page) > limit {
			t.Fatalf("page of %d with limit %d", len(page), limit)
		}
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		all = append(append([]gt.Frame{}, page...), all...)
		page = bothHistories(t, gw, u, conv, map[string]any{"limit": limit, "before": page[0].Seq()})
	}
	return all
}

// pageForward pages from the start with after = the newest seq returned.
func pageForward(t *testing.T, gw *gt.Gateway, u *user, conv string, limit int) []gt.Frame {
	t.Helper()
	var all []gt.Frame
	var after uint64
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		page := bothHistories(t, gw, u, conv, map[string]any{"limit": limit, "after": after})
		if len(page) == 0 {
			return all
		}
		if len(page) > limit {
			t.Fatalf("page of %d with limit %d", len(page), limit)
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq()
	}
}

func TestHistory(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	ann, ben, cat := e.user("ann", 0), e.user("ben", 0), e.user("cat", 0)
	mal := e.user("mal", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben"}})
	sendMany(t, ann, conv("g:team"), 100, "a")
	ann.ok(map[string]any{"cmd": "invite", "conv": "g:team", "user": "cat"})
	sendMany(t, ben, conv("g:team"), 60, "b")
	cat.ok(map[string]any{"cmd": "leave", "conv": "g:team"})
	sendMany(t, ann, conv("g:team"), 50, "c")
	// Traffic elsewhere, which no history of g:team shows.
	sendMany(t, ann, to("cat"), 20, "d")
	// The reference: the live frames ben received, all of g:team's events in order.
	const total = 2 + 100 + 1 + 60 + 1 + 50
	live := events(t, ben.c, total)
	for i := 1; i < len(live); i++ {
		if live[i].Seq() <= live[i-1].Seq() {
			t.Fatalf("live frames out of order")
		}
	}
	if live[0].Cmd() != "member" || live[102].Str("action") != "invited" || live[163].Str("action") != "left" {
		t.Fatalf("unexpected reference: %v %v %v", live[0], live[102], live[163])
	}

	// Newest 50 by default, oldest first, exactly the live frames.
	sameFrames(t, "default", bothHistories(t, gw, ann, "g:team", nil), live[total-50:])
	sameFrames(t, "limit 1", bothHistories(t, gw, ann, "g:team", map[string]any{"limit": 1}), live[total-1:])
	sameFrames(t, "limit 200", bothHistories(t, gw, ann, "g:team", map[string]any{"limit": 200}), live[total-200:])
	sameFrames(t, "limit 500", bothHistories(t, gw, ann, "g:team", map[string]any{"limit": 500}), live[total-200:])
	sameFrames(t, "ben's view", bothHistories(t, gw, ben, "g:team", nil), live[total-50:])

	// before and after are exclusive.
	s := func(i int) uint64 { return live[i].Seq() }
	sameFrames(t, "before", bothHistories(t, gw, ann, "g:team", map[string]any{"before": s(100), "limit": 10}), live[90:100])
	sameFrames(t, "before, default limit", bothHistories(t, gw, ann, "g:team", map[string]any{"before": s(100)}), live[50:100])
	sameFrames(t, "after", bothHistories(t, gw, ann, "g:team", map[string]any{"after": s(100), "limit": 10}), live[101:111])
	sameFrames(t, "after, default limit", bothHistories(t, gw, ann, "g:team", map[string]any{"after": s(100)}), live[101:151])
	sameFrames(t, "between", bothHistories(t, gw, ann, "g:team", map[string]any{"after": s(10), "before": s(20)}), live[11:20])
	sameFrames(t, "after 0", bothHistories(t, gw, ann, "g:team", map[string]any{"after": 0, "limit": 3}), live[:3])
	// Bounds between the conversation's events (seqs of other conversations) work the same.
	sameFrames(t, "before beyond the head", bothHistories(t, gw, ann, "g:team", map[string]any{"before": s(total-1) + 1000, "limit": 2}), live[total-2:])
	for _, p := range []map[string]any{{"before": s(0)}, {"after": s(total - 1)}, {"before": 1}, {"after": s(total-1) + 1000}, {"after": s(5), "before": s(6)}} {
		if got := bothHistories(t, gw, ann, "g:team", p); len(got) != 0 {
			t.Fatalf("history %v: %d frames, want none", p, len(got))
		}
	}
	// The largest cursor there is: nothing comes after it.
	if got := bothHistories(t, gw, ann, "g:team", map[string]any{"after": uint64(math.MaxUint64), "limit": 3}); len(got) != 0 {
		t.Errorf("history after 2^64-1: %d frames (%s), want none", len(got), seqList(got))
	}
	// Large limits are clamped.
	sameFrames(t, "limit 1000000", bothHistories(t, gw, ann, "g:team", map[string]any{"limit": 1000000}), live[total-200:])
	// An empty answer is an empty array, not null.
	if _, _, body := httpHistory(t, gw, ann.token, "g:team", fmt.Sprint("before=", s(0))); !bytes.Contains(body, []byte(`"messages":[]`)) {
		t.Fatalf("empty history body %s", body)
	}

	// Paging reconstructs the whole conversation, without gaps or repeats.
	sameFrames(t, "paging backward by 25", pageBackward(t, gw, ann, "g:team", 25), live)
	sameFrames(t, "paging backward by 7", pageBackward(t, gw, ben, "g:team", 7), live)
	sameFrames(t, "paging forward by 25", pageForward(t, gw, ann, "g:team", 25), live)
	sameFrames(t, "paging backward by 200", pageBackward(t, gw, ann, "g:team", 200), live)

	// A direct conversation: by conv id as is and URL-escaped.
	var dmLive []gt.Frame
	for len(dmLive) < 20 {
		dmLive = append(dmLive, event(t, cat.c, func(f gt.Frame) bool { return f.Str("conv") == "dm:ann:cat" }))
	}
	ws := wsHistory(t, cat, "dm:ann:cat", nil)
	sameFrames(t, "dm history", ws, dmLive)
	for _, p := range []string{"dm:ann:cat", "dm%3Aann%3Acat", url.PathEscape("dm:ann:cat")} {
		st, h, body := httpHistory(t, gw, cat.token, p, "")
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, st, body)
		}
		sameFrames(t, "GET "+p, h, dmLive)
	}
	if st, h, body := httpHistory(t, gw, ann.token, "g%3Ateam", "limit=5"); st != http.StatusOK {
		t.Fatalf("GET g%%3Ateam: %d %s", st, body)
	} else {
		sameFrames(t, "escaped group", h, live[total-5:])
	}

	// Bad limits.
	for _, l := range []any{0, -1, "ten", 1.5, "5"} {
		ann.fails("bad_request", map[string]any{"cmd": "history", "conv": "g:team", "limit": l})
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "limit=1.5", "limit=0x10", "before=x", "after=-3", "before=1e3"} {
		st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/g:team/messages?"+q, ann.token, nil, nil)
		checkHTTPError(t, "GET ?"+q, st, hdr, body, http.StatusBadRequest, "bad_request")
	}
	for _, b := range []any{-1, "x"} {
		ann.fails("bad_request", map[string]any{"cmd": "history", "conv": "g:team", "before": b})
	}

	// Authentication, conversation ids, membership.
	for _, tok := range []string{"", "garbage"} {
		st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/g:team/messages", tok, nil, nil)
		checkHTTPError(t, "no token", st, hdr, body, http.StatusUnauthorized, "unauthorized")
	}
	for _, c := range []string{"room1", "g:Team", "g:", "dm:cat:ann", "dm:ann", "dm:ann:ann", "dm:ann:Cat", "g:a.b", "g%3Ateam.x", "g%3A%2A"} {
		st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/"+c+"/messages", ann.token, nil, nil)
		checkHTTPError(t, "conv "+c, st, hdr, body, http.StatusBadRequest, "bad_request")
		if strings.Contains(c, "%") {
			continue
		}
		ann.fails("bad_request", map[string]any{"cmd": "history", "conv": c})
	}
	ann.fails("bad_request", map[string]any{"cmd": "history"})
	for _, c := range []string{"g:team", "dm:ann:ben", "g:nothing"} {
		st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/"+c+"/messages", mal.token, nil, nil)
		checkHTTPError(t, "non-member "+c, st, hdr, body, http.StatusForbidden, "forbidden")
		mal.fails("forbidden", map[string]any{"cmd": "history", "conv": c})
	}
	// cat left: forbidden now.
	cat.fails("forbidden", map[string]any{"cmd": "history", "conv": "g:team"})
	// A conversation without events yet: an empty history.
	if got := bothHistories(t, gw, mal, "dm:ann:mal", nil); len(got) != 0 {
		t.Fatalf("history of an empty dm: %v", got)
	}
}

// TestHistoryPagingAcrossInterleavedTraffic spaces a conversation's events far apart in the log,
// so that a page's events are not found in the first read window.
func TestHistoryPagingAcrossInterleavedTraffic(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	ann, ben, noisy := e.user("ann", 0), e.user("ben", 0), e.user("noisy", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:quiet", "members": []string{"ben"}})
	noisy.ok(map[string]any{"cmd": "create", "conv": "g:loud", "members": []string{}})
	const rounds, noise = 120, 30
	for r := 0; r < rounds; r++ {
		sendMany(t, noisy, conv("g:loud"), noise, fmt.Sprint("n", r))
		noisy.c.Drop()
		ann.msg(conv("g:quiet"), fmt.Sprint("quiet ", r), fmt.Sprint("q", r))
		if r%20 == 0 {
			ann.c.Drop()
		}
	}
	live := events(t, ben.c, 2+rounds)
	for i := 3; i < len(live); i++ {
		if gap := live[i].Seq() - live[i-1].Seq(); gap <= noise {
			t.Fatalf("events %d and %d only %d apart: the traffic did not interleave", i-1, i, gap)
		}
	}
	sameFrames(t, "default", bothHistories(t, gw, ann, "g:quiet", nil), live[len(live)-50:])
	sameFrames(t, "limit 200", bothHistories(t, gw, ann, "g:quiet", map[string]any{"limit": 200}), live)
	sameFrames(t, "before, limit 5", bothHistories(t, gw, ann, "g:quiet", map[string]any{"limit": 5, "before": live[60].Seq()}), live[55:60])
	sameFrames(t, "after, limit 5", bothHistories(t, gw, ann, "g:quiet", map[string]any{"limit": 5, "after": live[60].Seq()}), live[61:66])
	sameFrames(t, "paging backward by 25", pageBackward(t, gw, ann, "g:quiet", 25), live)
	sameFrames(t, "paging backward by 5", pageBackward(t, gw, ben, "g:quiet", 5), live)
	sameFrames(t, "paging backward by 1", pageBackward(t, gw, ben, "g:quiet", 1), live)
	sameFrames(t, "paging forward by 25", pageForward(t, gw, ann, "g:quiet", 25), live)
	// The busy conversation pages as well.
	loud := pageBackward(t, gw, noisy, "g:loud", 200)
	if len(loud) != 1+rounds*noise {
		t.Fatalf("g:loud paged to %d events, want %d", len(loud), 1+rounds*noise)
	}
	for i := 1; i < len(loud); i++ {
		if loud[i].Seq() <= loud[i-1].Seq() {
			t.Fatalf("g:loud paging: seq %d after %d", loud[i].Seq(), loud[i-1].Seq())
		}
	}
}
