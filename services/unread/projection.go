package unread

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/eventchat/chat/schemas"
)

// errMalformed marks an event that decodes but cannot be applied (an invalid user id, a member
// event of a direct conversation, a read on another user's subject). It is skipped like an
// undecodable one.
var errMalformed = errors.New("malformed event")

// Projection is the unread state folded from the event log: per conversation and per user in it,
// the messages, deletes, read markers and membership that the counts, the last message and the
// conversation list derive from. It is safe for concurrent use; Apply is meant to be called by a
// single goroutine, in stream order.
//
// Nothing is written per member when a message arrives: counts are derived when asked, by binary
// search over sorted sequence lists. A public message appends to its conversation's list and to its
// author's own list; a private one to its author's and its target's. A query for (user, conv) costs
// O(log n):
//
//	unread = |public after f| - |deleted public after f|
//	       - (|own public after f| - |own deleted after f|)
//	       + |private to the user after f| - |deleted of those after f|
//
// with f = max(read marker, the seq that made the user a member). A delete, which is rare, inserts
// into the sorted deleted lists.
type Projection struct {
	mu      sync.RWMutex
	applied uint64
	convs   map[string]*convState
	// byUser lists the conversations each user has state in (listed or not).
	byUser map[string][]*convState
	// users interns user ids, so the per-message records share one copy of each.
	users map[string]string
}

// convState is one conversation. Its exported fields are the snapshot; the frames are a cache.
type convState struct {
	Conv schemas.Conv
	// Group is the membership of a group, from its member events; nil until the first one, and
	// for a direct conversation.
	Group *schemas.Group
	// Msgs are every ordinary message, in seq order: who wrote it, for whom, so a delete can be
	// checked and applied.
	Msgs msgRefs
	// Pub are the seqs of the public (Tid "") ordinary messages, PubDel those deleted.
	Pub, PubDel []uint64
	// Last is the last public message or member event: the conversation's activity every member
	// sees.
	Last mark
	// LastPub is the last public message not deleted (0: none).
	LastPub uint64
	// Users is the state of every user concerned: members, former members, authors, targets of
	// private messages, readers; for a direct conversation, its two users.
	Users map[string]*userConv

	// pubFrame is the frame of LastPub when known (nil after a snapshot load or a delete of the
	// previous one: queries fetch it from the stream).
	pubFrame *schemas.MessageFrame
}

// msgRef is an ordinary message.
type msgRef struct {
	Seq  uint64
	From string
	Tid  string
}

// mark is an event's position and time.
type mark struct {
	Seq uint64
	Ts  string
}

// userConv is one user's state in one conversation. Every list is sorted.
type userConv struct {
	// Read is the read marker.
	Read uint64
	// Own are the user's public messages, OwnDel those deleted.
	Own, OwnDel []uint64
	// In are the private messages to the user from others, InDel those deleted.
	In, InDel []uint64
	// Out are the user's own private messages, OutDel those deleted.
	Out, OutDel []uint64
	// LastPriv is the last private message the user sees, deleted or not (it counts as activity).
	LastPriv mark
	// LastPrivMsg is the last private message the user sees that is not deleted (0: none).
	LastPrivMsg uint64

	privFrame *schemas.MessageFrame // frame of LastPrivMsg when known
}

// NewProjection returns an empty projection, at seq 0.
func NewProjection() *Projection {
	return &Projection{convs: map[string]*convState{}, byUser: map[string][]*convState{}, users: map[string]string{}}
}

// Seq is the stream sequence of the last event applied.
func (p *Projection) Seq() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.applied
}

// Apply folds the event stored at stream sequence seq on subject into the projection. An event at
// or before Seq changes nothing, so redeliveries are harmless. Events of other kinds than
// messages, member events and reads (contacts, deletion markers) are skipped without being
// decoded. An undecodable or malformed event is skipped too, and reported as an error; the
// projection has moved past it all the same.
func (p *Projection) Apply(seq uint64, subject string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.apply(seq, subject, data, false)
	return err
}

