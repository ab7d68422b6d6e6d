package unread

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
)

// logEntry is one event of the log as stored.
type logEntry struct {
	seq     uint64
	subject string
	data    []byte
}

// appender stores an event and returns its seq; an msgID stored before stores nothing and returns
// the first seq (the stream's dedup).
type appender func(subject string, data []byte, msgID string) uint64

// memLog is an in-memory log with the stream's dedup, for tests without NATS.
type memLog struct {
	entries []logEntry
	ids     map[string]uint64
}

func newMemLog() *memLog { return &memLog{ids: map[string]uint64{}} }

func (l *memLog) append(subject string, data []byte, msgID string) uint64 {
	if seq, ok := l.ids[msgID]; ok && msgID != "" {
		return seq
	}
	seq := uint64(len(l.entries) + 1)
	l.entries = append(l.entries, logEntry{seq: seq, subject: subject, data: data})
	if msgID != "" {
		l.ids[msgID] = seq
	}
	return seq
}

// project applies a log to a fresh projection.
func project(t *testing.T, log []logEntry) *Projection {
	t.Helper()
	p := NewProjection()
	for _, le := range log {
		_ = p.Apply(le.seq, le.subject, le.data)
	}
	return p
}

// testSeed is the seed of the random tests: UNREAD_SEED, or the time.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("UNREAD_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("UNREAD_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// gen writes random but well-formed traffic to a log, as gateways would: groups created, joined,
// left and invited to; messages in groups (some private) and direct conversations; edits,
// reactions, deletes by the author and by others (which must be ignored), deletion markers,
// contact changes, reads (backwards and past the end too), retried events (the same Nats-Msg-Id)
// and the odd undecodable event.
type gen struct {
	rnd     *rand.Rand
	put     appender
	users   []string
	groups  []string
	clock   time.Time
	created map[string]bool
	members map[string]map[string]bool // group -> current members
	msgs    []genMsg                   // ordinary messages
	sent    []sentEvent                // for retries
	n       int                        // events made, for unique ids
	last    uint64
	// private is the share of group messages that are private, in quarters: it varies by seed,
	// so some logs are mostly private messages.
	private int
}

type genMsg struct {
	seq            uint64
	conv, from, to string
}

type sentEvent struct {
	subject, msgID string
	data           []byte
}

func newGen(seed uint64, put appender, users, groups []string) *gen {
	return &gen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), put: put, users: users, groups: groups,
		clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), created: map[string]bool{},
		members: map[string]map[string]bool{}, private: 1 + int(seed%3)}
}

// steps makes n random steps.
func (g *gen) steps(n int) {
	for range n {
		g.step()
	}
}

func (g *gen) step() {
	switch r := g.rnd.IntN(100); {
	case r < 6 || len(g.created) == 0:
		g.create()
	case r < 14:
		g.membership()
	case r < 50:
		g.message()
	case r < 54:
		g.edit()
	case r < 58:
		g.react()
	case r < 64:
		g.delete(true)
	case r < 67:
		g.delete(false)
	case r < 85:
		g.read()
	case r < 93:
		g.retry()
	case r < 96:
		g.contact()
	case r < 97:
		g.garbage()
	default:
		g.message()
	}
}

func (g *gen) pick(from []string) string { return from[g.rnd.IntN(len(from))] }

func (g *gen) ts() string {
	g.clock = g.clock.Add(time.Duration(1+g.rnd.IntN(5000)) * time.Millisecond)
	return schemas.FormatTime(g.clock)
}

func (g *gen) emit(subject string, e schemas.Event, msgID string) uint64 {
	data, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	g.n++
	if msgID == "" {
		msgID = fmt.Sprintf("e:%d", g.n)
	}
	seq := g.put(subject, data, msgID)
	g.sent = append(g.sent, sentEvent{subject: subject, msgID: msgID, data: data})
	g.last = max(g.last, seq)
	return seq
}

