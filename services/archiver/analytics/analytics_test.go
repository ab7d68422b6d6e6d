package analytics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/analytics"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/eventchat/chat/services/archiver/localch"
)

const db = "chat_analytics_test"

// startClickHouse starts a local ClickHouse for the test and applies the archive's schema. A
// machine without ClickHouse fails the test: these reports are only proven against a real server.
func startClickHouse(t *testing.T, ctx context.Context) driver.Conn {
	t.Helper()
	srv, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if errors.Is(err, localch.ErrNotInstalled) {
		t.Fatalf("these tests need a real ClickHouse server and none is installed: "+
			"apt-get install clickhouse-server clickhouse-client (%v)", err)
	}
	if err != nil {
		t.Fatalf("start ClickHouse: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := chstore.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	return conn
}

// ev is one generated log entry as the test knows it, independently of the archive's rows.
type ev struct {
	seq     uint64
	subject string
	e       schemas.Event
	at      time.Time // e.Ts parsed (ms precision); for a corrupt entry, the stored time
	corrupt bool
}

func (x ev) ordinary() bool { return !x.corrupt && x.e.Type == schemas.TypeMessage && x.e.Kind == "" }

var (
	users  = []string{"ann", "ben", "cat", "dan", "eve", "fay", "gus"}
	groups = map[string][]string{
		"team": {"ann", "ben", "cat", "dan"},
		"ops":  {"cat", "eve", "fay"},
		"fun":  {"ann", "ben", "cat", "dan", "eve", "fay", "gus"},
	}
	// Direct conversations and who may write in them: two are one-sided (never answered).
	dms = map[string][]string{
		"dm:ann:ben": {"ann", "ben"},
		"dm:ann:cat": {"ann", "cat"},
		"dm:ben:dan": {"ben", "dan"},
		"dm:cat:eve": {"cat", "eve"},
		"dm:dan:fay": {"dan", "fay"},
		"dm:eve:gus": {"eve", "gus"},
		"dm:ann:gus": {"ann"},
		"dm:ben:fay": {"fay"},
	}
	msgTypes = []string{"text", "text", "text", "image", "audio", "file"}
	// Monday 2026-01-19: four weeks, across a month (and partition) boundary.
	genStart = time.Date(2026, 1, 19, 0, 0, 0, 0, time.UTC)
)

// generate builds a log: memberships and contacts first, then four weeks of messages in groups
// and direct conversations (some private, some stamped out of seq order as a skewed gateway
// clock would), edits, deletes (with their gone markers), reactions, reads, member changes and
// one entry that does not decode.
func generate() []ev {
	rng := rand.New(rand.NewPCG(5, 55))
	var out []ev
	add := func(subject string, e schemas.Event, at time.Time) {
		e.Ts = schemas.FormatTime(at)
		at, _ = time.Parse(time.RFC3339Nano, e.Ts)
		out = append(out, ev{seq: uint64(len(out) + 1), subject: subject, e: e, at: at})
	}
	conv := func(s string) schemas.Conv {
		c, err := schemas.ParseConv(s)
		if err != nil {
			panic(err)
		}
		return c
	}
	t := genStart.Add(-2 * time.Hour)
	gnames := mapsKeys(groups)
	for _, g := range gnames {
		for _, u := range groups[g] {
			t = t.Add(time.Second)
			add(schemas.MemberSubject(g), schemas.Event{Type: schemas.TypeMember, Conv: "g:" + g, User: u,
				Action: schemas.ActionJoined, By: groups[g][0]}, t)
		}
	}
	add(schemas.ContactSubject("ann"), schemas.Event{Type: schemas.TypeContact, From: "ann", User: "ben", Action: schemas.ContactAdd}, t)

	dmNames := mapsKeys(dms)
	var convs []string
	for _, g := range gnames {
		convs = append(convs, "g:"+g)
	}
	convs = append(convs, dmNames...)
	members := func(c string) []string {
		if strings.HasPrefix(c, "g:") {
			return groups[c[2:]]
		}
		return dms[c]
	}
	var msgs []ev // ordinary messages so far
	message := func(c, from string, at time.Time, private bool) {
		e := schemas.Event{Type: schemas.TypeMessage, Conv: c, From: from, Mid: fmt.Sprintf("m%d", len(out)),
			MsgType: msgTypes[rng.IntN(len(msgTypes))], Msg: "hello"}
		if private {
			ms := members(c)
			for e.Tid == "" || e.Tid == from {
				e.Tid = ms[rng.IntN(len(ms))]
			}
		}
		add(schemas.ContentSubject(conv(c)), e, at)
		msgs = append(msgs, out[len(out)-1])
	}
	// Messages on the exact edges of a day.
	t = genStart
	message("g:team", "ann", t, false)
	message("g:team", "ben", t.Add(24*time.Hour-time.Millisecond), false)

	end := genStart.AddDate(0, 0, 28)
	for t.Before(end) {
		t = t.Add(time.Duration(rng.Int64N(int64(90 * time.Minute))))
		switch p := rng.IntN(100); {
		case p < 70:
			c := convs[rng.IntN(len(convs))]
			ms := members(c)
			from := ms[rng.IntN(len(ms))]
			at := t
			if rng.IntN(20) == 0 {
				at = t.Add(-time.Duration(rng.Int64N(int64(5 * time.Second)))) // a skewed clock
			}
			message(c, from, at, strings.HasPrefix(c, "g:") && rng.IntN(5) == 0)
		case p < 85 && len(msgs) > 0: // edit, delete or reaction of an earlier message
			m := msgs[rng.IntN(len(msgs))]
			e := schemas.Event{Type: schemas.TypeMessage, Conv: m.e.Conv, Ref: m.seq, RefFrom: m.e.From, Tid: m.e.Tid,
				MsgType: m.e.MsgType}
			switch p % 3 {
			case 0:
				e.Kind, e.From, e.Msg = schemas.KindEdit, m.e.From, "edited"
			case 1:
				e.Kind, e.From = schemas.KindDelete, m.e.From
				e.MsgType = ""
				add(schemas.GoneSubject(conv(m.e.Conv), m.seq), schemas.Event{Type: schemas.TypeGone, Conv: m.e.Conv, Ref: m.seq}, t)
			default:
				ms := members(m.e.Conv)
				e.Kind, e.From, e.Emoji = schemas.KindReact, ms[rng.IntN(len(ms))], "+1"
			}
			add(schemas.ContentSubject(conv(m.e.Conv)), e, t)
		case p < 95 && len(msgs) > 0:
			m := msgs[rng.IntN(len(msgs))]
			ms := members(m.e.Conv)
			u := ms[rng.IntN(len(ms))]
			add(schemas.ReadSubject(u), schemas.Event{Type: schemas.TypeRead, Conv: m.e.Conv, From: u, Seq: m.seq}, t)
		case p < 98:
			g := gnames[rng.IntN(len(gnames))]
			add(schemas.MemberSubject(g), schemas.Event{Type: schemas.TypeMember, Conv: "g:" + g,
				User: users[rng.IntN(len(users))], Action: schemas.ActionInvited, By: groups[g][0]}, t)
		default:
			add(schemas.ContactSubject("cat"), schemas.Event{Type: schemas.TypeContact, From: "cat",
				User: users[rng.IntN(len(users))], Action: schemas.ContactAdd}, t)
		}
	}
	out = append(out, ev{seq: uint64(len(out) + 1), subject: "chat.weird", corrupt: true, at: genStart.Add(36 * time.Hour)})
	return out
}

func mapsKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func rowsOf(evs []ev) []chstore.Row {
	var rows []chstore.Row
	for _, x := range evs {
		var data []byte
		if x.corrupt {
			data = []byte("not json")
		} else {
			var err error
			if data, err = json.Marshal(x.e); err != nil {
				panic(err)
			}
		}
		rows = append(rows, chstore.RowOf(x.seq, x.subject, data, x.at))
	}
	return rows
}

// window is a request's filter as the test computes it.
type window struct {
	since, until string
	conv         string
	limit        int
}

func (w window) in(at time.Time) bool {
	if w.since != "" && at.Before(parseBound(w.since)) {
		return false
	}
	if w.until != "" && !at.Before(parseBound(w.until)) {
		return false
	}
	return true
}

func parseBound(s string) time.Time {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// selected are the ordinary messages in w (and in w.conv when the report takes a conversation),
// each seq once.
func selected(evs []ev, w window, useConv bool) []ev {
	seen := map[uint64]bool{}
	var out []ev
	for _, x := range evs {
		if !x.ordinary() || !w.in(x.at) || (useConv && w.conv != "" && x.e.Conv != w.conv) || seen[x.seq] {
			continue
		}
		seen[x.seq] = true
		out = append(out, x)
	}
	return out
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func monday(t time.Time) string {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day(d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7)))
}

type table struct {
	cols []string
	rows [][]any
}

func expectMessagesPerDay(evs []ev, w window) table {
	n := map[string]int{}
	for _, x := range selected(evs, w, true) {
		n[day(x.at)]++
	}
	t := table{cols: []string{"day", "messages"}}
	for _, d := range mapsKeys(n) {
		t.rows = append(t.rows, []any{d, n[d]})
	}
	return t
}

func expectActiveUsers(evs []ev, w window) table {
	days, weeks := map[string]map[string]bool{}, map[string]map[string]bool{}
	put := func(m map[string]map[string]bool, k, u string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][u] = true
	}
	for _, x := range selected(evs, w, true) {
		put(days, day(x.at), x.e.From)
		put(weeks, monday(x.at), x.e.From)
	}
	t := table{cols: []string{"period", "start", "users"}}
	for _, d := range mapsKeys(days) {
		t.rows = append(t.rows, []any{"day", d, len(days[d])})
	}
	for _, d := range mapsKeys(weeks) {
		t.rows = append(t.rows, []any{"week", d, len(weeks[d])})
	}
	return t
}

func expectBusiest(evs []ev, w window) table {
	type c struct {
		conv    string
		n       int
		senders map[string]bool
	}
	by := map[string]*c{}
	for _, x := range selected(evs, w, false) {
		if by[x.e.Conv] == nil {
			by[x.e.Conv] = &c{conv: x.e.Conv, senders: map[string]bool{}}
		}
		by[x.e.Conv].n++
		by[x.e.Conv].senders[x.e.From] = true
	}
	var list []*c
	for _, v := range by {
		list = append(list, v)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].conv < list[j].conv
	})
	limit := w.limit
	if limit == 0 {
		limit = 20
	}
	t := table{cols: []string{"conv", "messages", "senders"}}
	for i, v := range list {
		if i == limit {
			break
		}
		t.rows = append(t.rows, []any{v.conv, v.n, len(v.senders)})
	}
	return t
}