// apply is Apply under the write lock. With notify it also returns the counts the event changed
// that are pushed: the reader's on a read, and every concerned user's on a delete.
func (p *Projection) apply(seq uint64, subject string, data []byte, notify bool) ([]schemas.UnreadChanged, error) {
	if seq <= p.applied {
		return nil, nil
	}
	p.applied = seq
	kind := schemas.SubjectKind(subject)
	switch kind {
	case schemas.TypeMessage, schemas.TypeMember, schemas.TypeRead:
	default:
		return nil, nil
	}
	e, err := schemas.DecodeEvent(data)
	if err != nil {
		return nil, err
	}
	if e.Type != kind {
		return nil, fmt.Errorf("%w: %s event on %s", errMalformed, e.Type, subject)
	}
	switch kind {
	case schemas.TypeMessage:
		return p.applyMessage(seq, &e, notify)
	case schemas.TypeMember:
		return nil, p.applyMember(seq, &e)
	default:
		return p.applyRead(seq, subject, &e, notify)
	}
}

func (p *Projection) applyMessage(seq uint64, e *schemas.Event, notify bool) ([]schemas.UnreadChanged, error) {
	switch e.Kind {
	case "":
		if !schemas.ValidUser(e.From) || (e.Tid != "" && !schemas.ValidUser(e.Tid)) {
			return nil, fmt.Errorf("%w: message with an invalid from or tid", errMalformed)
		}
		p.addMessage(seq, e)
		return nil, nil
	case schemas.KindDelete:
		return p.deleteMessage(seq, e, notify), nil
	}
	// Edits and reactions are neither counted nor shown as the last message.
	return nil, nil
}

// addMessage records an ordinary message. It touches the conversation, the author and, for a
// private message, the target: never the other members.
func (p *Projection) addMessage(seq uint64, e *schemas.Event) {
	c := p.conv(e.Conv)
	from, tid := p.intern(e.From), p.intern(e.Tid)
	c.Msgs = append(c.Msgs, msgRef{Seq: seq, From: from, Tid: tid})
	if c.Conv.IsDirect() {
		// Both users list a direct conversation from its first message on.
		p.userConv(c, p.intern(c.Conv.A))
		p.userConv(c, p.intern(c.Conv.B))
	}
	frame := messageFrame(e, seq)
	author := p.userConv(c, from)
	if tid == "" {
		c.Pub = append(c.Pub, seq)
		author.Own = append(author.Own, seq)
		c.Last = mark{Seq: seq, Ts: e.Ts}
		c.LastPub, c.pubFrame = seq, frame
		return
	}
	author.Out = append(author.Out, seq)
	author.sawPrivate(seq, e.Ts, frame)
	if tid != from {
		target := p.userConv(c, tid)
		target.In = append(target.In, seq)
		target.sawPrivate(seq, e.Ts, frame)
	}
}

func (uc *userConv) sawPrivate(seq uint64, ts string, frame *schemas.MessageFrame) {
	uc.LastPriv = mark{Seq: seq, Ts: ts}
	uc.LastPrivMsg, uc.privFrame = seq, frame
}

// deleteMessage applies a delete: only its author's delete of an earlier ordinary message of the
// same conversation counts; any other is ignored, as is a second delete.
func (p *Projection) deleteMessage(seq uint64, e *schemas.Event, notify bool) []schemas.UnreadChanged {
	c := p.convs[e.Conv]
	if c == nil {
		return nil
	}
	i, found := slices.BinarySearchFunc([]msgRef(c.Msgs), e.Ref, func(m msgRef, seq uint64) int { return cmp.Compare(m.Seq, seq) })
	if !found || c.Msgs[i].From != e.From {
		return nil
	}
	m := c.Msgs[i]
	author := c.Users[m.From]
	if m.Tid == "" {
		if !insertSorted(&c.PubDel, m.Seq) {
			return nil
		}
		insertSorted(&author.OwnDel, m.Seq)
		if c.LastPub == m.Seq {
			c.LastPub, c.pubFrame = lastLive(c.Pub, c.PubDel), nil
		}
	} else {
		if !insertSorted(&author.OutDel, m.Seq) {
			return nil
		}
		author.privateDeleted(m.Seq)
		if m.Tid != m.From {
			target := c.Users[m.Tid]
			insertSorted(&target.InDel, m.Seq)
			target.privateDeleted(m.Seq)
		}
	}
	if !notify {
		return nil
	}
	return p.deleteChanges(c, m, seq)
}

