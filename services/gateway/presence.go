package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/time/rate"
)

// The gateway's side of presence: it reports every connection's lifecycle to the presence service,
// pushes presence changes to the users allowed to see them, and answers presence queries from the
// presence bucket. The presence service owns the aggregation (see docs/architecture.md).

// PresenceFrame is a presence change pushed to a client, and an item of a presence answer.
// LastSeen is null for a user never seen, or one the asker may not see.
type presenceItem struct {
	User     string  `json:"user"`
	Status   string  `json:"status"`
	LastSeen *string `json:"lastSeen"`
}

type presencePush struct {
	Cmd string `json:"cmd"`
	presenceItem
}

type presenceAnswer struct {
	Cmd   string         `json:"cmd"`
	ID    string         `json:"id,omitempty"`
	Items []presenceItem `json:"items"`
}

type typingFrame struct {
	Cmd  string `json:"cmd"`
	Conv string `json:"conv"`
	User string `json:"user"`
}

// maxPresenceQuery bounds the users of one presence query.
const maxPresenceQuery = 200

// reportConn tells the presence service about one of this gateway's connections.
func (gw *Gateway) reportConn(s *session, state string) {
	gw.reportConnOf(s.user, s.connID, s.idle.Load(), s.client, state)
}

// reportConnOf reports connection conn of user (a WebSocket session or a long-poll client).
func (gw *Gateway) reportConnOf(user, conn string, idle bool, client, state string) {
	ev := schemas.ConnEvent{Type: schemas.TypeConn, User: user, Conn: conn, Gateway: gw.cfg.ID,
		State: state, Idle: idle, Client: client, Ts: schemas.FormatTime(time.Now())}
	data, err := json.Marshal(&ev)
	if err != nil {
		return
	}
	if err := gw.nc.Publish(schemas.PresenceConnSubject(user), data); err != nil {
		gw.log.Debug("presence report", "state", state, "err", err)
	}
}

func newConnID() string { return nuid.Next() }

// heartbeatSlots spreads heartbeats over the interval: each tick reports one slot's connections,
// so the presence service gets an even stream rather than one burst per interval.
const heartbeatSlots = 10

// heartbeats reports every live connection every PresenceHeartbeat, so the presence service's
// entries do not expire while the connection lives, and at once after a NATS reconnect (the
// connections bucket lives in memory: a restarted NATS has forgotten them).
func (gw *Gateway) heartbeats(ctx context.Context) {
	t := time.NewTicker(gw.cfg.PresenceHeartbeat / heartbeatSlots)
	defer t.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	reconnects := gw.nc.Stats().Reconnects
	beat := func(slot int) {
		for _, s := range gw.hub.sessions() {
			if s.live.Load() && (slot < 0 || s.hbSlot == slot) {
				gw.reportConn(s, schemas.ConnHeartbeat)
			}
		}
		gw.pollHeartbeat(slot)
	}
	slot := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat(slot)
			slot = (slot + 1) % heartbeatSlots
		case <-check.C:
			if n := gw.nc.Stats().Reconnects; n != reconnects && gw.nc.IsConnected() {
				reconnects = n
				beat(-1)
			}
		}
	}
}

// peers are the users who share a conversation with a user: its direct partners and the members
// of its groups. They see its presence and it sees theirs. Contacts see presence one way (who
// added B sees B's): they come from the contact book (contacts.go), kept exact by the live feed,
// not from this cache. Cached briefly per user.
type peerCache struct {
	mu      sync.Mutex
	entries map[string]peerEntry
	swept   time.Time // when expired entries were last dropped
}

type peerEntry struct {
	users map[string]struct{}
	at    time.Time
}

// peerTTL bounds how long a cached peer set is used; changes seen in the log (a new direct
// conversation, a membership change) invalidate it at once.
const peerTTL = 30 * time.Second

// invalidatePeers forgets the cached peer sets of users.
func (gw *Gateway) invalidatePeers(users ...string) {
	gw.peerCache.mu.Lock()
	defer gw.peerCache.mu.Unlock()
	for _, u := range users {
		delete(gw.peerCache.entries, u)
	}
}

// peersChanged is called by the live feed for every event: a membership change changes the peers
// of the whole group, and the first message of a direct conversation those of its two users.
func (gw *Gateway) peersChanged(e *schemas.Event, g *schemas.Group) {
	if e.Type == schemas.TypeMember {
		gw.invalidatePeers(e.User)
		if g != nil {
			gw.invalidatePeers(g.CurrentMembers()...)
		}
		return
	}
	if c, err := schemas.ParseConv(e.Conv); err == nil && c.IsDirect() {
		if _, seen := gw.pairsSeen.LoadOrStore(e.Conv, struct{}{}); !seen {
			gw.invalidatePeers(c.A, c.B)
		}
	}
}

