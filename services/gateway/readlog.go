package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// readEvents reads the events on filters with seq in [from, to], in order, calling fn for each;
// fn returns false to stop early.
func (gw *Gateway) readEvents(ctx context.Context, filters []string, from, to uint64, fn func(e *schemas.Event, seq uint64) bool) error {
	if len(filters) == 0 || from > to {
		return nil
	}
	cons, err := gw.stream.OrderedConsumer(ctx, schemas.ReadConsumerConfig(filters, from))
	if err != nil {
		return fmt.Errorf("read log: consumer: %w", err)
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("read log: fetch: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read log: metadata: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > to {
				return nil
			}
			e, err := schemas.DecodeEvent(msg.Data())
			if err != nil {
				gw.log.Error("read log: undecodable event", "seq", seq, "err", err)
				continue
			}
			if !fn(&e, seq) || seq == to || meta.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read log: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// streamBounds returns the first and last sequence the log keeps.
func (gw *Gateway) streamBounds(ctx context.Context) (first, last uint64, err error) {
	info, err := gw.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// userFilters lists the subjects that carry the events of the conversations a user is in, or left
// after `after`, from the conversation index.
func (gw *Gateway) userFilters(ctx context.Context, user string, after uint64) ([]string, error) {
	w, err := gw.index.WatchFiltered(ctx, []string{schemas.IndexPrefix(user)}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("index: watch: %w", err)
	}
	defer w.Stop()
	var filters []string
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case entry := <-w.Updates():
			if entry == nil {
				return filters, nil // the initial values are done
			}
			_, conv, ok := schemas.ParseIndexKey(entry.Key())
			if !ok {
				continue
			}
			var ie indexEntry
			_ = json.Unmarshal(entry.Value(), &ie)
			if ie.Left != 0 && ie.Left <= after {
				continue
			}
			filters = append(filters, schemas.ConvSubjects(conv)...)
		}
	}
}

// canSee reports whether user may see event e at seq: as a member of its conversation at that
// seq (or the subject of a membership event), and, for a private message and the edits, deletes
// and reactions of one, as one of its audience (Event.VisibleTo): the live feed's rule.
func (gw *Gateway) canSee(ctx context.Context, user string, e *schemas.Event, seq uint64) (bool, error) {
	if !e.IsConvEvent() || !e.VisibleTo(user) {
		return false, nil
	}
	conv, err := schemas.ParseConv(e.Conv)
	if err != nil {
		return false, err
	}
	if conv.IsDirect() {
		return conv.Has(user), nil
	}
	if e.Type == schemas.TypeMember && e.User == user {
		return true, nil
	}
	g, err := gw.groups.cached(ctx, conv.Group)
	if err != nil {
		return false, err
	}
	return g.MemberAt(user, seq), nil
}

// sync sends a session every event it may see after `after`, in seq order, then synced. Live
// events are held back meanwhile and released after it; events the session already got live are
// not sent twice.
func (gw *Gateway) sync(ctx context.Context, s *session, id string, after uint64) error {
	lo, hi := s.beginSync()
	// Read the head after holding live events back: everything up to it is read here, everything
	// after it arrives live. Read the index after the head: a conversation is indexed before its
	// first event is appended, so every conversation with events up to the head is listed.
	first, head, err := gw.streamBounds(ctx)
	if err != nil {
		s.endSync(false, 0, 0)
		return err
	}
	filters, err := gw.userFilters(ctx, s.user, after)
	if err != nil {
		s.endSync(false, 0, 0)
		return err
	}
	if after > 0 && first > 1 && after < first-1 {
		s.endSync(false, 0, 0)
		return schemas.Errorf(schemas.CodeUnavailable, fmt.Sprintf("events before seq %d are no longer kept", first))
	}
	var last uint64
	var seeErr error
	err = gw.readEvents(ctx, filters, after+1, head, func(e *schemas.Event, seq uint64) bool {
		if lo != 0 && seq >= lo && seq <= hi {
			return true // delivered live already
		}
		ok, err := gw.canSee(ctx, s.user, e, seq)
		if err != nil {
			seeErr = err
			return false
		}
		if !ok {
			return true
		}
		f, err := newOutFrame(schemas.EventFrame(e, seq), false)
		if err != nil {
			seeErr = err
			return false
		}
		if !s.enqueueWait(ctx, f) {
			seeErr = errors.New("session closed during sync")
			return false
		}
		last = seq
		return true
	})
	if err == nil {
		err = seeErr
	}
	if err != nil {
		s.endSync(false, 0, 0)
		return err
	}
	synced := head
	if last != 0 {
		synced = last
	}
	f, err := newOutFrame(schemas.SyncedFrame{Cmd: schemas.CmdSynced, ID: id, Seq: synced}, false)
	if err != nil {
		s.endSync(false, 0, 0)
		return err
	}
	s.enqueueWait(ctx, f)
	s.endSync(true, after, head)
	return nil
}

// historyQuery is a history request; before and after are exclusive bounds.
type historyQuery struct {
	conv          schemas.Conv
	before, after *uint64
	limit         *int
}

const (
	defaultHistoryLimit = 50
	maxHistoryLimit     = 200
)

// history answers a member's request for a conversation's events, oldest first.
func (gw *Gateway) history(ctx context.Context, user string, q historyQuery) ([]any, error) {
	limit := defaultHistoryLimit
	if q.limit != nil {
		if *q.limit < 1 {
			return nil, badRequest("limit must be at least 1")
		}
		limit = min(*q.limit, maxHistoryLimit)
	}
	if q.conv.IsDirect() {
		if !q.conv.Has(user) {
			return nil, errForbidden
		}
	} else if _, member, err := gw.groups.memberNow(ctx, q.conv.Group, user); err != nil {
		return nil, err
	} else if !member {
		return nil, errForbidden
	}
	filters := schemas.ConvSubjects(q.conv)
	first, head, err := gw.streamBounds(ctx)
	if err != nil {
		return nil, err
	}
	lo, hi := first, head
	if q.after != nil {
		if *q.after >= head {
			return []any{}, nil // nothing after the head (and no overflow of after+1)
		}
		lo = max(lo, *q.after+1)
	}
	if q.before != nil {
		if *q.before == 0 {
			return []any{}, nil
		}
		hi = min(hi, *q.before-1)
	}
	out := []any{}
	collect := func(dst *[]any) func(e *schemas.Event, seq uint64) bool {
		return func(e *schemas.Event, seq uint64) bool {
			if e.IsConvEvent() && e.VisibleTo(user) {
				*dst = append(*dst, schemas.EventFrame(e, seq))
			}
			return true
		}
	}
	if q.after != nil {
		// Forward from after: the oldest limit events.
		err := gw.readEvents(ctx, filters, lo, hi, func(e *schemas.Event, seq uint64) bool {
			collect(&out)(e, seq)
			return len(out) < limit
		})
		return out, err
	}
	// Backward from before (or the head): windows that grow until limit events are found.
	if q.before == nil {
		if hi, err = gw.lastOf(ctx, filters); err != nil {
			return nil, err
		}
	}
	window := uint64(limit) * 4
	for hi >= lo && hi > 0 && len(out) < limit {
		start := lo
		if hi-lo+1 > window {
			start = hi - window + 1
		}
		var chunk []any
		if err := gw.readEvents(ctx, filters, start, hi, collect(&chunk)); err != nil {
			return nil, err
		}
		out = append(chunk, out...)
		if start == lo {
			break
		}
		hi, window = start-1, window*4
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	if out == nil {
		out = []any{} // an empty page is [], never null
	}
	return out, nil
}

// lastOf is the highest sequence on any of the subjects, 0 if none.
func (gw *Gateway) lastOf(ctx context.Context, subjects []string) (uint64, error) {
	var last uint64
	for _, subj := range subjects {
		m, err := gw.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("last of %s: %w", subj, err)
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}
