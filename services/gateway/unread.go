package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// The gateway's side of unread counts. The unread service owns them (see schemas/unread.go for its
// NATS contract): the gateway appends read markers, relays the service's unread pushes to the
// user's sessions, and asks it for the conversation list.

// cmdRead appends a read marker; the unread service clamps it and pushes the new count.
func (gw *Gateway) cmdRead(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	conv, err := schemas.ParseConv(f.Conv)
	if err != nil {
		return badRequest("invalid conversation id")
	}
	if f.Seq == nil {
		return badRequest("seq is required")
	}
	if err := gw.requireMember(ctx, s.user, conv); err != nil {
		return err
	}
	if *f.Seq > 0 { // reading up to 0 moves no marker: nothing to store
		e := schemas.Event{Type: schemas.TypeRead, Conv: conv.String(), Ts: schemas.FormatTime(time.Now()), From: s.user, Seq: *f.Seq}
		data, err := json.Marshal(&e)
		if err != nil {
			return err
		}
		r := gw.appendWait(ctx, outMsg{subject: schemas.ReadSubject(s.user), data: data})
		if r.err != nil {
			return r.err
		}
		gw.metrics.reads.Inc()
		s.noteSeq(r.seq)
	}
	s.reply(schemas.OKFrame{Cmd: schemas.CmdOK, ID: f.ID})
	return nil
}

// appendWait appends one event through the group commit and waits until it is stored.
func (gw *Gateway) appendWait(ctx context.Context, m outMsg) appendResult {
	done := make(chan appendResult, 1)
	if err := gw.appender.enqueue(ctx, m, func(r appendResult) { done <- r }); err != nil {
		return appendResult{err: err}
	}
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		return appendResult{err: ctx.Err()}
	}
}

var errUnreadUnreachable = schemas.Errorf(schemas.CodeUnavailable, "the unread service is not reachable")

// cmdConversations asks the unread service for the user's conversation list, as of at least the
// highest seq this gateway knows the user has seen or stored (read-your-writes).
func (gw *Gateway) cmdConversations(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	req, err := json.Marshal(schemas.ConversationsRequest{User: s.user, MinSeq: gw.knownSeq(s.user)})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, gw.cfg.UnreadTimeout)
	defer cancel()
	start := time.Now()
	msg, err := gw.nc.RequestWithContext(rctx, schemas.UnreadConversationsRq, req)
	gw.metrics.unreadSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			gw.log.Warn("conversations: unread service", "err", err)
			return errUnreadUnreachable
		}
		return err
	}
	var reply schemas.ConversationsReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("conversations: bad reply from the unread service: %w", err)
	}
	if reply.ErrCode != "" {
		if !slices.Contains(schemas.ErrCodes, reply.ErrCode) {
			return fmt.Errorf("conversations: unread service answered unknown code %q: %s", reply.ErrCode, reply.ErrMsg)
		}
		return schemas.Errorf(reply.ErrCode, reply.ErrMsg)
	}
	items := reply.Items
	if items == nil {
		items = []schemas.ConversationItem{}
	}
	s.reply(schemas.ConversationsFrame{Cmd: schemas.CmdConversations, ID: f.ID, Items: items})
	return nil
}

// knownSeq is the highest seq this gateway knows of for user: the last one stored for a command of
// any of its sessions here, or delivered to one of them (live or by sync).
func (gw *Gateway) knownSeq(user string) uint64 {
	gw.hub.mu.RLock()
	sessions := gw.hub.targets(nil, user)
	gw.hub.mu.RUnlock()
	var seq uint64
	for _, s := range sessions {
		seq = max(seq, s.knownSeq())
	}
	return seq
}

// onUnreadChanged relays an unread change to the user's sessions on this gateway, once per session:
// every unread instance publishes each change, and a change whose cause a session already got for
// that conversation is dropped.
func (gw *Gateway) onUnreadChanged(m *nats.Msg) {
	var ch schemas.UnreadChanged
	if err := json.Unmarshal(m.Data, &ch); err != nil || !schemas.ValidUser(ch.User) || ch.Count < 0 {
		return
	}
	if m.Subject != schemas.UnreadChangedSubject(ch.User) {
		return
	}
	conv, err := schemas.ParseConv(ch.Conv)
	if err != nil {
		return
	}
	gw.hub.mu.RLock()
	sessions := gw.hub.targets(nil, ch.User)
	gw.hub.mu.RUnlock()
	if len(sessions) == 0 {
		return
	}
	f, err := newOutFrame(schemas.UnreadFrame{Cmd: schemas.CmdUnread, Conv: conv.String(), Count: ch.Count, ReadSeq: ch.ReadSeq}, false)
	if err != nil {
		return
	}
	for _, s := range sessions {
		if !s.newUnreadCause(ch.Conv, ch.Cause) {
			gw.metrics.unreadDups.Inc()
			continue
		}
		if s.enqueue(f) {
			gw.metrics.unreadPushes.Inc()
		}
	}
}

// maxUnreadCauses bounds the conversations whose last unread cause a session remembers; past it
// the oldest is forgotten (at worst a later duplicate of its change is pushed again, same count).
const maxUnreadCauses = 1024

// newUnreadCause records that the session gets the unread change of conv caused by the event at
// cause; false if it already got that change or a later one.
func (s *session) newUnreadCause(conv string, cause uint64) bool {
	s.unreadMu.Lock()
	defer s.unreadMu.Unlock()
	if last, ok := s.unreadCauses[conv]; ok && cause <= last {
		return false
	}
	if s.unreadCauses == nil {
		s.unreadCauses = map[string]uint64{}
	}
	if _, ok := s.unreadCauses[conv]; !ok && len(s.unreadCauses) >= maxUnreadCauses {
		oldest, min := "", uint64(0)
		for c, v := range s.unreadCauses {
			if oldest == "" || v < min {
				oldest, min = c, v
			}
		}
		delete(s.unreadCauses, oldest)
	}
	s.unreadCauses[conv] = cause
	return true
}

// noteSeq records the seq of an event stored for one of the session's commands.
func (s *session) noteSeq(seq uint64) {
	for {
		cur := s.lastStored.Load()
		if seq <= cur || s.lastStored.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// knownSeq is the highest seq stored for the session or delivered to it.
func (s *session) knownSeq() uint64 {
	s.mu.Lock()
	hi := s.covHi
	s.mu.Unlock()
	return max(hi, s.lastStored.Load())
}
