package presence

import (
	"sync"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// state is what one instance knows of both buckets, from its watchers and its own writes. It is a
// cache: every decision that writes re-reads the buckets, and compare-and-swap settles races. It
// keeps heartbeats cheap (no read to know whether a recompute is needed) and finds the pending
// offlines.
type state struct {
	mu sync.Mutex
	// conns: every connection key seen, live or closed (a tombstone, kept a while so a report
	// that arrives after the disconnect does not bring the connection back).
	conns map[string]*connRec
	live  map[string]int // user -> live connections
	// aggs: the aggregates of users not offline.
	aggs map[string]aggRec
	// gone: users this instance wrote offline at a revision its watcher may not have delivered
	// yet; older revisions of theirs are not taken back into aggs. Forgotten after goneFor.
	gone map[string]goneRec
	// pending: users with OfflineAt, and when; checking: those with an offline check queued.
	pending  map[string]time.Time
	checking map[string]bool
	gauge    prometheus.Gauge
}

type connRec struct {
	user     string
	rev      uint64
	entry    schemas.ConnEntry
	closed   bool
	closedAt time.Time
}

type goneRec struct {
	rev uint64
	at  time.Time
}

// goneFor is how long an offline write of this instance waits for its watcher to deliver it.
const goneFor = time.Minute

type aggRec struct {
	state schemas.PresenceState
	rev   uint64
}

func newState(gauge prometheus.Gauge) *state {
	st := &state{gauge: gauge}
	st.resetConns()
	st.resetAggs()
	return st
}

// resetConns forgets every connection (before the conns bucket is read again).
func (st *state) resetConns() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conns = map[string]*connRec{}
	st.live = map[string]int{}
}

// resetAggs forgets every aggregate (before the aggregates bucket is read again).
func (st *state) resetAggs() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.aggs = map[string]aggRec{}
	st.gone = map[string]goneRec{}
	st.pending = map[string]time.Time{}
	if st.checking == nil {
		st.checking = map[string]bool{}
	}
	st.gauge.Set(0)
}

// conn returns what is known of a connection key.
func (st *state) conn(key string) (connRec, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	rec, ok := st.conns[key]
	if !ok {
		return connRec{}, false
	}
	return *rec, true
}

// connPut records a stored entry at rev; older revisions than the one known are ignored.
func (st *state) connPut(key, user string, rev uint64, entry schemas.ConnEntry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := st.conns[key]
	wasLive := false
	if rec != nil {
		wasLive = !rec.closed
		if rev <= rec.rev {
			return
		}
	} else {
		rec = &connRec{user: user}
		st.conns[key] = rec
	}
	if !wasLive {
		st.live[user]++
	}
	rec.rev, rec.entry, rec.closed, rec.closedAt = rev, entry, false, time.Time{}
}

// connClosed records a disconnect: rev is the delete marker's revision, 0 for this instance's own
// delete (whose revision is unknown). It reports whether the connection was live or unknown, i.e.
// whether the user's aggregate may have to change.
func (st *state) connClosed(key, user string, rev uint64, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := st.conns[key]
	if rec == nil {
		st.conns[key] = &connRec{user: user, rev: rev, closed: true, closedAt: now}
		return true
	}
	if rev != 0 && rev <= rec.rev {
		return false
	}
	if rev > rec.rev {
		rec.rev = rev
	}
	if rec.closed {
		return false
	}
	rec.closed, rec.closedAt = true, now
	st.dropLive(user)
	return true
}

// connExpired records an expired (or purged) connection at rev. A closed one stays a tombstone.
// It reports whether the connection was live or unknown.
func (st *state) connExpired(key, user string, rev uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := st.conns[key]
	if rec == nil {
		return true
	}
	if rev <= rec.rev || rec.closed {
		return false
	}
	delete(st.conns, key)
	st.dropLive(rec.user)
	return true
}

func (st *state) dropLive(user string) {
	if st.live[user] <= 1 {
		delete(st.live, user)
	} else {
		st.live[user]--
	}
}

// forget drops tombstones closed before t, and offline writes older than goneFor.
func (st *state) forget(t, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for key, rec := range st.conns {
		if rec.closed && rec.closedAt.Before(t) {
			delete(st.conns, key)
		}
	}
	for user, g := range st.gone {
		if now.Sub(g.at) > goneFor {
			delete(st.gone, user)
		}
	}
}

// agg returns user's aggregate if it is known and not offline.
func (st *state) agg(user string) (aggRec, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.aggs[user]
	return a, ok
}

// liveCount is the number of live connections of user known here.
func (st *state) liveCount(user string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.live[user]
}

// aggPut records user's aggregate at rev (nil: deleted). wrote says this instance has just
// written it, possibly before its watcher delivers it (the watcher delivers revisions in order);
// otherwise it comes from the watcher or from a read.
func (st *state) aggPut(user string, ps *schemas.PresenceState, rev uint64, wrote bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if a, ok := st.aggs[user]; ok && rev <= a.rev {
		return
	}
	if g, ok := st.gone[user]; ok {
		if rev <= g.rev {
			if !wrote && rev == g.rev {
				delete(st.gone, user)
			}
			return
		}
		delete(st.gone, user)
	}
	if ps == nil || ps.Status == schemas.StatusOffline {
		delete(st.aggs, user)
		delete(st.pending, user)
		if wrote {
			st.gone[user] = goneRec{rev: rev, at: time.Now()}
		}
	} else {
		st.aggs[user] = aggRec{state: *ps, rev: rev}
		if ps.OfflineAt == "" {
			delete(st.pending, user)
		} else {
			at, err := time.Parse(time.RFC3339Nano, ps.OfflineAt)
			if err != nil {
				at = time.Time{} // unreadable: check at once
			}
			st.pending[user] = at
		}
	}
	st.gauge.Set(float64(len(st.pending)))
}

// dropAgg forgets user's aggregate (found deleted).
func (st *state) dropAgg(user string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.aggs, user)
	delete(st.pending, user)
	st.gauge.Set(float64(len(st.pending)))
}

// dueOffline returns the pending users whose OfflineAt has come and that have no check queued,
// and marks them as being checked.
func (st *state) dueOffline(now time.Time) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var due []string
	for user, at := range st.pending {
		if !at.After(now) && !st.checking[user] {
			st.checking[user] = true
			due = append(due, user)
		}
	}
	return due
}

// checked ends user's offline check.
func (st *state) checked(user string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.checking, user)
}

// inconsistent returns the users whose known aggregate disagrees with their known connections.
func (st *state) inconsistent() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var users []string
	for user, a := range st.aggs {
		n := st.live[user]
		if n == 0 && a.state.OfflineAt == "" || n > 0 && (a.state.OfflineAt != "" || a.state.Devices != n) {
			users = append(users, user)
		}
	}
	for user := range st.live {
		if _, ok := st.aggs[user]; !ok {
			users = append(users, user)
		}
	}
	return users
}
