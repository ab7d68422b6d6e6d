package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Edits, deletes and reactions ("changes") are message events that refer to an earlier ordinary
// message of the same conversation (Ref). They are rare next to messages, so they skip the group
// commit: each is one synchronous append whose expectations make it atomic with respect to deletes.
//
// A delete is an atomic batch of two events: a marker on the message's gone subject
// (schemas.GoneSubject), stored only if that subject is empty (Nats-Expected-Last-Subject-Sequence
// 0), then the delete event itself. Edits and reactions are stored only while the gone subject is
// still empty (the same header with -Subject naming it). JetStream checks and stores under one lock,
// so an edit is either stored before the delete or refused: the log never holds an edit, reaction or
// second delete of a message after its delete.

var (
	errNoSuchMessage  = schemas.Errorf(schemas.CodeNotFound, "no such message in this conversation")
	errDeletedMessage = schemas.Errorf(schemas.CodeNotFound, "message deleted")
)

var changeKinds = map[string]string{
	schemas.CmdEdit:   schemas.KindEdit,
	schemas.CmdDelete: schemas.KindDelete,
	schemas.CmdReact:  schemas.KindReact,
}

// cmdChange handles edit, delete and react.
func (gw *Gateway) cmdChange(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	kind := changeKinds[f.Cmd]
	conv, err := schemas.ParseConv(f.Conv)
	if err != nil {
		return badRequest("invalid conversation id")
	}
	if f.Seq == nil {
		return badRequest("seq (the message's) is required")
	}
	if f.Mid != "" && !schemas.ValidMid(f.Mid) {
		return badRequest("mid must match ^[A-Za-z0-9_-]{1,64}$")
	}
	e := schemas.Event{Type: schemas.TypeMessage, Conv: conv.String(), From: s.user, Mid: f.Mid, Kind: kind, Ref: *f.Seq}
	switch kind {
	case schemas.KindEdit:
		if err := checkMsgText(f.Msg); err != nil {
			return err
		}
		e.Msg = *f.Msg
	case schemas.KindReact:
		if err := checkEmoji(f.Emoji); err != nil {
			return err
		}
		remove, err := decodeRemoveFlag(f.Remove)
		if err != nil {
			return err
		}
		e.Emoji, e.Remove = f.Emoji, remove
	}
	if err := gw.requireMember(ctx, s.user, conv); err != nil {
		return err
	}
	orig, err := gw.refMessage(ctx, s.user, conv, *f.Seq)
	if err != nil {
		return err
	}
	if kind != schemas.KindReact && orig.From != s.user {
		return schemas.Errorf(schemas.CodeForbidden, "only the author may "+f.Cmd+" a message")
	}
	if kind == schemas.KindEdit {
		// An image, audio or file message stays one: its new msg follows the message's rule.
		if err := gw.checkAttachmentRef(ctx, conv, orig.MsgType, e.Msg); err != nil {
			return err
		}
	}
	e.RefFrom, e.Tid = orig.From, orig.Tid
	e.Ts = schemas.FormatTime(time.Now())

	// Every change carries a message id, so an append whose answer was lost can be retried; with a
	// mid it is the sender's, so a client's retry gets the first ack.
	msgID := "c:" + nuid.Next()
	if f.Mid != "" {
		msgID = schemas.DedupID(s.user, f.Mid)
	}
	seq, dup, err := gw.storeChange(ctx, conv, &e, msgID)
	if err != nil {
		return err
	}
	ack := schemas.AckFrame{Cmd: schemas.CmdAck, ID: f.ID, Conv: e.Conv, Seq: seq, Mid: f.Mid, Ts: e.Ts}
	if dup {
		if err := gw.firstAck(ctx, &ack); err != nil {
			return err
		}
	}
	gw.metrics.changes.WithLabelValues(kind).Inc()
	s.noteSeq(ack.Seq)
	s.reply(ack)
	return nil
}

// checkEmoji validates a reaction: 1 to 64 characters of UTF-8, no control characters.
func checkEmoji(emoji string) error {
	n := utf8.RuneCountInString(emoji)
	if n == 0 || n > schemas.MaxEmojiChars || !utf8.ValidString(emoji) {
		return badRequest("emoji must be 1 to 64 characters")
	}
	for _, r := range emoji {
		if unicode.IsControl(r) {
			return badRequest("emoji must not contain control characters")
		}
	}
	return nil
}

