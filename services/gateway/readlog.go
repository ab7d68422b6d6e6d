package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// logEvent is one event read from the log or the archive, with its seq.
type logEvent struct {
	seq uint64
	e   schemas.Event
}

// readEvents reads the events on filters with seq in [from, to], in order, calling fn for each;
// fn returns false to stop early.
func (gw *Gateway) readEvents(ctx context.Context, filters []string, from, to uint64, fn func(e *schemas.Event, seq uint64) bool) error {
	return gw.readBatches(ctx, filters, from, to, func(batch []logEvent) bool {
		for i := range batch {
			if !fn(&batch[i].e, batch[i].seq) {
				return false
			}
		}
		return true
	})
}

// readBatches reads the events on filters with seq in [from, to], in order, a fetched batch at a
// time; fn returns false to stop. Every event of a batch was in the stream when the batch was
// fetched, before fn is called.
//
// It ends at to, or when the consumer has nothing pending, never merely because a fetch came back
// empty: under load the server may answer a no-wait fetch before the consumer has anything to
// deliver, and taking that for the end of the log would answer a sync with fewer events than it
// must (then its cursor would skip them for good). A read that cannot finish by ctx's deadline
// fails.
func (gw *Gateway) readBatches(ctx context.Context, filters []string, from, to uint64, fn func(batch []logEvent) bool) error {
	if len(filters) == 0 || from > to {
		return nil
	}
	// The recent past from memory (recent.go), the rest (events the live feed has not read yet,
	// usually none) from the stream.
	if evs, next, ok := gw.recent.read(filters, from, to); ok {
		for len(evs) > 0 {
			n := min(len(evs), directReadBatch)
			if !fn(evs[:n]) {
				return nil
			}
			evs = evs[n:]
		}
		if next > to {
			return nil
		}
		from = max(from, next)
	}
	if int64(len(filters)) <= directReadMaxSubjects.Load() {
		return gw.readDirect(ctx, filters, from, to, fn)
	}
	release, err := gw.acquireLogReader(ctx)
	if err != nil {
		return err
	}
	defer release()
	cons, err := gw.stream.OrderedConsumer(ctx, schemas.ReadConsumerConfig(filters, from))
	if err != nil {
		return fmt.Errorf("read log: consumer: %w", err)
	}
	defer gw.deleteReadConsumer(cons)
	var stalled time.Time // since when fetches came back empty with events pending
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("read log: fetch: %w", err)
		}
		var events []logEvent
		n, done := 0, false
		for msg := range batch.Messages() {
			n++
			if done {
				continue // drain the batch
			}
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read log: metadata: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > to {
				done = true
				continue
			}
			e, err := schemas.DecodeEvent(msg.Data())
			if err != nil {
				gw.log.Error("read log: undecodable event", "seq", seq, "err", err)
			} else {
				events = append(events, logEvent{seq, e})
			}
			if seq == to || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read log: %w", err)
		}
		if len(events) > 0 && !fn(events) {
			return nil
		}
		if done {
			return nil
		}
		if n > 0 {
			stalled = time.Time{}
		} else {
			// Nothing came: the end only if the consumer has nothing pending either.
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("read log: consumer info: %w", err)
			}
			if info.NumPending == 0 && info.NumAckPending == 0 {
				return nil
			}
			if stalled.IsZero() {
				stalled = time.Now()
			} else if time.Since(stalled) > readStallLimit {
				return fmt.Errorf("read log: %d events pending but none delivered for %s", info.NumPending, readStallLimit)
			}
			gw.metrics.logReadRetries.Inc()
			if !platform.Sleep(ctx, 5*time.Millisecond) {
				return fmt.Errorf("read log: %d events pending: %w", info.NumPending, ctx.Err())
			}
		}
	}
}

// readStallLimit is how long a log read waits for a consumer that has events pending but delivers
// none before it fails (the client gets an error, never a short answer).
const readStallLimit = 30 * time.Second

