package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The gateway's side of the archive (schemas/archive.go has the archiver's NATS contract).
//
// The stream keeps a window of the log: its first sequence moves up when the archiver purges
// events it has archived, or when JetStream drops events past CHAT_RETENTION. Every event below
// the first sequence is in the archive when there is an archiver; when there is none, it is gone.
// History and sync read what the stream keeps from the stream and what it no longer keeps from
// the archive, and apply the same visibility rule to both (history: historyRead.visible; sync:
// canSee, whose ranges are also what the archive is asked for).
//
// The boundary moves while a read is under way. A reader takes the first sequence B before
// reading the stream (history: from a cache at most firstSeqMaxAge old, which may be lower than
// the real one, never higher; sync: fresh), reads the stream from B, then reads the first
// sequence F again, fresh. Events in [B, F) may have been purged under the read: they are read
// from the archive as well and merged, de-duplicated by seq. An event at or above F was in the
// stream the whole time (purges only remove a prefix). History merges before answering; sync,
// which sends as it reads, checks F after each batch it fetches from the stream and before sending
// it, so the events purged under the batch are sent first, in order.

// firstSeqMaxAge is how long a first sequence read from stream info is reused before the check.
const firstSeqMaxAge = time.Second

// errOldHistory answers a read that needs events older than the stream keeps when no archive
// answers.
var errOldHistory = schemas.Errorf(schemas.CodeUnavailable, "history older than the stream's window needs the archive")

// errNoArchive: nobody answers the archive's subject (no archiver configured, or none running).
var errNoArchive = errors.New("archive: no archiver is running")

// firstCache remembers the stream's first sequence for firstSeqMaxAge.
type firstCache struct {
	mu  sync.Mutex
	seq uint64
	at  time.Time
}

// firstSeq is the stream's first sequence (at least 1), at most firstSeqMaxAge old. It may be lower
// than the current one: a reader checks with freshFirst after reading.
func (gw *Gateway) firstSeq(ctx context.Context) (uint64, error) {
	gw.first.mu.Lock()
	seq, at := gw.first.seq, gw.first.at
	gw.first.mu.Unlock()
	if seq != 0 && time.Since(at) < firstSeqMaxAge {
		return seq, nil
	}
	return gw.freshFirst(ctx)
}

// freshFirst reads the stream's first sequence (at least 1) now.
func (gw *Gateway) freshFirst(ctx context.Context) (uint64, error) {
	first, _, err := gw.streamBounds(ctx)
	return first, err
}

// streamBounds returns the first sequence whose content the log keeps (at least 1) and the last
// one, read now; it refreshes the first-sequence cache. The first is the higher of the stream's
// first seq (JetStream's own limits) and the archiver's trim point, below which it purges content
// events (schemas.ArchiveTrimKey), membership events staying.
func (gw *Gateway) streamBounds(ctx context.Context) (first, last uint64, err error) {
	start := time.Now()
	// The trim point first: it is recorded before the purge it announces, so reading it before
	// the stream's state can only make first lower, never skip content.
	trimmed, err := gw.trimPoint(ctx)
	if err != nil {
		return 0, 0, err
	}
	info, err := gw.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream info: %w", err)
	}
	first = max(info.State.FirstSeq, trimmed, 1)
	gw.first.mu.Lock()
	gw.first.seq, gw.first.at = first, start
	gw.first.mu.Unlock()
	return first, info.State.LastSeq, nil
}

// trimPoint reads the archiver's trim point (0: it never trimmed).
func (gw *Gateway) trimPoint(ctx context.Context) (uint64, error) {
	e, err := gw.archiveKV.Get(ctx, schemas.ArchiveTrimKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("trim point: %w", err)
	}
	p, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("trim point %q: %w", e.Value(), err)
	}
	return p, nil
}

// afterBoundary runs the test hook right after a history read has taken the stream's first seq,
// before it reads the stream (tests move the boundary there).
func (gw *Gateway) afterBoundary() {
	if f := gw.testAfterBoundary.Load(); f != nil {
		(*f)()
	}
}