// decodeRemoveFlag reads react's remove: absent or null is false, else true or false.
func decodeRemoveFlag(raw json.RawMessage) (bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, badRequest("remove must be true or false")
	}
	return b, nil
}

// refMessage reads the ordinary message at seq of conv, which user must be allowed to see; anything
// else at seq (nothing, another conversation's event, a membership event, an edit) is not_found.
func (gw *Gateway) refMessage(ctx context.Context, user string, conv schemas.Conv, seq uint64) (*schemas.Event, error) {
	if seq == 0 {
		return nil, errNoSuchMessage
	}
	m, err := gw.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, errNoSuchMessage
	}
	if err != nil {
		return nil, err
	}
	if m.Subject != schemas.ContentSubject(conv) {
		return nil, errNoSuchMessage
	}
	e, err := schemas.DecodeEvent(m.Data)
	if err != nil {
		gw.log.Error("undecodable event", "seq", seq, "err", err)
		return nil, errNoSuchMessage
	}
	if e.Type != schemas.TypeMessage || e.Kind != "" || e.Conv != conv.String() || !e.VisibleTo(user) {
		return nil, errNoSuchMessage
	}
	return &e, nil
}

// storeChange appends a change (a delete with its gone marker) and returns its seq; dup reports a
// retried message id, whose first copy is at seq. A change of a deleted message is errDeletedMessage.
func (gw *Gateway) storeChange(ctx context.Context, conv schemas.Conv, e *schemas.Event, msgID string) (seq uint64, dup bool, err error) {
	data, err := json.Marshal(e)
	if err != nil {
		return 0, false, err
	}
	gone := schemas.GoneSubject(conv, e.Ref)
	none := uint64(0)
	ev := outMsg{subject: schemas.ContentSubject(conv), data: data, msgID: msgID}
	if e.Kind == schemas.KindDelete {
		marker, merr := json.Marshal(schemas.Event{Type: schemas.TypeGone, Conv: e.Conv, Ts: e.Ts, Ref: e.Ref})
		if merr != nil {
			return 0, false, merr
		}
		batch := []outMsg{{subject: gone, data: marker, expectLast: &none}, ev}
		err = gw.retryLost(ctx, func(ctx context.Context) error {
			seqs, aerr := appendAtomic(ctx, gw.nc, batch)
			if aerr == nil {
				seq = seqs[1]
			}
			return aerr
		})
		if err == nil {
			return seq, false, nil
		}
	} else {
		ev.expectLast, ev.expectSubject = &none, gone
		var ack pubAck
		err = gw.retryLost(ctx, func(ctx context.Context) error {
			var perr error
			ack, perr = publishSync(ctx, gw.nc, ev)
			return perr
		})
		if err == nil {
			return ack.Seq, ack.Duplicate, nil
		}
	}
	if !isWrongLastSeq(err) && !isJSError(err, jsErrBatchDuplicate) {
		return 0, false, err
	}
	// The message is deleted, or this is a retry of a change already stored (a client's retried
	// mid, or ours after a lost answer): JetStream checks the gone marker before the message id.
	// Ask about the id alone, with an expectation that never holds, so nothing can be stored:
	// a duplicate answers with its first sequence, anything else fails.
	probe := outMsg{subject: ev.subject, data: data, msgID: msgID, expectLastMsgID: "never:" + nuid.Next()}
	ack, perr := publishSync(ctx, gw.nc, probe)
	switch {
	case perr == nil && ack.Duplicate:
		return ack.Seq, true, nil
	case perr == nil:
		// Cannot happen (the expectation never holds); if it did, the change is stored.
		gw.log.Error("change stored by its dedup probe", "seq", ack.Seq)
		return ack.Seq, false, nil
	case isJSError(perr, jsErrWrongLastMsgID):
		return 0, false, errDeletedMessage
	}
	return 0, false, perr
}

// retryLost runs an append, again (up to three times in all) when its answer was lost: safe for
// appends that carry a message id or an expectation, which JetStream never stores twice.
func (gw *Gateway) retryLost(ctx context.Context, appendOnce func(ctx context.Context) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, gw.cfg.AppendTimeout)
		err = appendOnce(actx)
		cancel()
		if err == nil || !isLostAnswer(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}