// expectFirstResponse: a direct conversation belongs to the window when its first ordinary
// message (lowest seq, at any time) is in it; its response time is from that message's time to
// the time of the other participant's first message (at any time), at least 0.
func expectFirstResponse(evs []ev, w window) table {
	byConv := map[string][]ev{}
	for _, x := range selected(evs, window{}, false) {
		if strings.HasPrefix(x.e.Conv, "dm:") {
			byConv[x.e.Conv] = append(byConv[x.e.Conv], x)
		}
	}
	var times []int64
	unanswered := 0
	for _, list := range byConv {
		sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
		first := list[0]
		if !w.in(first.at) {
			continue
		}
		i := slices.IndexFunc(list, func(x ev) bool { return x.e.From != first.e.From })
		if i < 0 {
			unanswered++
			continue
		}
		times = append(times, max(0, list[i].at.UnixMilli()-first.at.UnixMilli()))
	}
	slices.Sort(times)
	q := func(level float64) any {
		if len(times) == 0 {
			return nil
		}
		return times[int(level*float64(len(times)))]
	}
	return table{cols: []string{"conversations", "unanswered", "median_ms", "p90_ms"},
		rows: [][]any{{len(times), unanswered, q(0.5), q(0.9)}}}
}

func expectByType(evs []ev, w window) table {
	n := map[string]int{}
	for _, x := range selected(evs, w, true) {
		n[x.e.MsgType]++
	}
	types := mapsKeys(n)
	sort.Slice(types, func(i, j int) bool {
		if n[types[i]] != n[types[j]] {
			return n[types[i]] > n[types[j]]
		}
		return types[i] < types[j]
	})
	t := table{cols: []string{"type", "messages"}}
	for _, ty := range types {
		t.rows = append(t.rows, []any{ty, n[ty]})
	}
	return t
}