func (g *gen) currentMembers(group string) []string {
	var out []string
	for u, in := range g.members[group] {
		if in {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// create creates a group that does not exist yet: the creator's event with the attributes and
// every initial member, then one joined event per other member.
func (g *gen) create() {
	var free []string
	for _, gr := range g.groups {
		if !g.created[gr] {
			free = append(free, gr)
		}
	}
	if len(free) == 0 {
		g.membership()
		return
	}
	group := g.pick(free)
	creator := g.pick(g.users)
	members := []string{creator}
	for _, u := range g.users {
		if u != creator && g.rnd.IntN(2) == 0 {
			members = append(members, u)
		}
	}
	conv := "g:" + group
	name := ""
	if g.rnd.IntN(3) > 0 {
		name = "Group " + group
	}
	ts := g.ts()
	g.created[group] = true
	g.members[group] = map[string]bool{}
	for i, u := range members {
		e := schemas.Event{Type: schemas.TypeMember, Conv: conv, Ts: ts, User: u, Action: schemas.ActionJoined, By: creator}
		if i == 0 {
			e.Name, e.Public, e.Members = name, true, members
		}
		g.emit(schemas.MemberSubject(group), e, "")
		g.members[group][u] = true
	}
}

// membership makes someone join, be invited to, or leave a group; now and then a change that
// changes nothing (joining while a member, leaving while not one).
func (g *gen) membership() {
	var groups []string
	for _, gr := range g.groups {
		if g.created[gr] {
			groups = append(groups, gr)
		}
	}
	if len(groups) == 0 {
		g.create()
		return
	}
	group := g.pick(groups)
	user := g.pick(g.users)
	in := g.members[group][user]
	e := schemas.Event{Type: schemas.TypeMember, Conv: "g:" + group, Ts: g.ts(), User: user}
	switch r := g.rnd.IntN(10); {
	case r == 0:
		e.Action = schemas.ActionJoined // whatever the state
	case r == 1:
		e.Action = schemas.ActionLeft
	case in:
		e.Action = schemas.ActionLeft
	case r < 6:
		e.Action = schemas.ActionJoined
	default:
		e.Action = schemas.ActionInvited
		if ms := g.currentMembers(group); len(ms) > 0 {
			e.By = g.pick(ms)
		}
	}
	g.emit(schemas.MemberSubject(group), e, "")
	g.members[group][user] = e.Action != schemas.ActionLeft
}

// message sends an ordinary message: in a group by a member (a quarter private to another
// member), or in a direct conversation.
func (g *gen) message() {
	var e schemas.Event
	var subject string
	groups := []string{}
	for _, gr := range g.groups {
		if len(g.currentMembers(gr)) > 0 {
			groups = append(groups, gr)
		}
	}
	if len(groups) > 0 && g.rnd.IntN(5) < 3 {
		group := g.pick(groups)
		ms := g.currentMembers(group)
		e = schemas.Event{Conv: "g:" + group, From: g.pick(ms)}
		if len(ms) > 1 && g.rnd.IntN(4) < g.private {
			for e.Tid == "" || e.Tid == e.From {
				e.Tid = g.pick(ms)
			}
		}
		subject = subjectOf("g:" + group)
	} else {
		a, b := g.pick(g.users), g.pick(g.users)
		for b == a {
			b = g.pick(g.users)
		}
		c, _ := schemas.DirectConv(a, b)
		e = schemas.Event{Conv: c.String(), From: a}
		subject = schemas.ContentSubject(c)
	}
	e.Type, e.Ts, e.MsgType = schemas.TypeMessage, g.ts(), "text"
	e.Mid = fmt.Sprintf("m%d", g.n)
	e.Msg = fmt.Sprintf("message %d from %s", g.n, e.From)
	seq := g.emit(subject, e, schemas.DedupID(e.From, e.Mid))
	g.msgs = append(g.msgs, genMsg{seq: seq, conv: e.Conv, from: e.From, to: e.Tid})
}

// refEvent is an edit, delete or reaction of m by from.
func (g *gen) refEvent(m genMsg, from, kind string) schemas.Event {
	return schemas.Event{Type: schemas.TypeMessage, Conv: m.conv, Ts: g.ts(), From: from, Mid: fmt.Sprintf("r%d", g.n),
		Tid: m.to, Kind: kind, Ref: m.seq, RefFrom: m.from}
}

func (g *gen) edit() {
	if len(g.msgs) == 0 {
		g.message()
		return
	}
	m := g.msgs[g.rnd.IntN(len(g.msgs))]
	e := g.refEvent(m, m.from, schemas.KindEdit)
	e.Msg = "edited"
	g.emit(subjectOf(m.conv), e, "")
}

func (g *gen) react() {
	if len(g.msgs) == 0 {
		g.message()
		return
	}
	m := g.msgs[g.rnd.IntN(len(g.msgs))]
	from := m.from
	if m.to != "" && g.rnd.IntN(2) == 0 {
		from = m.to
	}
	e := g.refEvent(m, from, schemas.KindReact)
	e.Emoji, e.Remove = "👍", g.rnd.IntN(4) == 0
	g.emit(subjectOf(m.conv), e, "")
}

// delete deletes a message: by its author (valid; followed by the deletion marker, as gateways
// write it) or by someone else (to be ignored). Deleting twice happens too.
func (g *gen) delete(valid bool) {
	if len(g.msgs) == 0 {
		g.message()
		return
	}
	m := g.recent()
	from := m.from
	if !valid {
		for from == m.from {
			from = g.pick(g.users)
		}
	}
	g.emit(subjectOf(m.conv), g.refEvent(m, from, schemas.KindDelete), "")
	if valid {
		c, _ := schemas.ParseConv(m.conv)
		g.emit(schemas.GoneSubject(c, m.seq), schemas.Event{Type: schemas.TypeGone, Conv: m.conv, Ts: g.ts(), Ref: m.seq}, "")
	}
}

// recent picks a message, one of the last few half of the time: deleting the last message of a
// conversation is what moves its lastMessage back.
func (g *gen) recent() genMsg {
	if g.rnd.IntN(2) == 0 {
		return g.msgs[len(g.msgs)-1-g.rnd.IntN(min(len(g.msgs), 5))]
	}
	return g.msgs[g.rnd.IntN(len(g.msgs))]
}

// read moves a user's marker in one of their conversations (or any): to a message, anywhere
// before the end, or past it.
func (g *gen) read() {
	user := g.pick(g.users)
	var convs []string
	for _, m := range g.msgs {
		if m.from == user || m.to == user || (m.conv[:3] == "dm:" && containsUser(m.conv, user)) {
			convs = append(convs, m.conv)
		}
	}
	for _, gr := range g.groups {
		if g.members[gr][user] {
			convs = append(convs, "g:"+gr)
		}
	}
	if len(convs) == 0 || g.rnd.IntN(10) == 0 {
		convs = append(convs, "g:"+g.pick(g.groups))
	}
	conv := g.pick(convs)
	var seq uint64
	switch r := g.rnd.IntN(4); {
	case r == 0 && len(g.msgs) > 0:
		seq = g.msgs[g.rnd.IntN(len(g.msgs))].seq
	case r == 1:
		seq = g.last + 1 + uint64(g.rnd.IntN(1000)) // past the end
	default:
		seq = 1 + uint64(g.rnd.IntN(int(g.last)+1))
	}
	g.emit(schemas.ReadSubject(user), schemas.Event{Type: schemas.TypeRead, Conv: conv, Ts: g.ts(), From: user, Seq: seq}, "")
}

// retry publishes an event again with its Nats-Msg-Id: the stream stores nothing new.
func (g *gen) retry() {
	if len(g.sent) == 0 {
		g.message()
		return
	}
	s := g.sent[g.rnd.IntN(len(g.sent))]
	g.put(s.subject, s.data, s.msgID)
}

func (g *gen) contact() {
	a, b := g.pick(g.users), g.pick(g.users)
	g.emit(schemas.ContactSubject(a), schemas.Event{Type: schemas.TypeContact, Ts: g.ts(), From: a, User: b,
		Action: schemas.ContactAdd}, "")
}

// garbage appends an event that does not decode.
func (g *gen) garbage() {
	g.n++
	seq := g.put(schemas.MemberSubject(g.pick(g.groups)), []byte(`{"type":"chat.member.v1","conv":`), fmt.Sprintf("e:%d", g.n))
	g.last = max(g.last, seq)
}

func subjectOf(conv string) string {
	c, err := schemas.ParseConv(conv)
	if err != nil {
		panic(err)
	}
	return schemas.ContentSubject(c)
}

func containsUser(dm, user string) bool {
	c, err := schemas.ParseConv(dm)
	return err == nil && c.Has(user)
}

// testUsers and testGroups are the population of the random tests.
var (
	testUsers  = []string{"ann", "ben", "cat", "dan", "eve", "fay"}
	testGroups = []string{"alpha", "beta", "gamma"}
)

// genLog makes a memory log of n random steps.
func genLog(t *testing.T, seed uint64, n int) *memLog {
	t.Helper()
	l := newMemLog()
	newGen(seed, l.append, testUsers, testGroups).steps(n)
	return l
}
