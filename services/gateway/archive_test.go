package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ---- a test double of the archiver's NATS contract (schemas/archive.go) ----

// archiveDouble answers ArchiveEventsRequest on chat.archive.req.events (queue group archiver) as
// the contract says, from a copy of the log the test captured before purging the stream itself.
// The real archiver answers from ClickHouse; this double is what the gateway's tests may rely on.
type archiveDouble struct {
	t  *testing.T
	nc *nats.Conn

	mu       sync.Mutex
	log      []archivedMsg // ascending by seq
	archived uint64        // the answers' Archived
	// perReply caps the events of an answer below Limit (an archiver that caps answers by size).
	perReply int
	// leaky ignores the visibility rules: a faulty archiver, for the gateway's own check.
	leaky bool
	// silent takes requests and never answers.
	silent bool
	// onRequest runs before each answer, with the request's number (from 1).
	onRequest func(n int, req schemas.ArchiveEventsRequest)
	requests  []schemas.ArchiveEventsRequest
}

type archivedMsg struct {
	seq  uint64
	data []byte
}

// startArchive subscribes a double on the env's NATS. It holds no events until capture.
func startArchive(t *testing.T, e *env) *archiveDouble {
	t.Helper()
	d := &archiveDouble{t: t, nc: e.natsConn()}
	sub, err := d.nc.QueueSubscribe(schemas.ArchiveEventsRq, schemas.ArchiverQueue, d.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return d
}

// eventsStream opens CHAT_EVENTS from the test's own connection.
func eventsStream(t *testing.T, e *env) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(e.natsConn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := js.Stream(ctx, schemas.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// capture copies the whole stream, as the archiver would have archived it: Archived is its last seq.
func (d *archiveDouble) capture(e *env) {
	d.t.Helper()
	stream := eventsStream(d.t, e)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	info, err := stream.Info(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	if info.State.FirstSeq > 1 {
		d.t.Fatalf("capture after a purge (first seq %d)", info.State.FirstSeq)
	}
	last := info.State.LastSeq
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		d.t.Fatal(err)
	}
	var log []archivedMsg
	for len(log) == 0 || log[len(log)-1].seq < last {
		m, err := cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			d.t.Fatalf("capture: after %d events: %v", len(log), err)
		}
		meta, err := m.Metadata()
		if err != nil {
			d.t.Fatal(err)
		}
		log = append(log, archivedMsg{meta.Sequence.Stream, m.Data()})
	}
	d.mu.Lock()
	d.log, d.archived = log, last
	d.mu.Unlock()
}

func (d *archiveDouble) set(f func(d *archiveDouble)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// asked returns the requests received so far.
func (d *archiveDouble) asked() []schemas.ArchiveEventsRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]schemas.ArchiveEventsRequest(nil), d.requests...)
}

func (d *archiveDouble) handle(m *nats.Msg) {
	var req schemas.ArchiveEventsRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		d.respond(m, schemas.ArchiveEventsReply{ErrCode: schemas.CodeBadRequest, ErrMsg: "undecodable request"})
		return
	}
	d.mu.Lock()
	d.requests = append(d.requests, req)
	n, hook, silent := len(d.requests), d.onRequest, d.silent
	d.mu.Unlock()
	if silent {
		return
	}
	if hook != nil {
		hook(n, req)
	}
	d.respond(m, d.answer(req))
}

func (d *archiveDouble) respond(m *nats.Msg, rep schemas.ArchiveEventsReply) {
	data, err := json.Marshal(rep)
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		d.t.Errorf("archive double: %v", err)
	}
}