// acquireLogReader waits for one of the gateway's log-reader slots (cfg.LogReaders).
func (gw *Gateway) acquireLogReader(ctx context.Context) (release func(), err error) {
	select {
	case gw.logReaders <- struct{}{}:
		return func() { <-gw.logReaders }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("read log: waiting for a reader: %w", ctx.Err())
	}
}

// deleteReadConsumer deletes a read's consumer at once rather than after its inactivity
// threshold, so that a burst of reads does not pile up consumers against the stream's limit. It
// runs in the background: the reader does not wait for it, and a failure only leaves the consumer
// to expire.
func (gw *Gateway) deleteReadConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := gw.stream.DeleteConsumer(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			gw.log.Debug("read log: delete consumer", "consumer", info.Name, "err", err)
		}
	}()
}

// userConvs lists the conversations a user is in, or left after `after`, from the conversation
// index.
//
// It reads the user's index entries with one multi-last direct get, answered from the bucket's
// per-subject index; a user with more entries than one such answer holds (1,024) is read with a
// watch, a consumer.
func (gw *Gateway) userConvs(ctx context.Context, user string, after uint64) ([]schemas.Conv, error) {
	if directReadMaxSubjects.Load() > 0 { // 0: the tests' switch to the consumer paths
		convs, tooMany, err := gw.userConvsDirect(ctx, user, after)
		if err != nil || !tooMany {
			return convs, err
		}
	}
	release, err := gw.acquireLogReader(ctx) // a watch is a consumer too
	if err != nil {
		return nil, err
	}
	defer release()
	w, err := gw.index.WatchFiltered(ctx, []string{schemas.IndexPrefix(user)}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("index: watch: %w", err)
	}
	defer w.Stop()
	var convs []schemas.Conv
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case entry := <-w.Updates():
			if entry == nil {
				return convs, nil // the initial values are done
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
			convs = append(convs, conv)
		}
	}
}