// convStart is a seq below which the conversation has no events, as far as the stream can tell:
// for a group whose creation event the stream still keeps, that event's seq; otherwise 0. It
// spares archive requests (and unavailable answers without an archive) for groups created within
// the stream's window. Both answers are permanent, so they are cached.
func (gw *Gateway) convStart(ctx context.Context, c schemas.Conv) (uint64, error) {
	if c.IsDirect() {
		return 0, nil
	}
	if v, ok := gw.groupStarts.Load(c.Group); ok {
		return v.(uint64), nil
	}
	var start uint64
	m, err := gw.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(schemas.MemberSubject(c.Group)))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return 0, fmt.Errorf("group start of %s: %w", c.Group, err)
	default:
		// The first membership event kept: the creation (the only one listing members) or a
		// later one, the creation having left the window.
		if e, err := schemas.DecodeEvent(m.Data); err == nil && e.Type == schemas.TypeMember && len(e.Members) > 0 {
			start = m.Sequence
		}
	}
	gw.groupStarts.Store(c.Group, start)
	return start, nil
}

// archiveConvsPerRequest is the most conversations one request names (schemas.MaxArchiveConvs;
// tests lower it).
var archiveConvsPerRequest atomic.Int64

func init() { archiveConvsPerRequest.Store(schemas.MaxArchiveConvs) }

// archiveRange reads the events of convs that user may see with a <= seq <= u from the archive,
// oldest first (or newest first with desc), in pages of at most pageLimit, calling fn for each
// until it returns false. More conversations than one request may name are asked in several
// requests per page, merged in seq order. It checks that the archive holds every event of the
// range it answers for (Archived), and that it answers within the range and in order.
func (gw *Gateway) archiveRange(ctx context.Context, user string, convs []schemas.ArchiveConv, a, u uint64, desc bool,
	pageLimit int, fn func(e *schemas.Event, seq uint64) bool) error {
	if a > u || len(convs) == 0 || u == 0 {
		return nil
	}
	chunks := slices.Collect(slices.Chunk(convs, int(archiveConvsPerRequest.Load())))
	after, before := a-1, u+1 // exclusive bounds; u is below the stream's first seq, so u+1 does not overflow
	for after+1 < before {
		// One page per chunk. Each page is complete up to its last event, or to the end of the
		// range when it is empty: events beyond the nearest of those bounds wait for the next round.
		var page []schemas.ArchivedEvent
		bound := before - 1
		if desc {
			bound = after + 1
		}
		for _, chunk := range chunks {
			req := schemas.ArchiveEventsRequest{User: user, Convs: chunk, After: after, Before: before,
				Limit: min(pageLimit, schemas.MaxArchiveEventsPage), Desc: desc}
			rep, err := gw.askArchived(ctx, &req)
			if err != nil {
				return err
			}
			if n := len(rep.Events); n > 0 {
				last := rep.Events[n-1].Seq
				if desc {
					bound = max(bound, last)
				} else {
					bound = min(bound, last)
				}
				page = append(page, rep.Events...)
			}
		}
		if len(page) == 0 {
			return nil
		}
		if len(chunks) > 1 {
			slices.SortFunc(page, func(x, y schemas.ArchivedEvent) int {
				if desc {
					return cmp.Compare(y.Seq, x.Seq)
				}
				return cmp.Compare(x.Seq, y.Seq)
			})
		}
		gw.metrics.archiveEvents.Add(float64(len(page)))
		for _, ae := range page {
			if desc && ae.Seq < bound || !desc && ae.Seq > bound {
				break
			}
			e, err := schemas.DecodeEvent(ae.Data)
			if err != nil {
				gw.log.Error("archive: undecodable event", "seq", ae.Seq, "err", err)
				continue
			}
			if !fn(&e, ae.Seq) {
				return nil
			}
		}
		if desc {
			before = bound
		} else {
			after = bound
		}
	}
	return nil
}