// answer is the contract: the conversation events of req.Convs with After < seq < Before that
// req.User may see (seq in [From, To), or the user's own member event; private events only to
// their audience, Event.VisibleTo), at most Limit, oldest first or newest first with Desc, and
// only up to Archived.
func (d *archiveDouble) answer(req schemas.ArchiveEventsRequest) schemas.ArchiveEventsReply {
	if !schemas.ValidUser(req.User) || req.Limit < 1 || req.Limit > schemas.MaxArchiveEventsPage ||
		len(req.Convs) > schemas.MaxArchiveConvs {
		return schemas.ArchiveEventsReply{ErrCode: schemas.CodeBadRequest, ErrMsg: "bad user, limit or conversations"}
	}
	convs := map[string]schemas.ArchiveConv{}
	for _, c := range req.Convs {
		if _, err := schemas.ParseConv(c.Conv); err != nil {
			return schemas.ArchiveEventsReply{ErrCode: schemas.CodeBadRequest, ErrMsg: "bad conversation"}
		}
		convs[c.Conv] = c
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	limit := req.Limit
	if d.perReply > 0 {
		limit = min(limit, d.perReply)
	}
	rep := schemas.ArchiveEventsReply{Events: []schemas.ArchivedEvent{}, Archived: d.archived}
	for i := range d.log {
		m := d.log[i]
		if req.Desc {
			m = d.log[len(d.log)-1-i]
		}
		if m.seq <= req.After || (req.Before != 0 && m.seq >= req.Before) || m.seq > d.archived {
			continue
		}
		e, err := schemas.DecodeEvent(m.data)
		if err != nil || !e.IsConvEvent() {
			continue
		}
		c, ok := convs[e.Conv]
		if !ok {
			continue
		}
		if !d.leaky {
			own := e.Type == schemas.TypeMember && e.User == req.User
			if !own && (m.seq < c.From || (c.To != 0 && m.seq >= c.To)) {
				continue
			}
			if !e.VisibleTo(req.User) {
				continue
			}
		}
		rep.Events = append(rep.Events, schemas.ArchivedEvent{Seq: m.seq, Data: json.RawMessage(m.data)})
		if len(rep.Events) == limit {
			break
		}
	}
	return rep
}

// purgeBelow removes every event below seq from the stream, as the archiver does once they are
// archived, and checks the stream's first seq is then seq.
func purgeBelow(t *testing.T, stream jetstream.Stream, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		t.Fatalf("purge below %d: %v", seq, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != seq {
		t.Fatalf("after purging below %d the stream starts at %d", seq, info.State.FirstSeq)
	}
}

// ---- the traffic the tests page through ----

// archScene is a group with a late joiner, a leaver, private messages, edits, reactions and a
// delete, a direct conversation, and a noisy group that spaces the others' events apart.
type archScene struct {
	e                       *env
	gw                      *gt.Gateway
	ann, ben, cat, dan, eve *user
	seqs                    map[string]uint64 // by mid (ann's team messages: "a<r>")
}

const archRounds = 60

func newArchScene(t *testing.T, mod func(*gateway.Config)) *archScene {
	e := newEnv(t, 1, mod)
	s := &archScene{e: e, gw: e.gws[0], seqs: map[string]uint64{}}
	s.ann, s.ben, s.cat, s.dan, s.eve = e.user("ann", 0), e.user("ben", 0), e.user("cat", 0), e.user("dan", 0), e.user("eve", 0)
	noisy := e.user("noisy", 0)
	s.ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben", "dan"}})
	noisy.ok(map[string]any{"cmd": "create", "conv": "g:loud", "members": []string{}})
	for r := 0; r < archRounds; r++ {
		sendMany(t, noisy, conv("g:loud"), 3, fmt.Sprint("n", r))
		noisy.c.Drop()
		sendMany(t, s.ann, conv("g:team"), 2, fmt.Sprint("x", r))
		s.seqs[fmt.Sprint("a", r)] = s.ann.msg(conv("g:team"), fmt.Sprint("team ", r), fmt.Sprint("a", r)).Seq()
		switch {
		case r%5 == 2:
			s.seqs[fmt.Sprint("p", r)] = s.ann.msg(map[string]any{"conv": "g:team", "tid": "ben"}, fmt.Sprint("psst ben ", r), fmt.Sprint("p", r)).Seq()
		case r%7 == 3:
			s.ben.msg(to("ann"), fmt.Sprint("dm ", r), fmt.Sprint("d", r))
		case r%9 == 4:
			s.ben.ok(react("g:team", s.seqs[fmt.Sprint("a", r-1)], "👍"))
		}
		switch r {
		case 12:
			s.ann.ok(edit("g:team", s.seqs["a3"], "team 3, edited"))
			s.ann.ok(edit("g:team", s.seqs["p7"], "psst ben 7, edited")) // an edit of a private message
			s.ben.ok(react("g:team", s.seqs["p2"], "🤫"))                 // a reaction of the target
		case 16:
			s.ann.ok(del("g:team", s.seqs["a5"]))
		case 20:
			s.ann.ok(map[string]any{"cmd": "invite", "conv": "g:team", "user": "cat"}) // a late joiner
		case 26:
			s.seqs["c26"] = s.cat.msg(map[string]any{"conv": "g:team", "tid": "ann"}, "cat to ann", "c26").Seq()
		case 30:
			s.dan.ok(map[string]any{"cmd": "leave", "conv": "g:team"})
		case 33:
			s.eve.fails("forbidden", map[string]any{"cmd": "join", "conv": "g:team"}) // a private group
		}
	}
	return s
}

// The references: each user's history of a conversation and sync from 0 while the stream still
// keeps everything.
func (s *archScene) historyRef(t *testing.T, u *user, c string) []gt.Frame {
	t.Helper()
	return pageBackward(t, s.gw, u, c, 200)
}

func (s *archScene) syncRef(t *testing.T, u *user) []gt.Frame {
	t.Helper()
	return syncFrom(t, s.e.dial(u.token, 0), 0)
}

func hasMsg(fs []gt.Frame, text string) bool {
	for _, f := range fs {
		if f.Cmd() == "message" && strings.HasPrefix(f.Str("msg"), text) {
			return true
		}
	}
	return false
}

// indexOfSeq is the index of the first frame with seq >= seq.
func indexOfSeq(fs []gt.Frame, seq uint64) int {
	for i, f := range fs {
		if f.Seq() >= seq {
			return i
		}
	}
	return len(fs)
}

// ---- tests ----

// History pages seamlessly across the stream's first seq: every page of every user, backward and
// forward, over WebSocket and HTTP, equals the history read while the stream kept everything.
func TestHistoryAcrossTheArchiveBoundary(t *testing.T) {
	s := newArchScene(t, nil)
	team := map[*user][]gt.Frame{}
	for _, u := range []*user{s.ann, s.ben, s.cat} {
		team[u] = s.historyRef(t, u, "g:team")
	}
	dmRef := s.historyRef(t, s.ann, "dm:ann:ben")
	// The references mean what the test needs: ben is the target of ann's private messages, cat
	// (who joined late) is not, and sees the group from its beginning (docs/protocol.md).
	if !hasMsg(team[s.ben], "psst ben") || hasMsg(team[s.cat], "psst ben") || !hasMsg(team[s.cat], "team 0") ||
		!hasMsg(team[s.cat], "cat to ann") || hasMsg(team[s.ben], "cat to ann") || !hasMsg(team[s.ann], "cat to ann") {
		t.Fatal("the reference histories do not show the private messages as expected")
	}
	if len(team[s.ann]) < 150 || len(dmRef) < 5 {
		t.Fatalf("references too short: %d, %d", len(team[s.ann]), len(dmRef))
	}

	d := startArchive(t, s.e)
	d.capture(s.e)
	boundary := s.seqs["a35"] // after the late join, the private messages to and from cat, and dan's leave
	purgeBelow(t, eventsStream(t, s.e), boundary)

	for _, u := range []*user{s.ann, s.ben, s.cat} {
		ref := team[u]
		sameFrames(t, u.name+" paging backward by 7", pageBackward(t, s.gw, u, "g:team", 7), ref)
		sameFrames(t, u.name+" paging backward by 200", pageBackward(t, s.gw, u, "g:team", 200), ref)
		sameFrames(t, u.name+" paging forward by 25", pageForward(t, s.gw, u, "g:team", 25), ref)
		sameFrames(t, u.name+" default", bothHistories(t, s.gw, u, "g:team", nil), ref[len(ref)-50:])
		// A page whose bounds straddle the boundary, both ways.
		i, j := indexOfSeq(ref, boundary)-20, indexOfSeq(ref, boundary)+20
		between := map[string]any{"after": ref[i].Seq(), "before": ref[j].Seq()}
		sameFrames(t, u.name+" between", bothHistories(t, s.gw, u, "g:team", between), ref[i+1:j])
		sameFrames(t, u.name+" before, limit 30", bothHistories(t, s.gw, u, "g:team", map[string]any{"before": ref[j].Seq(), "limit": 30}), ref[j-30:j])
		sameFrames(t, u.name+" after, limit 30", bothHistories(t, s.gw, u, "g:team", map[string]any{"after": ref[i].Seq(), "limit": 30}), ref[i+1:i+31])
		sameFrames(t, u.name+" after 0", bothHistories(t, s.gw, u, "g:team", map[string]any{"after": 0, "limit": 3}), ref[:3])
		if got := bothHistories(t, s.gw, u, "g:team", map[string]any{"before": ref[0].Seq()}); len(got) != 0 {
			t.Fatalf("%s: history before the group's first event: %s", u.name, seqList(got))
		}
	}
	sameFrames(t, "dm paging backward by 5", pageBackward(t, s.gw, s.ann, "dm:ann:ben", 5), dmRef)
	sameFrames(t, "dm paging forward by 3", pageForward(t, s.gw, s.ben, "dm:ann:ben", 3), dmRef)
	// The user who left: forbidden, archive or not; one who never was a member too.
	for _, u := range []*user{s.dan, s.eve} {
		u.fails("forbidden", map[string]any{"cmd": "history", "conv": "g:team", "before": boundary})
		st, hdr, body := httpRaw(t, "GET", s.gw.URL+"/v1/conversations/g:team/messages?before="+fmt.Sprint(boundary), u.token, nil, nil)
		checkHTTPError(t, u.name+" history", st, hdr, body, http.StatusForbidden, "forbidden")
	}

	// The archive was asked, as the contract says: the caller, the conversation, the whole of it
	// visible (history shows current members the conversation from its beginning).
	asked := d.asked()
	if len(asked) == 0 {
		t.Fatal("the archive was never asked")
	}
	for _, r := range asked {
		if len(r.Convs) != 1 || r.Convs[0].From != 0 || r.Convs[0].To != 0 || r.Limit < 1 || r.Limit > 200 ||
			(r.Before != 0 && r.Before > boundary) || r.User == "" {
			t.Fatalf("history asked the archive %+v", r)
		}
	}

	// An archiver that caps its answers below Limit: paging is the same.
	d.set(func(d *archiveDouble) { d.perReply = 3 })
	sameFrames(t, "ben paging backward by 25, capped answers", pageBackward(t, s.gw, s.ben, "g:team", 25), team[s.ben])
	sameFrames(t, "cat paging forward by 40, capped answers", pageForward(t, s.gw, s.cat, "g:team", 40), team[s.cat])
	// An archiver that ignores visibility: the gateway's own rule still holds.
	d.set(func(d *archiveDouble) { d.perReply, d.leaky = 0, true })
	sameFrames(t, "cat paging backward by 50, leaky archive", pageBackward(t, s.gw, s.cat, "g:team", 50), team[s.cat])
	if v := metricValue(t, s.gw, "chat_gateway_archive_refused_events_total", nil); v == 0 {
		t.Fatal("the leaky archive's events were not counted as refused")
	}
	if v := metricValue(t, s.gw, "chat_gateway_archive_requests_total", map[string]string{"result": "ok"}); v == 0 {
		t.Fatal("no archive request counted")
	}
}

// Sync from before the stream's window streams the missed events from the archive, then from the
// stream, each once and in order; live events continue after synced.
func TestSyncFromTheArchive(t *testing.T) {
	s := newArchScene(t, nil)
	refs := map[*user][]gt.Frame{}
	for _, u := range []*user{s.ann, s.ben, s.cat, s.dan} {
		refs[u] = s.syncRef(t, u)
	}
	// The references: cat from the invitation on (members see events of their membership), dan up
	// to his own left event.
	if f := refs[s.cat][0]; f.Cmd() != "member" || f.Str("user") != "cat" || f.Str("action") != "invited" {
		t.Fatalf("cat's sync starts with %v", f)
	}
	if hasMsg(refs[s.cat], "team 20") || !hasMsg(refs[s.cat], "team 21") || hasMsg(refs[s.dan], "psst ben") ||
		!hasMsg(refs[s.dan], "team 30") || hasMsg(refs[s.dan], "team 31") {
		t.Fatal("unexpected sync reference")
	}
	var lastDan gt.Frame
	for _, f := range refs[s.dan] {
		if f.Str("conv") == "g:team" {
			lastDan = f
		}
	}
	if lastDan.Cmd() != "member" || lastDan.Str("user") != "dan" || lastDan.Str("action") != "left" {
		t.Fatalf("dan's last event of g:team %v, want his own left", lastDan)
	}

	d := startArchive(t, s.e)
	d.capture(s.e)
	boundary := s.seqs["a40"]
	purgeBelow(t, eventsStream(t, s.e), boundary)

	// From a cursor below the boundary, and above it.
	ref := refs[s.ben]
	k := indexOfSeq(ref, boundary) - 15
	sameFrames(t, "ben sync from below the boundary", syncFrom(t, s.e.dial(s.ben.token, 0), ref[k].Seq()), ref[k+1:])
	n := len(d.asked())
	k = indexOfSeq(ref, boundary) + 5
	sameFrames(t, "ben sync from above the boundary", syncFrom(t, s.e.dial(s.ben.token, 0), ref[k].Seq()), ref[k+1:])
	if len(d.asked()) != n {
		t.Fatal("a sync from within the stream's window asked the archive")
	}
	clients := map[*user]*gt.Client{}
	for _, u := range []*user{s.ann, s.ben, s.cat, s.dan} {
		clients[u] = s.e.dial(u.token, 0)
		sameFrames(t, u.name+" sync from 0", syncFrom(t, clients[u], 0), refs[u])
	}
	// More conversations than one request may name: several requests per page, merged in order.
	prev := gateway.SetArchiveConvsPerRequest(1)
	n = len(d.asked())
	sameFrames(t, "ben sync from 0, one conversation per request", syncFrom(t, s.e.dial(s.ben.token, 0), 0), refs[s.ben])
	gateway.SetArchiveConvsPerRequest(prev)
	convsAsked := map[string]bool{}
	for _, r := range d.asked()[n:] {
		if len(r.Convs) != 1 {
			t.Fatalf("request with %d conversations, want 1", len(r.Convs))
		}
		convsAsked[r.Convs[0].Conv] = true
	}
	if !convsAsked["g:team"] || !convsAsked["dm:ann:ben"] {
		t.Fatalf("conversations asked one by one: %v", convsAsked)
	}
	// Live events continue, once.
	s.ann.msg(conv("g:team"), "after the syncs", "mk")
	s.ann.msg(to("dan"), "after the syncs", "mkd")
	for u, c := range clients {
		if got := upTo(t, c, hasText("after the syncs")); len(got) != 1 {
			t.Fatalf("%s after sync: %s", u.name, seqList(got))
		}
	}
	// The archive got the user's conversations with their visible ranges, in pages of at most
	// MaxArchiveEventsPage, ascending.
	for _, r := range d.asked() {
		if r.Desc || r.Limit != schemas.MaxArchiveEventsPage || r.Before == 0 || r.Before > boundary {
			t.Fatalf("sync asked the archive %+v", r)
		}
		if r.User == "dan" {
			for _, c := range r.Convs {
				if c.Conv == "g:team" && (c.From == 0 || c.To == 0) {
					t.Fatalf("dan's range of g:team %+v: want from his join to his leave", c)
				}
			}
		}
	}

	// Live traffic while the archive answers: held back, then delivered after synced, each once.
	var once sync.Once
	d.set(func(d *archiveDouble) {
		d.onRequest = func(int, schemas.ArchiveEventsRequest) {
			once.Do(func() {
				for i := 0; i < 20; i++ {
					_ = s.ann.c.Send(map[string]any{"cmd": "message", "conv": "g:team", "type": "text",
						"msg": fmt.Sprint("during ", i), "mid": fmt.Sprint("during-", i), "id": fmt.Sprint("during#", i)})
				}
			})
		}
	})
	c := s.e.dial(s.ben.token, 0)
	got := syncFrom(t, c, 0)
	if len(got) < len(ref) {
		t.Fatalf("sync during live traffic: %d events, want at least %d", len(got), len(ref))
	}
	sameFrames(t, "sync during live traffic", got[:len(ref)], ref)
	s.ann.msg(conv("g:team"), "final marker", "final")
	rest := append(got[len(ref):], upTo(t, c, hasText("final marker"))...)
	seen := map[string]bool{}
	last := ref[len(ref)-1].Seq()
	for _, f := range rest {
		if f.Seq() <= last || seen[f.Str("msg")] {
			t.Fatalf("after the sync: %s out of order or twice (%s)", f.Str("msg"), seqList(rest))
		}
		last = f.Seq()
		seen[f.Str("msg")] = true
	}
	for i := 0; i < 20; i++ {
		if !seen[fmt.Sprint("during ", i)] {
			t.Fatalf("live message %d missing after the sync: %s", i, seqList(rest))
		}
	}
}

// The boundary moves while a read is under way (the archiver purges): the events purged under
// the read come from the archive, nothing is lost or repeated.
func TestArchiveBoundaryMovesDuringARead(t *testing.T) {
	// Every read from the stream, where a purge can take events from under it (the recent past
	// held in memory is not purged).
	s := newArchScene(t, func(c *gateway.Config) { c.RecentEvents = 0 })
	ref := s.historyRef(t, s.ben, "g:team")
	syncRef := s.syncRef(t, s.ben)
	d := startArchive(t, s.e)
	d.capture(s.e)
	stream := eventsStream(t, s.e)
	purgeBelow(t, stream, s.seqs["a10"])
	syncFrom(t, s.e.dial(s.ben.token, 0), 0) // the gateway has now read the stream's first seq

	// Forward: the archive answers the part below the boundary and purges further when first
	// called, under the stream read that follows.
	var once sync.Once
	d.set(func(d *archiveDouble) {
		d.onRequest = func(int, schemas.ArchiveEventsRequest) { once.Do(func() { purgeBelow(t, stream, s.seqs["a25"]) }) }
	})
	moves := metricValue(t, s.gw, "chat_gateway_archive_boundary_moves_total", nil)
	n := len(d.asked())
	k := indexOfSeq(ref, s.seqs["a5"])
	sameFrames(t, "forward across a moving boundary", wsHistory(t, s.ben, "g:team", map[string]any{"after": ref[k].Seq(), "limit": 200}), ref[k+1:min(len(ref), k+201)])
	if !askedFor(d.asked()[n:], s.seqs["a10"], s.seqs["a25"]) {
		t.Fatalf("forward read asked the archive %+v: want the part purged under the read too", d.asked()[n:])
	}
	if v := metricValue(t, s.gw, "chat_gateway_archive_boundary_moves_total", nil); v <= moves {
		t.Fatal("the boundary move was not counted")
	}
	d.set(func(d *archiveDouble) { d.onRequest = nil })

	// Backward: the boundary moves right after the gateway read it, before the stream read.
	purgeAt := func(seq uint64) func() {
		var once sync.Once
		return func() { once.Do(func() { purgeBelow(t, stream, seq) }) }
	}
	gateway.SetAfterBoundary(s.gw.GW, purgeAt(s.seqs["a35"]))
	j := indexOfSeq(ref, s.seqs["a45"])
	sameFrames(t, "backward across a moving boundary (page not full from the stream)",
		wsHistory(t, s.ben, "g:team", map[string]any{"before": ref[j].Seq(), "limit": 200}), ref[max(0, j-200):j])
	gateway.SetAfterBoundary(s.gw.GW, purgeAt(s.seqs["a42"]))
	sameFrames(t, "backward, the boundary moving below the page",
		wsHistory(t, s.ben, "g:team", map[string]any{"before": ref[j].Seq(), "limit": 5}), ref[j-5:j])
	gateway.SetAfterBoundary(s.gw.GW, purgeAt(s.seqs["a44"]))
	sameFrames(t, "forward across a moving boundary (hook)",
		wsHistory(t, s.ben, "g:team", map[string]any{"after": ref[indexOfSeq(ref, s.seqs["a43"])].Seq(), "limit": 4}),
		ref[indexOfSeq(ref, s.seqs["a43"])+1:indexOfSeq(ref, s.seqs["a43"])+5])
	gateway.SetAfterBoundary(s.gw.GW, nil)
	sameFrames(t, "paging after the moves", pageBackward(t, s.gw, s.ben, "g:team", 30), ref)

	// Sync: the archive purges further when first called, under the stream part of the sync.
	var once2 sync.Once
	d.set(func(d *archiveDouble) {
		d.onRequest = func(int, schemas.ArchiveEventsRequest) { once2.Do(func() { purgeBelow(t, stream, s.seqs["a55"]) }) }
	})
	n = len(d.asked())
	c := s.e.dial(s.ben.token, 0)
	sameFrames(t, "sync across a moving boundary", syncFrom(t, c, 0), syncRef)
	if !askedFor(d.asked()[n:], s.seqs["a44"], s.seqs["a55"]) {
		t.Fatalf("sync asked the archive %+v: want the part purged under the read too", d.asked()[n:])
	}
	s.ann.msg(conv("g:team"), "live again", "live-again")
	if got := upTo(t, c, hasText("live again")); len(got) != 1 {
		t.Fatalf("after the sync: %s", seqList(got))
	}
}

// Without an archive, a read that needs events older than the stream keeps answers unavailable,
// never a short page; what the stream keeps is served as before.
func TestOldHistoryWithoutArchive(t *testing.T) {
	s := newArchScene(t, nil)
	ref := s.historyRef(t, s.ann, "g:team")
	syncRef := s.syncRef(t, s.ben)
	boundary := s.seqs["a30"]
	stream := eventsStream(t, s.e)
	var d *archiveDouble
	{
		// Capture for the archive double used at the end, before purging.
		d = &archiveDouble{t: t}
		d.capture(s.e)
	}
	purgeBelow(t, stream, boundary)
	const msg = "history older than the stream's window needs the archive"
	unavailable := func(what string, params map[string]any) {
		t.Helper()
		r := s.ann.fails("unavailable", with(map[string]any{"cmd": "history", "conv": "g:team"}, flat(params)...))
		if r.Str("errMsg") != msg && !strings.Contains(r.Str("errMsg"), "archive") {
			t.Fatalf("%s: %v", what, r)
		}
		q := make([]string, 0, len(params))
		for k, v := range params {
			q = append(q, fmt.Sprint(k, "=", v))
		}
		st, hdr, body := httpRaw(t, "GET", s.gw.URL+"/v1/conversations/g:team/messages?"+strings.Join(q, "&"), s.ann.token, nil, nil)
		checkHTTPError(t, what+" over HTTP", st, hdr, body, http.StatusServiceUnavailable, "unavailable")
	}
	noArchive := func(behind bool) {
		t.Helper()
		unavailable("newest 200", map[string]any{"limit": 200})
		unavailable("before the boundary", map[string]any{"before": boundary, "limit": 5})
		if !behind { // an archive behind still answers for what it holds
			unavailable("after the start", map[string]any{"after": 0, "limit": 5})
		}
		unavailable("between", map[string]any{"after": s.seqs["a20"], "before": s.seqs["a40"]})
		s.ben.fails("unavailable", map[string]any{"cmd": "sync", "after": s.seqs["a20"]})
	}
	noArchive(false)
	// What the stream keeps is served as before.
	sameFrames(t, "newest 5", bothHistories(t, s.gw, s.ann, "g:team", map[string]any{"limit": 5}), ref[len(ref)-5:])
	i := indexOfSeq(ref, boundary)
	sameFrames(t, "after the boundary", bothHistories(t, s.gw, s.ann, "g:team", map[string]any{"after": ref[i].Seq(), "limit": 10}), ref[i+1:i+11])
	sameFrames(t, "sync from within the window", syncFrom(t, s.e.dial(s.ben.token, 0), syncRef[len(syncRef)-10].Seq()), syncRef[len(syncRef)-9:])
	// sync from 0 means "everything kept": without an archive, what the stream keeps.
	sameFrames(t, "sync from 0", syncFrom(t, s.e.dial(s.ben.token, 0), 0), syncRef[indexOfSeq(syncRef, boundary):])
	// A group created within the window needs no archive: its history and its members' syncs work.
	fay := s.e.user("fay", 0)
	fay.ok(map[string]any{"cmd": "create", "conv": "g:fresh", "members": []string{"ann"}})
	for i := 0; i < 8; i++ {
		s.ann.msg(conv("g:fresh"), fmt.Sprint("fresh ", i), fmt.Sprint("f", i))
	}
	if got := bothHistories(t, s.gw, fay, "g:fresh", nil); len(got) != 10 {
		t.Fatalf("history of a group created within the window: %s", seqList(got))
	}
	if got := syncFrom(t, s.e.dial(fay.token, 0), 1); len(got) != 10 {
		t.Fatalf("sync of a user whose conversations are all within the window: %s", seqList(got))
	}
	// A direct conversation's start is unknown: its older history needs the archive.
	s.ben.fails("unavailable", map[string]any{"cmd": "history", "conv": "dm:ann:ben"})

	if v := metricValue(t, s.gw, "chat_gateway_archive_requests_total", map[string]string{"result": "no_archive"}); v == 0 {
		t.Fatal("no request without an archive counted")
	}
	// An archive behind the stream (it does not hold everything below the first seq): unavailable,
	// except for what it holds.
	behind := startArchive(t, s.e)
	behind.set(func(x *archiveDouble) { x.log, x.archived = d.log, boundary-2 })
	noArchive(true)
	sameFrames(t, "the start, from an archive behind", bothHistories(t, s.gw, s.ann, "g:team", map[string]any{"after": 0, "limit": 5}), ref[:5])
	// And with the archive caught up, the same requests page through everything.
	behind.set(func(x *archiveDouble) { x.archived = d.archived })
	sameFrames(t, "paging once the archive answers", pageBackward(t, s.gw, s.ann, "g:team", 40), ref)
	sameFrames(t, "sync once the archive answers", syncFrom(t, s.e.dial(s.ben.token, 0), 0), syncRef)
}

// An archiver that takes requests but does not answer within CHAT_ARCHIVE_TIMEOUT: unavailable.
func TestArchiveTimeout(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.ArchiveTimeout = 500 * time.Millisecond })
	gw := e.gws[0]
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	acks := sendMany(t, ann, to("ben"), 10, "m")
	d := startArchive(t, e)
	d.set(func(d *archiveDouble) { d.silent = true })
	purgeBelow(t, eventsStream(t, e), acks[5].Seq())
	start := time.Now()
	r := ann.fails("unavailable", map[string]any{"cmd": "history", "conv": "dm:ann:ben"})
	if took := time.Since(start); took < 500*time.Millisecond || !strings.Contains(r.Str("errMsg"), "archive") {
		t.Fatalf("history answered %v after %v, want unavailable after the archive timeout", r, took)
	}
	st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/dm:ann:ben/messages?before="+fmt.Sprint(acks[7].Seq()), ben.token, nil, nil)
	checkHTTPError(t, "HTTP history", st, hdr, body, http.StatusServiceUnavailable, "unavailable")
	ben.fails("unavailable", map[string]any{"cmd": "sync", "after": acks[1].Seq()})
	// sync from 0 with an archiver that does not answer is not "no archive": unavailable too.
	ben.fails("unavailable", map[string]any{"cmd": "sync", "after": 0})
	// What the stream keeps still pages.
	if got := bothHistories(t, gw, ann, "dm:ann:ben", map[string]any{"limit": 4}); len(got) != 4 || got[3].Seq() != acks[9].Seq() {
		t.Fatalf("newest 4: %s", seqList(got))
	}
	if v := metricValue(t, gw, "chat_gateway_archive_requests_total", map[string]string{"result": "timeout"}); v < 4 {
		t.Fatalf("%v archive timeouts counted, want 4", v)
	}
}

// askedFor reports whether one of the requests asked for exactly [from, to).
func askedFor(reqs []schemas.ArchiveEventsRequest, from, to uint64) bool {
	for _, r := range reqs {
		if r.After == from-1 && r.Before == to {
			return true
		}
	}
	return false
}

// flat turns a map into key, value pairs for with.
func flat(m map[string]any) []any {
	var kv []any
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv
}