// render prints a table's cells as text, so a uint64 from ClickHouse and an int from the test
// compare equal.
func render(cols []string, rows [][]any) string {
	var b strings.Builder
	b.WriteString(strings.Join(cols, "|") + "\n")
	for _, r := range rows {
		for i, v := range r {
			if i > 0 {
				b.WriteByte('|')
			}
			if v == nil {
				b.WriteString("null")
			} else {
				fmt.Fprint(&b, v)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Each report, over several windows (none, whole days, millisecond bounds, one side open), per
// conversation where it takes one, equals what the test counts from the generated events; and
// stays the same after a third of the rows are stored a second time.
func TestReportsEqualIndependentCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := startClickHouse(t, ctx)

	evs := generate()
	var ordinary, private, other int
	for _, x := range evs {
		switch {
		case x.ordinary() && x.e.Tid != "":
			private++
		case x.ordinary():
			ordinary++
		default:
			other++
		}
	}
	t.Logf("generated %d events: %d ordinary messages, %d private, %d others", len(evs), ordinary, private, other)
	if private == 0 || other < 100 {
		t.Fatal("the generated log lacks private messages or other events")
	}
	rows := rowsOf(evs)
	// Stop merges first, so the duplicates inserted later stay in the table (no report may rely
	// on a merge having removed them).
	if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+db+"."+chstore.EventsTable); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(rows); i += 250 {
		if err := chstore.Insert(ctx, conn, db, rows[i:min(i+250, len(rows))]); err != nil {
			t.Fatal(err)
		}
	}

	msgs := selected(evs, window{}, false)
	at := func(i int) string { return msgs[i].at.Format("2006-01-02T15:04:05.000Z") }
	windows := []window{
		{},
		{since: "2026-01-26", until: "2026-02-09"},
		{since: at(len(msgs) / 5), until: at(len(msgs) * 3 / 5)}, // millisecond bounds on messages
		{since: "2026-01-31T12:30:00+02:00"},                     // an offset, converted to UTC
		{until: "2026-02-02"},
		{since: "2026-01-19", until: "2026-01-20"}, // one day: the messages on its edges
		{since: "2027-01-01"},                      // nothing
	}
	type check struct {
		report string
		w      window
		want   table
	}
	var checks []check
	for _, w := range windows {
		for _, c := range []string{"", "g:team", "dm:ann:ben", "g:nobody"} {
			cw := w
			cw.conv = c
			checks = append(checks,
				check{analytics.MessagesPerDay, cw, expectMessagesPerDay(evs, cw)},
				check{analytics.ActiveUsers, cw, expectActiveUsers(evs, cw)},
				check{analytics.MessagesByType, cw, expectByType(evs, cw)})
		}
		for _, l := range []int{0, 3, 1000} {
			lw := w
			lw.limit = l
			checks = append(checks, check{analytics.BusiestConversations, lw, expectBusiest(evs, lw)})
		}
		checks = append(checks, check{analytics.FirstResponseTime, w, expectFirstResponse(evs, w)})
	}
	// The data set exercises what the reports distinguish.
	if fr := expectFirstResponse(evs, window{}); fr.rows[0][0].(int) < 4 || fr.rows[0][1].(int) < 2 {
		t.Fatalf("first-response data set too thin: %v", fr.rows)
	}
	if len(expectBusiest(evs, window{}).rows) < 10 || len(expectMessagesPerDay(evs, window{}).rows) < 28 {
		t.Fatal("busiest/per-day data set too thin")
	}

	run := func(pass string) {
		for _, c := range checks {
			req := schemas.AnalyticsRequest{Report: c.report, Since: c.w.since, Until: c.w.until, Conv: c.w.conv, Limit: c.w.limit}
			got, err := analytics.Run(ctx, conn, db, req)
			if err != nil || got.ErrCode != "" {
				t.Fatalf("%s %+v: %v %s %s", pass, req, err, got.ErrCode, got.ErrMsg)
			}
			if g, w := render(got.Columns, got.Rows), render(c.want.cols, c.want.rows); g != w {
				t.Errorf("%s %+v:\ngot:\n%s\nwant:\n%s", pass, req, g, w)
			}
		}
	}
	run("unique seqs")

	// Store every third row again: the table now holds duplicated seqs, unmerged.
	var dup []chstore.Row
	for i := 0; i < len(rows); i += 3 {
		dup = append(dup, rows[i])
	}
	if err := chstore.Insert(ctx, conn, db, dup); err != nil {
		t.Fatal(err)
	}
	var n, distinct uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM "+db+".events").Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct+uint64(len(dup)) || distinct != uint64(len(evs)) {
		t.Fatalf("after the duplicates: %d rows, %d seqs (want %d, %d)", n, distinct, len(evs)+len(dup), len(evs))
	}
	run("duplicated seqs")
	t.Logf("%d report runs checked twice", len(checks))

	// A ClickHouse failure is an error, not a reply.
	if _, err := analytics.Run(ctx, conn, "no_such_db", schemas.AnalyticsRequest{Report: analytics.MessagesPerDay}); err == nil {
		t.Fatal("a query on a missing database did not fail")
	}
}

// Bad parameters are answered with bad_request before ClickHouse is asked (the connection here
// is nil), and an invalid database name is an error.
func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	for _, req := range []schemas.AnalyticsRequest{
		{},
		{Report: "messages-per-week"},
		{Report: analytics.MessagesPerDay, Since: "yesterday"},
		{Report: analytics.MessagesPerDay, Since: "2026-13-01"},
		{Report: analytics.MessagesPerDay, Until: "2026-01-01 10:00:00"},
		{Report: analytics.MessagesPerDay, Since: "2026-01-02", Until: "2026-01-02"},
		{Report: analytics.MessagesPerDay, Since: "2026-01-02T00:00:01Z", Until: "2026-01-02"},
		{Report: analytics.MessagesPerDay, Since: "1969-12-31"},
		{Report: analytics.MessagesPerDay, Until: "2200-01-01"},
		{Report: analytics.MessagesPerDay, Conv: "dm:ben:ann"},
		{Report: analytics.ActiveUsers, Conv: "g:x'; DROP TABLE events; --"},
		{Report: analytics.MessagesByType, Conv: "team"},
		{Report: analytics.BusiestConversations, Conv: "g:team"},
		{Report: analytics.FirstResponseTime, Conv: "dm:ann:ben"},
		{Report: analytics.BusiestConversations, Limit: -1},
		{Report: analytics.BusiestConversations, Limit: 1001},
		{Report: analytics.MessagesPerDay, Limit: 5},
	} {
		got, err := analytics.Run(ctx, nil, db, req)
		if err != nil || got.ErrCode != schemas.CodeBadRequest || got.ErrMsg == "" {
			t.Errorf("%+v: %+v, %v", req, got, err)
		}
	}
	if _, err := analytics.Run(ctx, nil, "chat; DROP", schemas.AnalyticsRequest{Report: analytics.MessagesPerDay}); err == nil {
		t.Error("an invalid database name was accepted")
	}
	if got := analytics.Names(); len(got) != 5 || got[0] != analytics.MessagesPerDay {
		t.Errorf("Names = %v", got)
	}
}
