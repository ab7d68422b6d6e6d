package archiver

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/analytics"
)

func askEvents(t *testing.T, e *env, rq schemas.ArchiveEventsRequest) schemas.ArchiveEventsReply {
	t.Helper()
	data, err := json.Marshal(rq)
	if err != nil {
		t.Fatal(err)
	}
	return askEventsRaw(t, e, data)
}

func askEventsRaw(t *testing.T, e *env, data []byte) schemas.ArchiveEventsReply {
	t.Helper()
	msg, err := e.nc.Request(schemas.ArchiveEventsRq, data, wait)
	if err != nil {
		t.Fatalf("events request: %v", err)
	}
	var rp schemas.ArchiveEventsReply
	if err := json.Unmarshal(msg.Data, &rp); err != nil {
		t.Fatalf("events answer %s: %v", msg.Data, err)
	}
	return rp
}

// expectEvents is the answer to rq computed by brute force over the log: the same rules, written
// from the protocol's side (schemas.Event.VisibleTo), not from the SQL.
func expectEvents(log map[uint64][]byte, rq schemas.ArchiveEventsRequest, archived uint64) []schemas.ArchivedEvent {
	ranges := map[string]schemas.ArchiveConv{}
	for _, c := range rq.Convs {
		ranges[c.Conv] = c
	}
	var seqs []uint64
	for seq := range log {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	if rq.Desc {
		slices.Reverse(seqs)
	}
	out := []schemas.ArchivedEvent{}
	for _, seq := range seqs {
		ev, err := schemas.DecodeEvent(log[seq])
		if err != nil || !ev.IsConvEvent() || seq > archived || seq <= rq.After || (rq.Before != 0 && seq >= rq.Before) {
			continue
		}
		c, ok := ranges[ev.Conv]
		if !ok {
			continue
		}
		inRange := seq >= c.From && (c.To == 0 || seq < c.To)
		own := ev.Type == schemas.TypeMember && ev.User == rq.User
		if !(inRange || own) || !ev.VisibleTo(rq.User) {
			continue
		}
		out = append(out, schemas.ArchivedEvent{Seq: seq, Data: log[seq]})
		if len(out) == rq.Limit {
			break
		}
	}
	return out
}

func render(evs []schemas.ArchivedEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%d %s\n", ev.Seq, ev.Data)
	}
	return b.String()
}

// Events requests answer exactly what the visibility rules allow (membership ranges, own member
// events outside them, private messages and the edits, deletes and reactions of them only to
// sender, target and author), paged ascending and descending with After, Before and Limit: every
// answer equals a brute-force filter over the log.
func TestEventsRequestsEqualBruteForce(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	w := newWorld(e, 3)
	w.build(1500)
	last := e.lastSeq()
	in := e.start(e.config())
	e.waitArchived(last)
	eventually(t, "the instance knows the archived seq", func() bool { return in.svc.floor.Load() >= last })

	convs := []string{"g:alpha", "g:beta", "g:gamma"}
	for i, a := range w.users {
		for _, b := range w.users[i+1:] {
			convs = append(convs, "dm:"+a+":"+b)
		}
	}
	random := func(seed uint64) {
		t.Helper()
		r := rand.New(rand.NewPCG(seed, 8))
		bound := func() uint64 {
			if r.IntN(3) == 0 {
				return 0
			}
			return uint64(r.IntN(int(last) + 10))
		}
		for i := range 200 {
			rq := schemas.ArchiveEventsRequest{User: w.pick(w.users), Limit: 1 + r.IntN(80), Desc: r.IntN(2) == 0}
			for _, c := range convs {
				if r.IntN(3) == 0 {
					continue
				}
				ac := schemas.ArchiveConv{Conv: c}
				if r.IntN(2) == 0 {
					ac.From = bound()
					if to := bound(); to != 0 && to >= ac.From {
						ac.To = to
					}
				}
				rq.Convs = append(rq.Convs, ac)
			}
			if len(rq.Convs) == 0 {
				rq.Convs = []schemas.ArchiveConv{{Conv: "g:alpha"}}
			}
			switch r.IntN(4) {
			case 0:
				rq.After = bound()
			case 1:
				rq.Before = bound()
			case 2:
				rq.After, rq.Before = bound(), bound()
			}
			rp := askEvents(t, e, rq)
			if rp.ErrCode != "" {
				t.Fatalf("request %d %+v: %s %s", i, rq, rp.ErrCode, rp.ErrMsg)
			}
			if rp.Archived != last {
				t.Fatalf("archived %d, want %d", rp.Archived, last)
			}
			want := expectEvents(w.log, rq, last)
			if got := render(rp.Events); got != render(want) {
				t.Fatalf("request %d %+v:\ngot\n%s\nwant\n%s", i, rq, got, render(want))
			}
		}
	}
	random(7)
	// Again with tiny reading windows: most pages then take several windows.
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.windows = windowing{min: 1, perEvent: 1, growth: 2}
	in = e.start(cfg)
	eventually(t, "the instance knows the archived seq", func() bool { return in.svc.floor.Load() >= last })
	random(9)

	// Paging a whole conversation both ways, limit by limit, gives every visible event once.
	for _, user := range []string{"ann", "ben"} {
		rq := schemas.ArchiveEventsRequest{User: user, Convs: []schemas.ArchiveConv{{Conv: "g:alpha"}, {Conv: "g:beta", From: last / 3},
			{Conv: "dm:ann:ben"}}, Limit: 7}
		want := expectEvents(w.log, schemas.ArchiveEventsRequest{User: user, Convs: rq.Convs, Limit: 1 << 30}, last)
		var up []schemas.ArchivedEvent
		for {
			rp := askEvents(t, e, rq)
			up = append(up, rp.Events...)
			if len(rp.Events) < rq.Limit {
				break
			}
			rq.After = rp.Events[len(rp.Events)-1].Seq
		}
		if render(up) != render(want) {
			t.Fatalf("%s paging up:\ngot\n%s\nwant\n%s", user, render(up), render(want))
		}
		rq.After, rq.Desc = 0, true
		var down []schemas.ArchivedEvent
		for {
			rp := askEvents(t, e, rq)
			down = append(down, rp.Events...)
			if len(rp.Events) < rq.Limit {
				break
			}
			rq.Before = rp.Events[len(rp.Events)-1].Seq
		}
		slices.Reverse(down)
		if render(down) != render(want) {
			t.Fatalf("%s paging down:\ngot\n%s\nwant\n%s", user, render(down), render(want))
		}
	}
}