// askArchived asks the archive for one page and checks the answer: within the range asked and in
// order, and archived as far as it vouches for (up to its last event, or to the end of the range
// when it has no more; for a newest-first page, up to the end of the range). An archive that is
// behind is asked again a few times (it may be catching up), then the answer is unavailable.
func (gw *Gateway) askArchived(ctx context.Context, req *schemas.ArchiveEventsRequest) (*schemas.ArchiveEventsReply, error) {
	for attempt := 0; ; attempt++ {
		rep, err := gw.askArchive(ctx, req)
		if err != nil {
			return nil, err
		}
		var prev uint64
		for i, ae := range rep.Events {
			if ae.Seq <= req.After || ae.Seq >= req.Before || (i > 0 && (req.Desc && ae.Seq >= prev || !req.Desc && ae.Seq <= prev)) {
				return nil, fmt.Errorf("archive: answered seq %d outside (%d, %d) or out of order", ae.Seq, req.After, req.Before)
			}
			prev = ae.Seq
		}
		need := req.Before - 1
		if !req.Desc && len(rep.Events) > 0 {
			need = prev
		}
		if rep.Archived >= need {
			return rep, nil
		}
		if attempt == archiveBehindRetries {
			gw.log.Warn("archive: behind the stream's first seq", "archived", rep.Archived, "need", need)
			return nil, schemas.Errorf(schemas.CodeUnavailable, fmt.Sprintf("the archive does not hold the events up to seq %d yet", need))
		}
		t := time.NewTimer(archiveBehindWait << attempt)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// An archive behind the stream's first seq is asked again after 50 ms, then 100 ms.
const (
	archiveBehindRetries = 2
	archiveBehindWait    = 50 * time.Millisecond
)

// askArchive sends one ArchiveEventsRequest. No archiver is errNoArchive; no answer in time,
// or an archiver that cannot answer, is unavailable.
func (gw *Gateway) askArchive(ctx context.Context, req *schemas.ArchiveEventsRequest) (*schemas.ArchiveEventsReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, gw.cfg.ArchiveTimeout)
	defer cancel()
	start := time.Now()
	msg, err := gw.nc.RequestWithContext(rctx, schemas.ArchiveEventsRq, data)
	gw.metrics.archiveSeconds.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		gw.metrics.archiveRequests.WithLabelValues("no_archive").Inc()
		return nil, errNoArchive
	case err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)):
		gw.metrics.archiveRequests.WithLabelValues("timeout").Inc()
		gw.log.Warn("archive: no answer", "timeout", gw.cfg.ArchiveTimeout)
		return nil, errOldHistory
	case err != nil:
		gw.metrics.archiveRequests.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("archive: request: %w", err)
	}
	var rep schemas.ArchiveEventsReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		gw.metrics.archiveRequests.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("archive: undecodable answer: %w", err)
	}
	if rep.ErrCode != "" {
		gw.metrics.archiveRequests.WithLabelValues("error").Inc()
		gw.log.Warn("archive: error answer", "errCode", rep.ErrCode, "errMsg", rep.ErrMsg)
		if rep.ErrCode == schemas.CodeUnavailable {
			return nil, errOldHistory
		}
		return nil, fmt.Errorf("archive: %s: %s", rep.ErrCode, rep.ErrMsg)
	}
	gw.metrics.archiveRequests.WithLabelValues("ok").Inc()
	return &rep, nil
}

// oldHistoryError is what a read that needed the archive answers when it could not have it.
func oldHistoryError(err error) error {
	if errors.Is(err, errNoArchive) {
		return errOldHistory
	}
	return err
}

// refusedArchiveEvent counts an event the archive returned that the gateway's own rules do not
// let the user see: the archiver's filter and the gateway's disagree.
func (gw *Gateway) refusedArchiveEvent(user string, seq uint64) {
	gw.metrics.archiveRefused.Inc()
	gw.log.Warn("archive: returned an event the user may not see; dropped", "user", user, "seq", seq)
}

// testHook is a function tests run at a point of a read.
type testHook = atomic.Pointer[func()]