// privateDeleted moves the user's last private message back when it was the one deleted.
func (uc *userConv) privateDeleted(seq uint64) {
	if uc.LastPrivMsg == seq {
		uc.LastPrivMsg, uc.privFrame = max(lastLive(uc.In, uc.InDel), lastLive(uc.Out, uc.OutDel)), nil
	}
}

// deleteChanges are the counts that deleting m changed: those of the users who list the
// conversation, may see m, did not write it, and had not read it.
func (p *Projection) deleteChanges(c *convState, m msgRef, cause uint64) []schemas.UnreadChanged {
	var users []string
	switch {
	case m.Tid != "":
		users = []string{m.Tid}
	case c.Conv.IsDirect():
		users = []string{c.Conv.A, c.Conv.B}
	case c.Group != nil:
		users = c.Group.CurrentMembers()
		sort.Strings(users)
	}
	var out []schemas.UnreadChanged
	for _, u := range users {
		uc := c.Users[u]
		if u == m.From || uc == nil || !c.lists(u) || m.Seq <= c.floor(u, uc) {
			continue
		}
		out = append(out, schemas.UnreadChanged{User: u, Conv: c.Conv.String(), Count: c.unread(u, uc),
			ReadSeq: uc.Read, Cause: cause})
	}
	return out
}

func (p *Projection) applyMember(seq uint64, e *schemas.Event) error {
	if cv, _ := schemas.ParseConv(e.Conv); cv.Kind != schemas.ConvGroup || !schemas.ValidUser(e.User) {
		return fmt.Errorf("%w: member event of %s for user %q", errMalformed, e.Conv, e.User)
	}
	c := p.conv(e.Conv)
	if c.Group == nil {
		c.Group = &schemas.Group{Group: c.Conv.Group}
	}
	first := c.Group.Seq == 0
	c.Group.Apply(e, seq)
	if first {
		// The creating event makes every initial member a member at once.
		for _, u := range e.Members {
			if schemas.ValidUser(u) {
				p.userConv(c, p.intern(u))
			}
		}
	}
	p.userConv(c, p.intern(e.User))
	c.Last = mark{Seq: seq, Ts: e.Ts}
	return nil
}

// applyRead moves a read marker forward: to the seq asked, but never past the read event itself
// and never back.
func (p *Projection) applyRead(seq uint64, subject string, e *schemas.Event, notify bool) ([]schemas.UnreadChanged, error) {
	if !schemas.ValidUser(e.From) || schemas.ReadSubject(e.From) != subject {
		return nil, fmt.Errorf("%w: read by %q on %s", errMalformed, e.From, subject)
	}
	c := p.conv(e.Conv)
	uc := p.userConv(c, p.intern(e.From))
	uc.Read = max(uc.Read, min(e.Seq, seq))
	if !notify {
		return nil, nil
	}
	return []schemas.UnreadChanged{{User: e.From, Conv: e.Conv, Count: c.unread(e.From, uc), ReadSeq: uc.Read, Cause: seq}}, nil
}

// conv returns the state of conversation id (a valid one: events are checked by DecodeEvent),
// creating it.
func (p *Projection) conv(id string) *convState {
	c := p.convs[id]
	if c == nil {
		cv, _ := schemas.ParseConv(id)
		c = &convState{Conv: cv, Users: map[string]*userConv{}}
		p.convs[id] = c
	}
	return c
}

// userConv returns user's state in c, creating it and indexing c under the user.
func (p *Projection) userConv(c *convState, user string) *userConv {
	uc := c.Users[user]
	if uc == nil {
		uc = &userConv{}
		c.Users[user] = uc
		p.byUser[user] = append(p.byUser[user], c)
	}
	return uc
}

func (p *Projection) intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := p.users[s]; ok {
		return v
	}
	p.users[s] = s
	return s
}

// lists reports whether user has c in their conversation list: a direct conversation of theirs
// once it has a message, a group while they are a member.
func (c *convState) lists(user string) bool {
	if c.Conv.IsDirect() {
		return c.Conv.Has(user) && len(c.Msgs) > 0
	}
	return c.Group.IsMember(user)
}

