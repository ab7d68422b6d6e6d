package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/eventchat/chat/schemas"
	"golang.org/x/sync/errgroup"
)

func badRequest(msg string) error { return schemas.Errorf(schemas.CodeBadRequest, msg) }

var errForbidden = schemas.Errorf(schemas.CodeForbidden, "not a member of this conversation")

// dispatch runs one client command. It answers the frame itself (ok, ack, ...) or returns an error
// for the caller to answer.
func (gw *Gateway) dispatch(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	switch f.Cmd {
	case schemas.CmdPing:
		s.reply(schemas.PongFrame{Cmd: schemas.CmdPong, ID: f.ID})
		return nil
	case schemas.CmdLogin:
		if s.poll != nil {
			return badRequest("login is not used over long-poll: the bearer token authenticates each poll")
		}
		return badRequest("already logged in")
	case schemas.CmdMessage:
		return gw.cmdMessage(ctx, s, f)
	case schemas.CmdCreate:
		return gw.cmdCreate(ctx, s, f)
	case schemas.CmdJoin, schemas.CmdLeave, schemas.CmdInvite:
		return gw.cmdMembership(ctx, s, f)
	case schemas.CmdSync:
		if s.poll != nil {
			return badRequest("sync is not used over long-poll: the poll's cursor resumes")
		}
		return gw.cmdSync(ctx, s, f)
	case schemas.CmdHistory:
		return gw.cmdHistory(ctx, s, f)
	case schemas.CmdTyping:
		return gw.cmdTyping(ctx, s, f)
	case schemas.CmdPresence:
		return gw.cmdPresence(ctx, s, f)
	case schemas.CmdActivity:
		return gw.cmdActivity(s, f)
	case schemas.CmdEdit, schemas.CmdDelete, schemas.CmdReact:
		return gw.cmdChange(ctx, s, f)
	case schemas.CmdRead:
		return gw.cmdRead(ctx, s, f)
	case schemas.CmdConversations:
		return gw.cmdConversations(ctx, s, f)
	case schemas.CmdContacts:
		return gw.cmdContacts(ctx, s, f)
	}
	return badRequest("unknown cmd")
}

// cmdMessage validates a message, appends it through the group commit, and acks it once stored.
// The read pump does not wait for storage: a client may have MaxPendingAcks messages in flight.
func (gw *Gateway) cmdMessage(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	start := time.Now()
	switch {
	case !schemas.ValidMid(f.Mid):
		return badRequest("mid must match ^[A-Za-z0-9_-]{1,64}$")
	case !schemas.MessageTypes[f.Type]:
		return badRequest("type must be text, image, audio or file")
	case f.To != "" && f.Conv != "":
		return badRequest("give conv or to, not both")
	case f.To == "" && f.Conv == "":
		return badRequest("conv or to is required")
	}
	if err := checkMsgText(f.Msg); err != nil {
		return err
	}
	conv, err := gw.authorizeSend(ctx, s.user, f)
	if err != nil {
		return err
	}
	if err := gw.checkAttachmentRef(ctx, conv, f.Type, *f.Msg); err != nil {
		return err
	}
	e := schemas.Event{Type: schemas.TypeMessage, Conv: conv.String(), Ts: schemas.FormatTime(start),
		From: s.user, Mid: f.Mid, MsgType: f.Type, Msg: *f.Msg, Tid: f.Tid}
	data, err := json.Marshal(&e)
	if err != nil {
		return err
	}
	select {
	case s.acks <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	id := f.ID
	s.inflight.Add(1)
	err = gw.appender.enqueue(ctx, outMsg{subject: schemas.ContentSubject(conv), data: data,
		msgID: schemas.DedupID(s.user, f.Mid)}, func(r appendResult) {
		if !r.dup || r.err != nil {
			gw.finishAck(s, id, &e, r, start)
			return
		}
		// A retried mid: answer with the first copy's ack, read back from the log.
		go gw.finishAck(s, id, &e, r, start)
	})
	if err != nil {
		<-s.acks
		s.inflight.Done()
		return err
	}
	return nil
}

// checkMsgText validates the msg of a message or an edit.
func checkMsgText(msg *string) error {
	switch {
	case msg == nil || *msg == "":
		return badRequest("msg is empty")
	case len(*msg) > schemas.MaxMsgBytes:
		return schemas.Errorf(schemas.CodeTooLarge, "msg longer than 16 KiB")
	case !utf8.ValidString(*msg):
		return badRequest("msg is not valid UTF-8")
	}
	return nil
}

// finishAck answers a stored (or failed) message and releases its slot.
func (gw *Gateway) finishAck(s *session, id string, e *schemas.Event, r appendResult, start time.Time) {
	defer s.inflight.Done()
	defer func() { <-s.acks }()
	if r.err != nil {
		s.replyErr(id, r.err)
		return
	}
	ack := schemas.AckFrame{Cmd: schemas.CmdAck, ID: id, Conv: e.Conv, Seq: r.seq, Mid: e.Mid, Ts: e.Ts}
	if r.dup {
		ctx, cancel := context.WithTimeout(gw.baseCtx, commandTimeout)
		defer cancel()
		if err := gw.firstAck(ctx, &ack); err != nil {
			s.replyErr(id, err)
			return
		}
	} else {
		gw.metrics.appendSeconds.Observe(time.Since(start).Seconds())
	}
	gw.metrics.acks.Inc()
	s.noteSeq(ack.Seq)
	s.reply(ack)
}

// firstAck turns ack into the first ack of a retried mid: ack.Seq is the first copy's seq, whose
// conv and ts are read back from the log.
func (gw *Gateway) firstAck(ctx context.Context, ack *schemas.AckFrame) error {
	gw.metrics.dups.Inc()
	m, err := gw.stream.GetMsg(ctx, ack.Seq)
	if err != nil {
		return fmt.Errorf("read first copy of a retried mid: %w", err)
	}
	first, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		return err
	}
	ack.Conv, ack.Ts = first.Conv, first.Ts
	return nil
}

