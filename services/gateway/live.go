package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
)

// hub indexes this process's sessions by user.
type hub struct {
	mu sync.RWMutex
	// users holds each user's sessions, a handful at most: a slice walks faster than a set when
	// the live feed gathers a large group's recipients (a map iteration per member cost more than
	// the lookup), and takes less memory per connected user.
	users map[string][]*session
	all   map[*session]struct{}
}

func newHub() *hub {
	return &hub{users: map[string][]*session{}, all: map[*session]struct{}{}}
}

func (h *hub) add(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.all[s]; ok {
		return
	}
	h.users[s.user] = append(h.users[s.user], s)
	h.all[s] = struct{}{}
}

func (h *hub) remove(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.all[s]; !ok {
		return
	}
	delete(h.all, s)
	list := h.users[s.user]
	i := slices.Index(list, s)
	if i < 0 {
		return
	}
	if len(list) == 1 {
		delete(h.users, s.user)
		return
	}
	h.users[s.user] = slices.Delete(list, i, i+1) // readers copy the sessions out under the read lock
}

func (h *hub) sessions() []*session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*session, 0, len(h.all))
	for s := range h.all {
		out = append(out, s)
	}
	return out
}

// targets appends the local sessions of the given users to dst.
func (h *hub) targets(dst []*session, users ...string) []*session {
	for _, u := range users {
		dst = append(dst, h.users[u]...)
	}
	return dst
}

// liveFeed reads the whole log in order, from the head at start, and pushes every event to the local
// sessions allowed to see it. One ordered consumer per gateway process: it resumes by itself after a
// NATS reconnect, from the last sequence it delivered, so nothing is skipped.
type liveFeed struct {
	gw      *Gateway
	started chan struct{}
	scratch []*session
}

func (lf *liveFeed) run(ctx context.Context) error {
	info, err := lf.gw.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("live feed: stream info: %w", err)
	}
	lf.gw.recent.reset(info.State.LastSeq)
	cons, err := lf.gw.stream.OrderedConsumer(ctx, schemas.LiveConsumerConfig(info.State.LastSeq+1))
	if err != nil {
		return fmt.Errorf("live feed: consumer: %w", err)
	}
	// A deep pull window: the live feed must keep up with the appends of every gateway, and a
	// shallow one leaves it waiting on round trips (measured: 512 capped delivery at about half the
	// append rate).
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("live feed: consume: %w", err)
	}
	close(lf.started)
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			lf.gw.log.Warn("live feed: next", "err", err)
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			lf.gw.recent.skipped()
			continue
		}
		lf.gw.metrics.liveEvents.Inc()
		if lf.gw.events.reaches(time.Now(), busyEvents) {
			platform.BusyGC(busyGC)
		}
		lf.gw.metrics.liveLagSeconds.Observe(time.Since(meta.Timestamp).Seconds())
		lf.handle(ctx, msg.Subject(), msg.Data(), meta.Sequence.Stream)
	}
}

// handle routes one event of the log by its subject. Only conversation events are delivered to
// sessions; contact changes update the contact book; read and deletion markers concern other
// readers (the unread service, the gone check) and are skipped.
func (lf *liveFeed) handle(ctx context.Context, subject string, data []byte, seq uint64) {
	kind := schemas.SubjectKind(subject)
	switch kind {
	case schemas.TypeMessage, schemas.TypeMember, schemas.TypeContact:
	default:
		lf.gw.recent.add(subject, seq, nil)
		return
	}
	e, err := schemas.DecodeEvent(data)
	if err == nil && kind != schemas.TypeContact {
		lf.gw.recent.add(subject, seq, &e) // as a read of the log would see it
	} else {
		lf.gw.recent.add(subject, seq, nil)
	}
	if err != nil || e.Type != kind {
		lf.gw.log.Error("live feed: undecodable event", "seq", seq, "subject", subject, "type", e.Type, "err", err)
		return
	}
	if kind == schemas.TypeContact {
		lf.gw.book.apply(&e, seq)
		return
	}
	if e.IsConvEvent() {
		lf.deliver(ctx, &e, seq)
	}
}

// deliver pushes one event to the local sessions that may see it.
func (lf *liveFeed) deliver(ctx context.Context, e *schemas.Event, seq uint64) {
	if e.Type == schemas.TypeMember {
		lf.gw.groups.applyLive(e, seq)
	}
	// The group state may be unreadable for a moment (NATS trouble): retry rather than skip, so no
	// session misses the event; the whole feed waits, as it would for NATS itself.
	var targets []*session
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		var err error
		targets, err = lf.gw.recipients(ctx, lf.scratch[:0], e, seq)
		if err == nil {
			break
		}
		lf.gw.log.Error("live feed: recipients", "seq", seq, "conv", e.Conv, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	lf.scratch = targets
	var g *schemas.Group
	if e.Type == schemas.TypeMember {
		if c, err := schemas.ParseConv(e.Conv); err == nil && c.Kind == schemas.ConvGroup {
			g, _ = lf.gw.groups.cached(ctx, c.Group)
		}
	}
	lf.gw.peersChanged(e, g)
	if len(targets) == 0 {
		return
	}
	// A prepared message frames once for all recipients; for a handful, plain writes are cheaper.
	f, err := newOutFrame(schemas.EventFrame(e, seq), len(targets) > 4)
	if err != nil {
		lf.gw.log.Error("live feed: encode", "seq", seq, "err", err)
		return
	}
	for _, s := range targets {
		s.deliverLive(seq, f)
	}
}

// recipients appends to dst the local sessions that may see event e at seq.
func (gw *Gateway) recipients(ctx context.Context, dst []*session, e *schemas.Event, seq uint64) ([]*session, error) {
	conv, err := schemas.ParseConv(e.Conv)
	if err != nil {
		return dst, err
	}
	var g *schemas.Group
	if conv.Kind == schemas.ConvGroup {
		if g, err = gw.groups.cached(ctx, conv.Group); err != nil {
			return dst, err
		}
	}
	sees := func(u string) bool {
		if conv.IsDirect() {
			return conv.Has(u)
		}
		return g.MemberAt(u, seq) || (e.Type == schemas.TypeMember && u == e.User)
	}
	h := gw.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	if audience := e.Audience(); audience != nil {
		// A private message inside a group, or an edit, delete or reaction of one: its sender, its
		// target and the original author only (each once), while members.
		for _, u := range audience {
			if sees(u) {
				dst = h.targets(dst, u)
			}
		}
		return dst, nil
	}
	if conv.IsDirect() {
		return h.targets(dst, conv.A, conv.B), nil
	}
	// Walk whichever is smaller: the group's members or this gateway's users.
	if len(g.Members) <= len(h.users) {
		for u := range g.Members {
			if sees(u) {
				dst = h.targets(dst, u)
			}
		}
		return dst, nil
	}
	for u := range h.users {
		if sees(u) {
			dst = h.targets(dst, u)
		}
	}
	return dst, nil
}

// outFrame is an encoded server frame; prep is set when it goes to many sessions, so the
// WebSocket framing is done once.
type outFrame struct {
	data []byte
	prep *websocket.PreparedMessage
}

func newOutFrame(v any, shared bool) (outFrame, error) {
	data, err := marshalFrame(v)
	if err != nil {
		return outFrame{}, err
	}
	f := outFrame{data: data}
	if shared {
		if f.prep, err = websocket.NewPreparedMessage(websocket.TextMessage, data); err != nil {
			return outFrame{}, err
		}
	}
	return f, nil
}