// Events requests are validated before anything reaches SQL.
func TestEventsRequestValidation(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	e.start(e.config())
	ok := []schemas.ArchiveConv{{Conv: "g:alpha"}}
	many := make([]schemas.ArchiveConv, schemas.MaxArchiveConvs+1)
	for i := range many {
		many[i] = schemas.ArchiveConv{Conv: fmt.Sprintf("g:g%d", i)}
	}
	for name, rq := range map[string]schemas.ArchiveEventsRequest{
		"no user":            {Convs: ok, Limit: 1},
		"upper-case user":    {User: "Ann", Convs: ok, Limit: 1},
		"quote in user":      {User: "a'b", Convs: ok, Limit: 1},
		"no conversation":    {User: "ann", Limit: 1},
		"bad conversation":   {User: "ann", Convs: []schemas.ArchiveConv{{Conv: "g:a') OR 1=1 --"}}, Limit: 1},
		"non-canonical dm":   {User: "ann", Convs: []schemas.ArchiveConv{{Conv: "dm:ben:ann"}}, Limit: 1},
		"twice":              {User: "ann", Convs: []schemas.ArchiveConv{{Conv: "g:a"}, {Conv: "g:a"}}, Limit: 1},
		"range backwards":    {User: "ann", Convs: []schemas.ArchiveConv{{Conv: "g:a", From: 10, To: 5}}, Limit: 1},
		"too many":           {User: "ann", Convs: many, Limit: 1},
		"zero limit":         {User: "ann", Convs: ok},
		"limit above a page": {User: "ann", Convs: ok, Limit: schemas.MaxArchiveEventsPage + 1},
	} {
		if rp := askEvents(t, e, rq); rp.ErrCode != schemas.CodeBadRequest || rp.Events == nil {
			t.Errorf("%s: %+v", name, rp)
		}
	}
	if rp := askEventsRaw(t, e, []byte("{not json")); rp.ErrCode != schemas.CodeBadRequest {
		t.Errorf("bad JSON: %+v", rp)
	}
	// The largest request is accepted: a thousand long conversation ids.
	long := make([]schemas.ArchiveConv, schemas.MaxArchiveConvs)
	for i := range long {
		long[i] = schemas.ArchiveConv{Conv: fmt.Sprintf("dm:%s%04d:%s", strings.Repeat("a", 60), i, strings.Repeat("z", 64)),
			From: uint64(i)}
	}
	if rp := askEvents(t, e, schemas.ArchiveEventsRequest{User: "ann", Convs: long, Limit: schemas.MaxArchiveEventsPage}); rp.ErrCode != "" {
		t.Fatalf("largest request: %s %s", rp.ErrCode, rp.ErrMsg)
	}
}

// Analytics requests reach the analytics package and come back as its table; an unknown report
// is a bad request.
func TestAnalyticsRequests(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	w := newWorld(e, 4)
	w.build(200)
	e.start(e.config())
	e.waitArchived(e.lastSeq())
	ask := func(rq schemas.AnalyticsRequest) schemas.AnalyticsReply {
		t.Helper()
		data, _ := json.Marshal(rq)
		msg, err := e.nc.Request(schemas.ArchiveAnalyticsRq, data, wait)
		if err != nil {
			t.Fatal(err)
		}
		var rp schemas.AnalyticsReply
		if err := json.Unmarshal(msg.Data, &rp); err != nil {
			t.Fatalf("%s: %v", msg.Data, err)
		}
		return rp
	}
	for _, name := range analytics.Names() {
		if rp := ask(schemas.AnalyticsRequest{Report: name}); rp.ErrCode != "" || len(rp.Columns) == 0 {
			t.Fatalf("report %s: %+v", name, rp)
		}
	}
	if rp := ask(schemas.AnalyticsRequest{Report: "no-such-report"}); rp.ErrCode != schemas.CodeBadRequest {
		t.Fatalf("unknown report: %+v", rp)
	}
	msg, err := e.nc.Request(schemas.ArchiveAnalyticsRq, []byte("{"), wait)
	if err != nil {
		t.Fatal(err)
	}
	var rp schemas.AnalyticsReply
	if err := json.Unmarshal(msg.Data, &rp); err != nil || rp.ErrCode != schemas.CodeBadRequest {
		t.Fatalf("bad JSON: %s", msg.Data)
	}
}