// authorizeSend resolves the conversation of a message frame and checks that the sender may post
// to it, with the protocol's answers for each mistake.
func (gw *Gateway) authorizeSend(ctx context.Context, user string, f *schemas.ClientFrame) (schemas.Conv, error) {
	var conv schemas.Conv
	var err error
	if f.To != "" {
		if !schemas.ValidUser(f.To) {
			return conv, badRequest("to must be a user id")
		}
		if f.To == user {
			return conv, badRequest("a conversation with oneself is not allowed")
		}
		conv, _ = schemas.DirectConv(user, f.To)
	} else if conv, err = schemas.ParseConv(f.Conv); err != nil {
		return conv, badRequest("invalid conversation id")
	}
	if conv.IsDirect() {
		if !conv.Has(user) {
			return conv, errForbidden
		}
		if f.Tid != "" {
			return conv, badRequest("tid is only for groups")
		}
		other := conv.Other(user)
		ok, err := gw.accounts.Exists(ctx, other)
		if err != nil {
			return conv, err
		}
		if !ok {
			return conv, schemas.Errorf(schemas.CodeNotFound, "no such user")
		}
		return conv, gw.indexDirect(ctx, conv)
	}
	g, member, err := gw.groups.memberNow(ctx, conv.Group, user)
	if err != nil {
		return conv, err
	}
	if !member {
		return conv, errForbidden
	}
	if f.Tid != "" && (!schemas.ValidUser(f.Tid) || !g.IsMember(f.Tid)) {
		return conv, badRequest("tid must be a member of the group")
	}
	return conv, nil
}

// requireMember answers forbidden unless user is a member of conv now (for a direct conversation:
// one of its two users), whether the conversation exists or not.
func (gw *Gateway) requireMember(ctx context.Context, user string, conv schemas.Conv) error {
	if conv.IsDirect() {
		if !conv.Has(user) {
			return errForbidden
		}
		return nil
	}
	_, member, err := gw.groups.memberNow(ctx, conv.Group, user)
	if err != nil {
		return err
	}
	if !member {
		return errForbidden
	}
	return nil
}

// indexDirect records a direct conversation in both users' conversation index, once per process.
// It is written before the first message is appended, so a sync always knows the conversation.
func (gw *Gateway) indexDirect(ctx context.Context, conv schemas.Conv) error {
	key := conv.String()
	if _, ok := gw.dmIndex.Load(key); ok {
		return nil
	}
	for _, u := range []string{conv.A, conv.B} {
		if _, err := gw.index.Put(ctx, schemas.IndexKey(u, conv), []byte("{}")); err != nil {
			return fmt.Errorf("index %s: %w", key, err)
		}
	}
	gw.dmIndex.Store(key, struct{}{})
	gw.invalidatePeers(conv.A, conv.B)
	return nil
}

// maxCreateMembers bounds a create: its events are one atomic batch (JetStream allows 1000).
const maxCreateMembers = 999

func groupOf(conv string) (schemas.Conv, error) {
	c, err := schemas.ParseConv(conv)
	if err != nil || c.Kind != schemas.ConvGroup {
		return c, badRequest("conv must be a group id g:<group>")
	}
	return c, nil
}