// userConvsDirect is userConvs by one multi-last direct get; tooMany: the user has more entries
// than it answers with.
func (gw *Gateway) userConvsDirect(ctx context.Context, user string, after uint64) (convs []schemas.Conv, tooMany bool, err error) {
	prefix := "$KV." + schemas.IndexBucket + "."
	req, _ := json.Marshal(map[string]any{"multi_last": []string{prefix + schemas.IndexPrefix(user)}})
	rctx, cancel := context.WithTimeout(ctx, directReadTimeout)
	defer cancel()
	err = gw.gets.Request(rctx, "$JS.API.DIRECT.GET.KV_"+schemas.IndexBucket, req, func(m *nats.Msg) (bool, error) {
		switch status := m.Header.Get("Status"); {
		case status == "":
		case status == "204": // end of the answer
			return true, nil
		case status == "404" && m.Header.Get("Description") == "No Results": // no entry at all
			return true, nil
		case status == "413": // more than one answer holds
			tooMany = true
			return true, nil
		default:
			return true, fmt.Errorf("direct get answered %s %s", status, m.Header.Get("Description"))
		}
		// A deleted or purged key's last message is its marker.
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || m.Header.Get("Nats-Marker-Reason") != "" {
			return false, nil
		}
		_, conv, ok := schemas.ParseIndexKey(strings.TrimPrefix(m.Header.Get("Nats-Subject"), prefix))
		if !ok {
			return false, nil
		}
		var ie indexEntry
		_ = json.Unmarshal(m.Data, &ie)
		if ie.Left != 0 && ie.Left <= after {
			return false, nil
		}
		convs = append(convs, conv)
		return false, nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	return convs, tooMany, nil
}

// visibleRange is the seqs of a conversation user may see, as canSee decides: [from, to) (to 0:
// no end), besides the user's own member events, which are visible whatever their seq. ok is
// false if the user may see nothing of it.
func (gw *Gateway) visibleRange(ctx context.Context, user string, conv schemas.Conv) (from, to uint64, ok bool, err error) {
	if conv.IsDirect() {
		return 0, 0, conv.Has(user), nil
	}
	g, err := gw.groups.cached(ctx, conv.Group)
	if err != nil {
		return 0, 0, false, err
	}
	m := g.Members[user]
	if m == nil {
		return 0, 0, false, nil
	}
	return m.Since, m.Left, true, nil
}

// canSee reports whether user may see event e at seq: as a member of its conversation at that
// seq (or the subject of a membership event), and, for a private message and the edits, deletes
// and reactions of one, as one of its audience (Event.VisibleTo): the live feed's rule, and
// sync's, for events from the stream and from the archive alike.
func (gw *Gateway) canSee(ctx context.Context, user string, e *schemas.Event, seq uint64) (bool, error) {
	if !e.IsConvEvent() || !e.VisibleTo(user) {
		return false, nil
	}
	conv, err := schemas.ParseConv(e.Conv)
	if err != nil {
		return false, err
	}
	if !conv.IsDirect() && e.Type == schemas.TypeMember && e.User == user {
		return true, nil
	}
	from, to, ok, err := gw.visibleRange(ctx, user, conv)
	if err != nil || !ok {
		return false, err
	}
	return seq >= from && (to == 0 || seq < to), nil
}

// syncRun is one sync (or one long-poll read): it sends a user the events it may see in seq
// order, each once, from the archive (below the stream's window) and from the stream, through emit.
type syncRun struct {
	gw     *Gateway
	user   string
	emit   func(ctx context.Context, seq uint64, f outFrame) error
	after  uint64
	head   uint64
	lo, hi uint64 // the range the session already got live: skipped
	convs  []schemas.Conv
	inConv map[string]bool
	// archConvs: the conversations and visible ranges to ask the archive for, made on first use.
	archConvs []archiveConv
	archReady bool
	// noArchive: a sync from 0 found no archiver; it sends what the stream keeps, as it did before
	// there was an archive.
	noArchive bool
	next      uint64 // every event below next has been dealt with
	last      uint64 // the last seq sent
}

// archiveConv is a conversation to ask the archive for, and the seq it started at if the stream
// still keeps that (convStart).
type archiveConv struct {
	schemas.ArchiveConv
	start uint64
}

// send sends one event unless it was dealt with already, was delivered live, or is not visible.
func (r *syncRun) send(ctx context.Context, e *schemas.Event, seq uint64, fromArchive bool) error {
	if seq < r.next {
		return nil // had it (from the other source)
	}
	r.next = seq + 1
	if r.lo != 0 && seq >= r.lo && seq <= r.hi {
		return nil // delivered live already
	}
	if fromArchive && !r.inConv[e.Conv] {
		r.gw.refusedArchiveEvent(r.user, seq)
		return nil
	}
	ok, err := r.gw.canSee(ctx, r.user, e, seq)
	if err != nil {
		return err
	}
	if !ok {
		if fromArchive {
			r.gw.refusedArchiveEvent(r.user, seq)
		}
		return nil
	}
	f, err := newOutFrame(schemas.EventFrame(e, seq), false)
	if err != nil {
		return err
	}
	if err := r.emit(ctx, seq, f); err != nil {
		return err
	}
	r.last = seq
	return nil
}

// fromArchive sends the events of [r.next, u] from the archive, in order. It reports false when
// there is no archiver and the sync is from 0: then those events are skipped (what the stream
// keeps is "everything kept").
func (r *syncRun) fromArchive(ctx context.Context, u uint64) (bool, error) {
	if u < r.next || u == 0 {
		return true, nil
	}
	if r.noArchive {
		return false, nil
	}
	if !r.archReady {
		for _, c := range r.convs {
			start, err := r.gw.convStart(ctx, c)
			if err != nil {
				return false, err
			}
			from, to, ok, err := r.gw.visibleRange(ctx, r.user, c)
			if err != nil {
				return false, err
			}
			if ok {
				r.archConvs = append(r.archConvs, archiveConv{schemas.ArchiveConv{Conv: c.String(), From: from, To: to}, start})
			}
		}
		r.archReady = true
	}
	var convs []schemas.ArchiveConv
	for _, ac := range r.archConvs {
		if ac.start <= u { // a group created within the stream's window has nothing in the archive
			convs = append(convs, ac.ArchiveConv)
		}
	}
	var sendErr error
	err := r.gw.archiveRange(ctx, r.user, convs, r.next, u, false, schemas.MaxArchiveEventsPage,
		func(e *schemas.Event, seq uint64) bool {
			sendErr = r.send(ctx, e, seq, true)
			return sendErr == nil
		})
	if err == nil {
		err = sendErr
	}
	if errors.Is(err, errNoArchive) && r.after == 0 {
		r.noArchive = true
		r.gw.log.Debug("sync from 0: no archiver; sending what the stream keeps", "user", r.user)
		return false, nil
	}
	if err != nil {
		return false, oldHistoryError(err)
	}
	r.next = max(r.next, u+1)
	return true, nil
}

// sync sends a session every event it may see after `after`, in seq order, then synced. Live
// events are held back meanwhile and released after it; events the session already got live are
// not sent twice. Events below the stream's first seq come from the archive first; the boundary
// is checked again after each batch read from the stream (see archive.go).
func (gw *Gateway) sync(ctx context.Context, s *session, id string, after uint64) error {
	lo, hi := s.beginSync()
	err := gw.syncEvents(ctx, s, id, after, lo, hi)
	if err != nil {
		s.endSync(false, 0, 0)
	}
	return err
}

func (gw *Gateway) syncEvents(ctx context.Context, s *session, id string, after, lo, hi uint64) error {
	// Read the head after holding live events back (beginSync): everything up to it is read here,
	// everything after it arrives live.
	r, err := gw.readSince(ctx, s.user, after, lo, hi, func(ctx context.Context, _ uint64, f outFrame) error {
		if !s.enqueueWait(ctx, f) {
			return errors.New("session closed during sync")
		}
		return nil
	})
	if err != nil {
		return err
	}
	synced := r.head
	if r.last != 0 {
		synced = r.last
	}
	f, err := newOutFrame(schemas.SyncedFrame{Cmd: schemas.CmdSynced, ID: id, Seq: synced}, false)
	if err != nil {
		return err
	}
	s.enqueueWait(ctx, f)
	s.endSync(true, after, r.head)
	return nil
}

// readSince sends through emit every event user may see with seq in (after, head], head being
// the stream's last seq read now, in seq order, each once, except those in [lo, hi] (delivered
// live already). An error of emit stops the read and is returned, with the run so far (r.last:
// the last seq emitted).
func (gw *Gateway) readSince(ctx context.Context, user string, after, lo, hi uint64,
	emit func(ctx context.Context, seq uint64, f outFrame) error) (*syncRun, error) {
	// Read the index after the head: a conversation is indexed before its first event is
	// appended, so every conversation with events up to the head is listed.
	first, head, err := gw.streamBounds(ctx)
	if err != nil {
		return nil, err
	}
	convs, err := gw.userConvs(ctx, user, after)
	if err != nil {
		return nil, err
	}
	r := &syncRun{gw: gw, user: user, emit: emit, after: after, head: head, lo: lo, hi: hi, convs: convs,
		inConv: make(map[string]bool, len(convs)), next: after + 1}
	var filters []string
	for _, c := range convs {
		r.inConv[c.String()] = true
		filters = append(filters, schemas.ConvSubjects(c)...)
	}
	if after == math.MaxUint64 {
		r.next = after // nothing comes after it
	}
	// Below the stream's window: from the archive.
	if r.next < first {
		if _, err := r.fromArchive(ctx, min(first-1, head)); err != nil {
			return r, err
		}
		r.next = max(r.next, first)
	}
	// From the stream, checking after each batch that the boundary has not moved past the events
	// not yet sent (events purged under the read are read from the archive, before the batch).
	var runErr error
	check := func() error {
		if r.next > head || gw.recent.holds(r.next, head) {
			return nil // nothing left to read from the stream, so nothing a purge could take
		}
		f, err := gw.freshFirst(ctx)
		if err != nil {
			return err
		}
		if f > r.next && r.next <= head {
			gw.metrics.boundaryMoves.Inc()
			if _, err := r.fromArchive(ctx, min(f-1, head)); err != nil {
				return err
			}
		}
		return nil
	}
	err = gw.readBatches(ctx, filters, r.next, head, func(batch []logEvent) bool {
		if runErr = check(); runErr != nil {
			return false
		}
		for i := range batch {
			if runErr = r.send(ctx, &batch[i].e, batch[i].seq, false); runErr != nil {
				return false
			}
		}
		return true
	})
	if err == nil {
		err = runErr
	}
	if err == nil {
		err = check() // events purged after the last batch was read
	}
	return r, err
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

// history answers a member's request for a conversation's events, oldest first: what the stream
// keeps from the stream, what it no longer keeps from the archive (see archive.go).
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
	h := &historyRead{gw: gw, user: user, conv: q.conv, convStr: q.conv.String(), filters: schemas.ConvSubjects(q.conv),
		lo: 1, top: math.MaxUint64, limit: limit}
	if q.after != nil {
		if *q.after == math.MaxUint64 {
			return []any{}, nil // nothing after the largest cursor (and no overflow of after+1)
		}
		h.lo = *q.after + 1
	}
	if q.before != nil {
		if *q.before == 0 {
			return []any{}, nil
		}
		h.top = *q.before - 1
	}
	if h.lo > h.top {
		return []any{}, nil
	}
	var items []logFrame
	var err error
	if q.after != nil {
		items, err = h.forward(ctx)
	} else {
		items, err = h.backward(ctx)
	}
	if err != nil {
		return nil, err
	}
	out := make([]any, len(items)) // an empty page is [], never null
	for i := range items {
		out[i] = items[i].f
	}
	return out, nil
}

// logFrame is an event's frame with its seq.
type logFrame struct {
	seq uint64
	f   any
}

// historyRead is one history page being read: the events of conv with lo <= seq <= top.
type historyRead struct {
	gw      *Gateway
	user    string
	conv    schemas.Conv
	convStr string
	filters []string
	lo, top uint64
	limit   int
}

// visible is history's rule (docs/protocol.md): a current member sees the conversation's events
// from its beginning, except private messages (and their edits, deletes, reactions) of others.
// It is applied to events from the stream and from the archive alike.
func (h *historyRead) visible(e *schemas.Event) bool {
	return e.Conv == h.convStr && e.IsConvEvent() && e.VisibleTo(h.user)
}

// fromStream reads the visible events of [from, to] from the stream, oldest first: the first
// most of them, or all with most 0.
func (h *historyRead) fromStream(ctx context.Context, from, to uint64, most int) ([]logFrame, error) {
	var out []logFrame
	err := h.gw.readEvents(ctx, h.filters, from, to, func(e *schemas.Event, seq uint64) bool {
		if h.visible(e) {
			out = append(out, logFrame{seq, schemas.EventFrame(e, seq)})
		}
		return most == 0 || len(out) < most
	})
	return out, err
}

// fromArchive reads at most limit visible events of [a, u] from the archive: the oldest, or the
// newest with desc. The result is oldest first.
func (h *historyRead) fromArchive(ctx context.Context, a, u uint64, desc bool) ([]logFrame, error) {
	start, err := h.gw.convStart(ctx, h.conv)
	if err != nil {
		return nil, err
	}
	a = max(a, start)
	if a > u {
		return nil, nil
	}
	// History's visible range: the whole conversation (the user is a current member).
	convs := []schemas.ArchiveConv{{Conv: h.convStr}}
	var out []logFrame
	err = h.gw.archiveRange(ctx, h.user, convs, a, u, desc, h.limit, func(e *schemas.Event, seq uint64) bool {
		if !h.visible(e) {
			h.gw.refusedArchiveEvent(h.user, seq)
			return true
		}
		out = append(out, logFrame{seq, schemas.EventFrame(e, seq)})
		return len(out) < h.limit
	})
	if err != nil {
		return nil, oldHistoryError(err)
	}
	if desc {
		slices.Reverse(out)
	}
	return out, nil
}

// forward answers with the oldest limit events: from the archive below the stream's first seq B,
// then from the stream, then from the archive again for the events purged under the stream read.
func (h *historyRead) forward(ctx context.Context) ([]logFrame, error) {
	gw := h.gw
	b, err := gw.firstSeq(ctx)
	if err != nil {
		return nil, err
	}
	gw.afterBoundary()
	var items []logFrame
	if h.lo < b {
		if items, err = h.fromArchive(ctx, h.lo, min(h.top, b-1), false); err != nil {
			return nil, err
		}
		if len(items) >= h.limit {
			return items[:h.limit], nil
		}
	}
	sLo := max(h.lo, b)
	if sLo > h.top {
		return items, nil
	}
	fromStream, err := h.fromStream(ctx, sLo, h.top, h.limit-len(items))
	if err != nil {
		return nil, err
	}
	items = append(items, fromStream...)
	f, err := gw.freshFirst(ctx)
	if err != nil {
		return nil, err
	}
	if f > sLo {
		// The boundary moved during the read: [sLo, f) may have lost events under it.
		gw.metrics.boundaryMoves.Inc()
		u := min(h.top, f-1)
		if len(items) >= h.limit {
			u = min(u, items[h.limit-1].seq) // newer ones cannot make the page
		}
		more, err := h.fromArchive(ctx, sLo, u, false)
		if err != nil {
			return nil, err
		}
		items = mergeFrames(items, more)
	}
	return items[:min(len(items), h.limit)], nil
}

// backward answers with the newest limit events: from the stream backward from the
// conversation's last event in windows that grow until limit events are found, then from the
// archive for what the stream no longer keeps, and for the events purged under the stream read.
func (h *historyRead) backward(ctx context.Context) ([]logFrame, error) {
	gw := h.gw
	b, err := gw.firstSeq(ctx)
	if err != nil {
		return nil, err
	}
	gw.afterBoundary()
	last, err := gw.lastOf(ctx, h.filters)
	if err != nil {
		return nil, err
	}
	sLo, hi := max(h.lo, b), min(h.top, last)
	var items []logFrame
	readLo := hi + 1 // the lowest seq the stream reads covered
	window := uint64(h.limit) * 4
	for hi >= sLo && hi > 0 && len(items) < h.limit {
		start := sLo
		if hi-sLo+1 > window {
			start = hi - window + 1
		}
		chunk, err := h.fromStream(ctx, start, hi, 0)
		if err != nil {
			return nil, err
		}
		items = append(chunk, items...)
		readLo = start
		if start == sLo {
			break
		}
		hi = start - 1
		if window < 1<<40 {
			window *= 4
		}
	}
	f, err := gw.freshFirst(ctx)
	if err != nil {
		return nil, err
	}
	// From the archive: everything below the boundary if the page is not full; if it is, only
	// what may have been purged under the read and is newer than the page's oldest event.
	a := h.lo
	if len(items) >= h.limit {
		a = max(readLo, items[len(items)-h.limit].seq)
	}
	if u := min(h.top, f-1); a <= u {
		if f > b && readLo < f {
			gw.metrics.boundaryMoves.Inc()
		}
		more, err := h.fromArchive(ctx, a, u, true)
		if err != nil {
			return nil, err
		}
		items = mergeFrames(items, more)
	}
	if len(items) > h.limit {
		items = items[len(items)-h.limit:]
	}
	return items, nil
}

// mergeFrames merges two lists ordered by seq into one, each seq once.
func mergeFrames(a, b []logFrame) []logFrame {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.SortStableFunc(out, func(x, y logFrame) int {
		switch {
		case x.seq < y.seq:
			return -1
		case x.seq > y.seq:
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(x, y logFrame) bool { return x.seq == y.seq })
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
