package gateway

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/eventchat/chat/schemas"
)

// recentLog is the newest stretch of the log's conversation events (messages and membership), as
// this gateway's live feed read them: a read of the recent past (the sync of a client that
// reconnects, a history page of the last minutes) is answered from memory instead of asking
// JetStream. In a reconnect storm the direct gets made nats-server walk its message blocks for
// every client (a group's 50 events among thousands of others): 28 % of the CPU, and the rest of
// the read path's requests queued behind them.
//
// It holds every conversation event with seq in (floor, pos], and at most max of them: the oldest
// goes first (the events arrive in seq order), and floor follows it. Events are shared, read-only,
// with the readers.
type recentLog struct {
	mu    sync.RWMutex
	max   int
	pos   uint64 // the last seq the live feed has read
	floor uint64 // every conversation event with seq in (floor, pos] is held
	// bySubject holds each subject's events in seq order; order the subjects of all the events
	// held, oldest first, a ring of max (which subject the oldest event is on).
	bySubject map[string][]logEvent
	order     []string
	head, n   int
	// lost: the feed skipped an event without knowing its seq; the log holds nothing until the
	// next event, and only from there on.
	lost bool
}

// recentLogOff makes gateways started from now on keep no recent log, so that their reads go to
// the stream (for the tests of those paths).
var recentLogOff atomic.Bool

func newRecentLog(max int) *recentLog {
	if recentLogOff.Load() {
		max = 0
	}
	return &recentLog{max: max, bySubject: map[string][]logEvent{}}
}

// reset empties the log at the feed's start: it holds everything after pos (nothing yet).
func (r *recentLog) reset(pos uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resetLocked(pos)
}

func (r *recentLog) resetLocked(pos uint64) {
	r.pos, r.floor, r.lost = pos, pos, false
	clear(r.bySubject)
	r.order, r.head, r.n = nil, 0, 0
}

// skipped records that the feed passed over an event it could not place (no metadata): the log
// starts again after the next event's predecessor.
func (r *recentLog) skipped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resetLocked(r.pos)
	r.lost = true
}

// add records the event at seq on subject: a conversation event (message or membership) when e is
// not nil. Every event the feed reads comes here, in seq order, so that pos moves on.
func (r *recentLog) add(subject string, seq uint64, e *schemas.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq <= r.pos {
		return // read again (the feed resumed from an earlier point): held already
	}
	if r.lost {
		r.resetLocked(seq - 1)
	}
	r.pos = seq
	if r.max <= 0 {
		r.floor = seq
		return
	}
	if e == nil {
		return
	}
	if r.order == nil {
		r.order = make([]string, r.max)
	}
	if r.n == r.max {
		r.evictLocked()
	}
	r.order[(r.head+r.n)%r.max] = subject
	r.n++
	r.bySubject[subject] = append(r.bySubject[subject], logEvent{seq: seq, e: *e})
}

// evictLocked drops the oldest event held.
func (r *recentLog) evictLocked() {
	subject := r.order[r.head]
	r.order[r.head] = ""
	r.head = (r.head + 1) % r.max
	r.n--
	evs := r.bySubject[subject]
	r.floor = evs[0].seq
	if len(evs) == 1 {
		delete(r.bySubject, subject)
		return
	}
	evs[0] = logEvent{} // not kept alive by the slice's array
	r.bySubject[subject] = evs[1:]
}

// read returns the events on subjects with seq in [from, to], in seq order, as far as the log
// holds them: ok is false when it does not reach back to from; otherwise the events returned are
// all there are in [from, min(to, next-1)], and the rest, from next on, is for the caller to read
// from the stream (next > to: nothing).
func (r *recentLog) read(subjects []string, from, to uint64) (evs []logEvent, next uint64, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if from <= r.floor {
		return nil, 0, false
	}
	upTo := min(to, r.pos)
	for _, s := range subjects {
		held := r.bySubject[s]
		i, _ := slices.BinarySearchFunc(held, from, func(le logEvent, seq uint64) int { return cmp.Compare(le.seq, seq) })
		for ; i < len(held) && held[i].seq <= upTo; i++ {
			evs = append(evs, held[i])
		}
	}
	if len(subjects) > 1 {
		slices.SortFunc(evs, func(a, b logEvent) int { return cmp.Compare(a.seq, b.seq) })
	}
	return evs, upTo + 1, true
}

// holds reports whether every conversation event with seq in [from, to] is held.
func (r *recentLog) holds(from, to uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return from > r.floor && to <= r.pos
}