// since is the seq of the member event that last made user a member of a group (0 for a direct
// conversation): nothing before it counts or shows.
func (c *convState) since(user string) uint64 {
	if c.Group == nil {
		return 0
	}
	if m := c.Group.Members[user]; m != nil {
		return m.Since
	}
	return 0
}

// floor is the seq after which messages count for user.
func (c *convState) floor(user string, uc *userConv) uint64 { return max(uc.Read, c.since(user)) }

// unread is user's count: the messages after the floor from others that the user may see and
// that are not deleted.
func (c *convState) unread(user string, uc *userConv) int {
	f := c.floor(user, uc)
	n := after(c.Pub, f) - after(c.PubDel, f)
	n -= after(uc.Own, f) - after(uc.OwnDel, f)
	n += after(uc.In, f) - after(uc.InDel, f)
	return n
}

// entry is one conversation of a user's list as the projection knows it. The caller completes
// it outside the lock: a direct conversation's name, and the last message's frame when it is not
// cached.
type entry struct {
	item schemas.ConversationItem
	// other is the other user of a direct conversation, whose display name names it.
	other string
	// lastMsg is the seq of the last message (0: none); item.LastMessage is set when its frame is
	// cached.
	lastMsg uint64
}

// conversations returns user's conversation list, unordered, and the seq it is as of.
func (p *Projection) conversations(user string) ([]entry, uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]entry, 0, len(p.byUser[user]))
	for _, c := range p.byUser[user] {
		if !c.lists(user) {
			continue
		}
		uc := c.Users[user]
		en := entry{item: schemas.ConversationItem{Conv: c.Conv.String(), Unread: c.unread(user, uc)}}
		last := c.Last
		if uc.LastPriv.Seq > last.Seq {
			last = uc.LastPriv
		}
		en.item.LastSeq, en.item.LastTs = last.Seq, last.Ts
		en.lastMsg, en.item.LastMessage = c.lastMessage(user, uc)
		if c.Conv.IsDirect() {
			en.other = c.Conv.Other(user)
		} else {
			en.item.Name = c.Group.Name
			if en.item.Name == "" {
				en.item.Name = c.Conv.Group
			}
		}
		out = append(out, en)
	}
	return out, p.applied
}

// lastMessage is the seq of the last message user sees in c since becoming a member, and its
// frame when cached.
func (c *convState) lastMessage(user string, uc *userConv) (uint64, *schemas.MessageFrame) {
	since := c.since(user)
	var seq uint64
	var frame *schemas.MessageFrame
	if c.LastPub > since {
		seq, frame = c.LastPub, c.pubFrame
	}
	if uc.LastPrivMsg > since && uc.LastPrivMsg > seq {
		seq, frame = uc.LastPrivMsg, uc.privFrame
	}
	return seq, frame
}

// cacheFrame keeps a frame fetched from the stream for the next queries, if it is still user's
// last message of its conversation.
func (p *Projection) cacheFrame(user string, f *schemas.MessageFrame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.convs[f.Conv]
	if c == nil {
		return
	}
	if f.Tid == "" {
		if c.LastPub == f.Seq {
			c.pubFrame = f
		}
		return
	}
	if uc := c.Users[user]; uc != nil && uc.LastPrivMsg == f.Seq {
		uc.privFrame = f
	}
}

// messageFrame is the frame of a message event.
func messageFrame(e *schemas.Event, seq uint64) *schemas.MessageFrame {
	f, _ := schemas.EventFrame(e, seq).(schemas.MessageFrame)
	return &f
}

// Sorted sequence lists.

// after is how many seqs of the sorted list s are greater than f.
func after(s []uint64, f uint64) int {
	i, found := slices.BinarySearch(s, f)
	if found {
		i++
	}
	return len(s) - i
}

// insertSorted adds seq to the sorted list s; it reports false if it was there already.
func insertSorted(s *[]uint64, seq uint64) bool {
	i, found := slices.BinarySearch(*s, seq)
	if found {
		return false
	}
	*s = slices.Insert(*s, i, seq)
	return true
}

// lastLive is the greatest seq of s not in deleted (both sorted), or 0.
func lastLive(s, deleted []uint64) uint64 {
	for i := len(s) - 1; i >= 0; i-- {
		if _, found := slices.BinarySearch(deleted, s[i]); !found {
			return s[i]
		}
	}
	return 0
}