func (gw *Gateway) peers(ctx context.Context, user string) (map[string]struct{}, error) {
	gw.peerCache.mu.Lock()
	e, ok := gw.peerCache.entries[user]
	gw.peerCache.mu.Unlock()
	if ok && time.Since(e.at) < peerTTL {
		return e.users, nil
	}
	// The conversations the user is in now (left ones are skipped whatever their seq), read from
	// the conversation index like a sync's: one multi-last direct get for most users, no consumer.
	// (A watch here created and deleted a consumer per connecting user: about 28 KB of garbage
	// and a consumer's setup in nats-server for every connect.)
	convs, err := gw.userConvs(ctx, user, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	users := map[string]struct{}{}
	for _, conv := range convs {
		if conv.IsDirect() {
			users[conv.Other(user)] = struct{}{}
			continue
		}
		g, err := gw.groups.cached(ctx, conv.Group)
		if err != nil {
			return nil, err
		}
		if !g.IsMember(user) {
			continue
		}
		for _, m := range g.CurrentMembers() {
			users[m] = struct{}{}
		}
	}
	delete(users, user)
	if len(users) == 0 {
		users = nil // reads as empty, and costs nothing to keep
	}
	gw.peerCache.mu.Lock()
	gw.peerCache.put(user, users, time.Now())
	gw.peerCache.mu.Unlock()
	return users, nil
}

// put caches user's peers (under mu). Once per peerTTL it drops the entries expired meanwhile,
// which nothing reads again: every user whose presence ever changed kept one.
func (c *peerCache) put(user string, users map[string]struct{}, now time.Time) {
	c.entries[user] = peerEntry{users: users, at: now}
	if now.Sub(c.swept) < peerTTL {
		return
	}
	c.swept = now
	for u, e := range c.entries {
		if now.Sub(e.at) >= peerTTL {
			delete(c.entries, u)
		}
	}
}

// onPresenceChanged pushes a presence change to the local sessions of the user's peers.
func (gw *Gateway) onPresenceChanged(m *nats.Msg) {
	var ch schemas.PresenceChanged
	if err := json.Unmarshal(m.Data, &ch); err != nil || ch.Type != schemas.TypePresenceChanged || !schemas.ValidUser(ch.User) {
		return
	}
	ctx, cancel := context.WithTimeout(gw.baseCtx, commandTimeout)
	defer cancel()
	audience, err := gw.presenceAudience(ctx, ch.User)
	if err != nil {
		gw.log.Warn("presence push: peers", "err", err)
		return
	}
	push := presencePush{Cmd: schemas.CmdPresence, presenceItem: presenceItem{User: ch.User, Status: ch.Status, LastSeen: optional(ch.LastSeen)}}
	gw.pushTo(audience, "", push)
}

// presenceAudience are the users who get user's presence changes: its peers and the local users
// who have it as a contact. The result must not be modified.
func (gw *Gateway) presenceAudience(ctx context.Context, user string) (map[string]struct{}, error) {
	peers, err := gw.peers(ctx, user)
	if err != nil {
		return nil, err
	}
	watchers := map[string]struct{}{}
	gw.book.watchersOf(user, watchers)
	if len(watchers) == 0 {
		return peers, nil
	}
	for u := range peers {
		watchers[u] = struct{}{}
	}
	return watchers, nil
}

// pushTo sends an ephemeral frame (not an event of the log) to the local sessions of users,
// except those of skip.
func (gw *Gateway) pushTo(users map[string]struct{}, skip string, v any) {
	var targets []*session
	gw.hub.mu.RLock()
	if len(users) <= len(gw.hub.users) {
		for u := range users {
			if u != skip {
				targets = gw.hub.targets(targets, u)
			}
		}
	} else {
		for u := range gw.hub.users {
			if _, ok := users[u]; ok && u != skip {
				targets = gw.hub.targets(targets, u)
			}
		}
	}
	gw.hub.mu.RUnlock()
	if len(targets) == 0 {
		return
	}
	f, err := newOutFrame(v, len(targets) > 4)
	if err != nil {
		return
	}
	for _, s := range targets {
		s.enqueue(f)
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// cmdPresence answers the status of users: from the presence bucket for the asker's peers and
// contacts (and the asker), offline with no lastSeen for anyone else.
func (gw *Gateway) cmdPresence(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	if len(f.Users) == 0 || len(f.Users) > maxPresenceQuery {
		return badRequest(fmt.Sprintf("users must list 1 to %d user ids", maxPresenceQuery))
	}
	for _, u := range f.Users {
		if !schemas.ValidUser(u) {
			return badRequest("users must be user ids")
		}
	}
	visible, err := gw.peers(ctx, s.user)
	if err != nil {
		return err
	}
	contacts, err := gw.book.contactsOf(ctx, s.user)
	if err != nil {
		return err
	}
	items := make([]presenceItem, 0, len(f.Users))
	for _, u := range f.Users {
		item := presenceItem{User: u, Status: schemas.StatusOffline}
		_, peer := visible[u]
		_, contact := slices.BinarySearch(contacts, u)
		if peer || contact || u == s.user {
			st, err := gw.presenceOf(ctx, u)
			if err != nil {
				return err
			}
			item.Status, item.LastSeen = st.Status, optional(st.LastSeen)
		}
		items = append(items, item)
	}
	s.reply(presenceAnswer{Cmd: schemas.CmdPresence, ID: f.ID, Items: items})
	return nil
}

func (gw *Gateway) presenceOf(ctx context.Context, user string) (schemas.PresenceState, error) {
	st := schemas.PresenceState{User: user, Status: schemas.StatusOffline}
	entry, err := gw.presenceKV.Get(ctx, schemas.PresenceKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("presence of %s: %w", user, err)
	}
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		return st, fmt.Errorf("presence of %s: %w", user, err)
	}
	if st.Status == "" {
		st.Status = schemas.StatusOffline
	}
	return st, nil
}

// cmdActivity is the protocol extension by which a client reports itself idle or active again;
// a user whose every session is idle is away.
func (gw *Gateway) cmdActivity(s *session, f *schemas.ClientFrame) error {
	if f.Idle == nil {
		return badRequest("idle (true or false) is required")
	}
	if s.idle.Swap(*f.Idle) != *f.Idle {
		state := schemas.ConnActive
		if *f.Idle {
			state = schemas.ConnIdle
		}
		gw.reportConn(s, state)
	}
	s.reply(schemas.OKFrame{Cmd: schemas.CmdOK, ID: f.ID})
	return nil
}

// cmdTyping relays a typing notice to the conversation's other members online, on every gateway.
// It is never stored; a session typing faster than its typing limit is dropped silently.
func (gw *Gateway) cmdTyping(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	conv, err := schemas.ParseConv(f.Conv)
	if err != nil {
		return badRequest("invalid conversation id")
	}
	if conv.IsDirect() {
		if !conv.Has(s.user) {
			return errForbidden
		}
	} else if _, member, err := gw.groups.memberNow(ctx, conv.Group, s.user); err != nil {
		return err
	} else if !member {
		return errForbidden
	}
	if s.typing == nil { // made on first use: most sessions never type
		s.typing = rate.NewLimiter(rate.Limit(gw.cfg.TypingRate), 3)
	}
	if !s.typing.Allow() {
		return nil
	}
	data, err := json.Marshal(schemas.TypingEvent{Type: schemas.TypeTyping, Conv: conv.String(), User: s.user, Gateway: gw.cfg.ID})
	if err != nil {
		return err
	}
	return gw.nc.Publish(schemas.TypingSubject(conv), data)
}

// onTyping delivers a typing notice to the local sessions of the conversation's members, except the
// typist's own.
func (gw *Gateway) onTyping(m *nats.Msg) {
	var ev schemas.TypingEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Type != schemas.TypeTyping || !schemas.ValidUser(ev.User) {
		return
	}
	conv, err := schemas.ParseConv(ev.Conv)
	if err != nil {
		return
	}
	members := map[string]struct{}{}
	if conv.IsDirect() {
		members[conv.A], members[conv.B] = struct{}{}, struct{}{}
	} else {
		ctx, cancel := context.WithTimeout(gw.baseCtx, commandTimeout)
		g, err := gw.groups.cached(ctx, conv.Group)
		cancel()
		if err != nil {
			return
		}
		for _, u := range g.CurrentMembers() {
			members[u] = struct{}{}
		}
	}
	gw.pushTo(members, ev.User, typingFrame{Cmd: schemas.CmdTyping, Conv: ev.Conv, User: ev.User})
}