func (gw *Gateway) cmdCreate(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	conv, err := groupOf(f.Conv)
	if err != nil {
		return err
	}
	name := ""
	if f.Name != nil {
		name = *f.Name
		if !utf8.ValidString(name) || utf8.RuneCountInString(name) > schemas.MaxNameLen {
			return badRequest("name must be valid UTF-8 of at most 128 characters")
		}
	}
	members := []string{s.user}
	for _, m := range f.Members {
		if !schemas.ValidUser(m) {
			return badRequest("members must be user ids")
		}
		if !slices.Contains(members, m) {
			members = append(members, m)
		}
	}
	if len(members) > maxCreateMembers+1 {
		return badRequest(fmt.Sprintf("at most %d members at creation; invite the rest", maxCreateMembers))
	}
	if err := gw.allExist(ctx, members[1:]); err != nil {
		return err
	}
	ts := schemas.FormatTime(time.Now())
	g, err := gw.groups.change(ctx, conv.Group, func(g *schemas.Group) ([]schemas.Event, error) {
		if g.Exists() {
			return nil, schemas.Errorf(schemas.CodeConflict, "group exists")
		}
		events := make([]schemas.Event, len(members))
		for i, m := range members {
			events[i] = schemas.Event{Type: schemas.TypeMember, Conv: conv.String(), Ts: ts, User: m,
				Action: schemas.ActionJoined, By: s.user}
		}
		events[0].Name, events[0].Public, events[0].Members = name, f.Public, members
		return events, nil
	})
	if err != nil {
		return err
	}
	s.noteSeq(g.Seq)
	s.reply(schemas.OKFrame{Cmd: schemas.CmdOK, ID: f.ID})
	return nil
}

// cmdMembership handles join, leave and invite. Asking about a group one may not see answers
// forbidden whether it exists or not.
func (gw *Gateway) cmdMembership(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	conv, err := groupOf(f.Conv)
	if err != nil {
		return err
	}
	target, action := s.user, ""
	switch f.Cmd {
	case schemas.CmdJoin:
		action = schemas.ActionJoined
	case schemas.CmdLeave:
		action = schemas.ActionLeft
	case schemas.CmdInvite:
		action, target = schemas.ActionInvited, f.User
		if !schemas.ValidUser(target) {
			return badRequest("user must be a user id")
		}
	}
	if f.Cmd == schemas.CmdInvite {
		// Only members learn whether the invitee exists.
		if _, member, err := gw.groups.memberNow(ctx, conv.Group, s.user); err != nil {
			return err
		} else if !member {
			return errForbidden
		}
		ok, err := gw.accounts.Exists(ctx, target)
		if err != nil {
			return err
		}
		if !ok {
			return schemas.Errorf(schemas.CodeNotFound, "no such user")
		}
	}
	ts := schemas.FormatTime(time.Now())
	g, err := gw.groups.change(ctx, conv.Group, func(g *schemas.Group) ([]schemas.Event, error) {
		ev := schemas.Event{Type: schemas.TypeMember, Conv: conv.String(), Ts: ts, User: target, Action: action, By: s.user}
		switch f.Cmd {
		case schemas.CmdJoin:
			if !g.Exists() || !g.Public {
				return nil, errForbidden
			}
			if g.IsMember(target) {
				return nil, nil
			}
		case schemas.CmdLeave:
			if !g.IsMember(target) {
				return nil, errForbidden
			}
		case schemas.CmdInvite:
			if !g.IsMember(s.user) {
				return nil, errForbidden
			}
			if g.IsMember(target) {
				return nil, nil
			}
		}
		return []schemas.Event{ev}, nil
	})
	if err != nil {
		return err
	}
	s.noteSeq(g.Seq)
	s.reply(schemas.OKFrame{Cmd: schemas.CmdOK, ID: f.ID})
	return nil
}

func (gw *Gateway) cmdSync(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	var after uint64
	if f.After != nil {
		after = *f.After
	}
	// A sync may read much: it gets longer than an ordinary command, bounded all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	return gw.sync(ctx, s, f.ID, after)
}

func (gw *Gateway) cmdHistory(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	conv, err := schemas.ParseConv(f.Conv)
	if err != nil {
		return badRequest("invalid conversation id")
	}
	msgs, err := gw.history(ctx, s.user, historyQuery{conv: conv, before: f.Before, after: f.After, limit: f.Limit})
	if err != nil {
		return err
	}
	s.reply(schemas.HistoryFrame{Cmd: schemas.CmdHistory, ID: f.ID, Conv: conv.String(), Messages: msgs})
	return nil
}

// allExist checks that every user has an account (in parallel, bounded): not_found names the first
// missing one in the order given.
func (gw *Gateway) allExist(ctx context.Context, users []string) error {
	found := make([]bool, len(users))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelKV)
	for i, u := range users {
		g.Go(func() error {
			ok, err := gw.accounts.Exists(gctx, u)
			found[i] = ok
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, ok := range found {
		if !ok {
			return schemas.Errorf(schemas.CodeNotFound, "no such user: "+users[i])
		}
	}
	return nil
}
