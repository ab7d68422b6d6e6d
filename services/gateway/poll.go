package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/schemas"
	"golang.org/x/time/rate"
)

// Long-poll: POST /v1/poll?wait=N {"cursor"?, "frames"?} -> {"cursor", "frames"}.
//
// A poll is stateless by its cursor, a seq like sync's after: the answer holds the events after
// the cursor that the user may see (read from the log like sync reads them: the conversations of
// chat_index, the visibility rule canSee, the archive below the stream's window), at most
// PollMaxEvents of them, and the new cursor; polling again with an older cursor delivers the
// same events again. So a poll may reach any gateway, and a client may switch between WebSocket
// (sync after the cursor) and long-poll (cursor = synced.seq or the last seq seen) at any time.
//
// Each poll runs its client frames through the WebSocket's dispatch on a short-lived session
// whose outgoing frames are collected into the answer (pollBox): replies, and the pushes
// (presence, typing, unread) that arrive while the poll is held. That session sits in the hub
// for the poll's duration; live events only wake it, and it reads the log again.
//
// What outlives a poll is the long-poll client (pollConn), per gateway: the presence connection
// it reports, its rate limiters and its idle flag. A client is (user, X-Chat-Client-Id header),
// or (user, a hash of the bearer token) without the header. It is reported connected on its
// first poll, heartbeats while it keeps polling, and disconnected PollDisconnectAfter after its
// last poll ended; the table is bounded (PollMaxClients, maxPollClientsPerUser).

const (
	pollClientHeader      = "X-Chat-Client-Id"
	defaultPollWait       = 25 * time.Second
	maxPollWait           = 55 * time.Second
	maxPollFrames         = 100 // client frames in one poll
	maxPollClientsPerUser = 32
)

// errPollFull stops a poll's log read once the answer holds PollMaxEvents events.
var errPollFull = errors.New("poll answer full")

// pollRequest is the body of a poll.
type pollRequest struct {
	Cursor *uint64           `json:"cursor"`
	Frames []json.RawMessage `json:"frames"`
}

// pollBox collects the frames of a poll's session: replies and pushes, in the order they come.
// A live event for the session only sets live and wakes the poll.
type pollBox struct {
	mu     sync.Mutex
	frames [][]byte
	max    int
	live   bool
	wake   chan struct{}
}

func (b *pollBox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *pollBox) wakeLive() {
	b.mu.Lock()
	b.live = true
	b.mu.Unlock()
	b.signal()
}

// clearLive reports whether a live event came since the last call, and forgets it.
func (b *pollBox) clearLive() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	live := b.live
	b.live = false
	return live
}

// maxSeq is the highest seq among the collected frames (acks of the poll's own commands), 0 if
// none: the answer's cursor may not be below it.
func (b *pollBox) maxSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var top uint64
	for _, f := range b.frames {
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(f, &v) == nil {
			top = max(top, v.Seq)
		}
	}
	return top
}

func (b *pollBox) take() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.frames
	b.frames = nil
	return f
}

// pollAdd collects a frame of a poll's session; past the box's bound the session is closed, as a
// WebSocket session whose queue is full, and the poll answers with what it holds.
func (s *session) pollAdd(f outFrame) bool {
	b := s.poll
	b.mu.Lock()
	if len(b.frames) >= b.max {
		b.mu.Unlock()
		s.close(closeTryAgain, "too many frames for one poll answer", false)
		b.signal()
		return false
	}
	b.frames = append(b.frames, f.data)
	b.mu.Unlock()
	s.gw.metrics.framesOut.Inc()
	b.signal()
	return true
}

// pollKey names a long-poll client.
type pollKey struct{ user, client string }

// pollConn is a long-poll client on this gateway: what lasts from one of its polls to the next.
type pollConn struct {
	key     pollKey
	connID  string
	client  string // User-Agent, for presence
	hbSlot  int
	idle    atomic.Bool
	limiter *rate.Limiter
	badness *rate.Limiter
	typing  *rate.Limiter
	strikes atomic.Int32
	// Under the table's mu: polls under way, and when the last one ended.
	active  int
	lastEnd time.Time
}

// pollTable is this gateway's long-poll clients.
type pollTable struct {
	mu      sync.Mutex
	conns   map[pollKey]*pollConn
	perUser map[string]int
}

func newPollTable() *pollTable {
	return &pollTable{conns: map[pollKey]*pollConn{}, perUser: map[string]int{}}
}

// pollClientKey names the client of a poll: its X-Chat-Client-Id header when valid, else its
// bearer token (hashed: a token is not kept in memory longer than the poll).
func pollClientKey(r *http.Request) string {
	if id := r.Header.Get(pollClientHeader); schemas.ValidMid(id) {
		return "h" + id
	}
	token := r.Header.Get("Authorization")
	sum := sha256.Sum256([]byte(token))
	return "t" + hex.EncodeToString(sum[:12])
}

// pollBegin finds or makes the client of a poll and counts the poll as under way; a new client
// is reported connected.
func (gw *Gateway) pollBegin(user, key, userAgent string) (*pollConn, error) {
	t := gw.polls
	k := pollKey{user, key}
	t.mu.Lock()
	pc := t.conns[k]
	isNew := pc == nil
	if isNew {
		switch {
		case len(t.conns) >= gw.cfg.PollMaxClients:
			t.mu.Unlock()
			return nil, schemas.Errorf(schemas.CodeUnavailable, "too many long-poll clients on this server: retry later")
		case t.perUser[user] >= maxPollClientsPerUser:
			t.mu.Unlock()
			return nil, schemas.Errorf(schemas.CodeRateLimited, "too many long-poll clients for this user: send the same "+pollClientHeader+" with every poll")
		}
		c := &gw.cfg
		pc = &pollConn{key: k, connID: newConnID(), client: truncateRunes(userAgent, 128), hbSlot: rand.IntN(heartbeatSlots),
			limiter: rate.NewLimiter(rate.Limit(c.RateLimit), c.RateBurst),
			badness: rate.NewLimiter(rate.Every(time.Minute/badFramePerMinute), badFrameBurst),
			typing:  rate.NewLimiter(rate.Limit(c.TypingRate), 3)}
		t.conns[k] = pc
		t.perUser[user]++
	}
	pc.active++
	t.mu.Unlock()
	if isNew {
		gw.book.track(user)
		gw.reportPollConn(pc, schemas.ConnConnect)
		gw.metrics.pollClients.Inc()
		gw.metrics.connsTotal.WithLabelValues("longpoll").Inc()
	}
	return pc, nil
}

// pollEnd counts a poll of pc as over.
func (gw *Gateway) pollEnd(pc *pollConn) {
	gw.polls.mu.Lock()
	pc.active--
	pc.lastEnd = time.Now()
	gw.polls.mu.Unlock()
}

func (gw *Gateway) reportPollConn(pc *pollConn, state string) {
	gw.reportConnOf(pc.key.user, pc.connID, pc.idle.Load(), pc.client, state)
}

// pollSweep forgets the clients with no poll under way for PollDisconnectAfter (all of them with
// all set: shutdown) and reports them disconnected.
func (gw *Gateway) pollSweep(now time.Time, all bool) {
	t := gw.polls
	var gone []*pollConn
	t.mu.Lock()
	for k, pc := range t.conns {
		if all || pc.active == 0 && now.Sub(pc.lastEnd) >= gw.cfg.PollDisconnectAfter {
			delete(t.conns, k)
			if t.perUser[k.user]--; t.perUser[k.user] <= 0 {
				delete(t.perUser, k.user)
			}
			gone = append(gone, pc)
		}
	}
	t.mu.Unlock()
	for _, pc := range gone {
		gw.reportPollConn(pc, schemas.ConnDisconnect)
		gw.book.untrack(pc.key.user)
		gw.metrics.pollClients.Dec()
	}
}

// pollSweeper sweeps the long-poll clients until ctx ends.
func (gw *Gateway) pollSweeper(ctx context.Context) {
	t := time.NewTicker(min(time.Second, gw.cfg.PollDisconnectAfter/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			gw.pollSweep(now, false)
		}
	}
}

// pollHeartbeat reports the long-poll clients of a heartbeat slot (every one with slot < 0).
func (gw *Gateway) pollHeartbeat(slot int) {
	var beat []*pollConn
	gw.polls.mu.Lock()
	for _, pc := range gw.polls.conns {
		if slot < 0 || pc.hbSlot == slot {
			beat = append(beat, pc)
		}
	}
	gw.polls.mu.Unlock()
	for _, pc := range beat {
		gw.reportPollConn(pc, schemas.ConnHeartbeat)
	}
}

// newPollSession is the session of one poll of client pc.
func newPollSession(gw *Gateway, pc *pollConn, user string, expires time.Time) *session {
	return &session{
		gw: gw, user: user, expires: expires,
		closing: make(chan struct{}),
		limiter: pc.limiter, badness: pc.badness, typing: pc.typing, idle: &pc.idle,
		acks:   make(chan struct{}, gw.cfg.MaxPendingAcks),
		connID: pc.connID, hbSlot: pc.hbSlot, client: pc.client,
		strikes: int(pc.strikes.Load()),
		poll:    &pollBox{max: gw.cfg.SendQueue, wake: make(chan struct{}, 1)},
	}
}

// setPollCursor records the cursor as what the session has seen (for read-your-writes of
// conversations: knownSeq).
func (s *session) setPollCursor(cursor uint64) {
	s.mu.Lock()
	s.covHi = cursor
	s.mu.Unlock()
}

// pollWait reads ?wait= (seconds, default 25, above 55 taken as 55).
func pollWait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return defaultPollWait, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return maxPollWait, nil
	}
	if err != nil {
		return 0, badRequest("wait must be a whole number of seconds")
	}
	return min(time.Duration(min(n, 3600))*time.Second, maxPollWait), nil
}

// decodePollBody reads a poll's body (at most 64 KiB; an empty body is {}).
func decodePollBody(w http.ResponseWriter, r *http.Request, req *pollRequest) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, schemas.MaxFrameBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return schemas.Errorf(schemas.CodeTooLarge, "request body larger than 64 KiB")
		}
		return badRequest("unreadable body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, req); err != nil {
		return badRequest("body must be a JSON object {\"cursor\"?, \"frames\"?}: " + jsonProblem(err))
	}
	if len(req.Frames) > maxPollFrames {
		return badRequest("at most " + strconv.Itoa(maxPollFrames) + " frames per poll")
	}
	return nil
}

// pollEvents reads the events user may see after cursor, at most PollMaxEvents, but always every
// one up to atLeast (the highest seq of the acks in the answer: every frame of an answer has a
// seq at most its cursor). next is the cursor after them: the last one's seq when the answer is
// full, else the head read. head is the head read (every event the user may see up to it is in
// events).
func (gw *Gateway) pollEvents(ctx context.Context, user string, cursor, atLeast uint64) (events [][]byte, next, head uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	limit := gw.cfg.PollMaxEvents
	r, err := gw.readSince(ctx, user, cursor, 0, 0, func(_ context.Context, seq uint64, f outFrame) error {
		if len(events) >= limit && seq > atLeast {
			return errPollFull
		}
		events = append(events, f.data)
		return nil
	})
	if errors.Is(err, errPollFull) {
		gw.metrics.pollFull.Inc()
		return events, r.last, r.last, nil
	}
	if err != nil {
		return nil, cursor, cursor, err
	}
	head = max(r.head, cursor)
	return events, head, head, nil
}

func (gw *Gateway) handlePoll(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := "error"
	defer func() {
		gw.metrics.polls.WithLabelValues(result).Inc()
		gw.metrics.pollSeconds.Observe(time.Since(start).Seconds())
	}()
	if gw.draining.Load() {
		gw.httpError(w, schemas.Errorf(schemas.CodeUnavailable, "server shutting down"))
		return
	}
	user, exp, err := gw.bearer(r)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	wait, err := pollWait(r)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	var req pollRequest
	if err := decodePollBody(w, r, &req); err != nil {
		gw.httpError(w, err)
		return
	}
	pc, err := gw.pollBegin(user, pollClientKey(r), r.UserAgent())
	if err != nil {
		gw.httpError(w, err)
		return
	}
	defer gw.pollEnd(pc)
	s := newPollSession(gw, pc, user, exp)
	// In the hub before the head is read: an event appended after the read wakes the poll.
	gw.hub.add(s)
	defer gw.hub.remove(s)
	ctx := r.Context()

	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	_, head0, err := gw.streamBounds(rctx)
	cancel()
	if err != nil {
		gw.httpError(w, err)
		return
	}
	cursor := head0 // a first poll: the current head, no old events, answered at once
	if req.Cursor != nil {
		cursor = *req.Cursor
	} else {
		wait = 0
	}
	// What the client has seen, for read-your-writes of its commands (conversations): the
	// cursor, but never past the head (a client's cursor from nowhere must not make the unread
	// service wait for seqs that do not exist).
	s.setPollCursor(min(cursor, head0))

	for _, raw := range req.Frames {
		s.handle(raw)
		if s.closed() {
			break
		}
	}
	pc.strikes.Store(int32(s.strikes))
	// Acks of the messages sent with this poll come in its answer.
	waitUntil(time.Now().Add(commandTimeout), waitGroupDone(&s.inflight))
	if s.closed() && s.closeCode == closePolicy {
		pc.strikes.Store(0)
		gw.httpError(w, schemas.Errorf(schemas.CodeRateLimited, "poll refused: "+s.closeReason+"; slow down"))
		return
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var events [][]byte
	next, head := cursor, cursor
	readLog, expired := true, wait == 0
	for {
		if s.poll.clearLive() || readLog {
			readLog = false
			if events, next, head, err = gw.pollEvents(ctx, user, cursor, s.poll.maxSeq()); err != nil {
				if ctx.Err() != nil {
					result = "gone"
					return
				}
				gw.httpError(w, err)
				return
			}
		}
		replies := s.poll.take()
		switch {
		case len(events) > 0:
			result = "frames"
			gw.writePoll(w, next, events, replies)
			return
		case len(replies) > 0:
			result = "frames"
			gw.writePoll(w, head, nil, replies)
			return
		case expired || s.closed():
			result = "empty"
			gw.writePoll(w, cursor, nil, nil)
			return
		}
		select {
		case <-s.poll.wake:
		case <-timer.C:
			expired = true // answered after a last look
		case <-s.closing:
		case <-gw.stopping:
			s.close(closeGoingAway, "server shutting down", true)
		case <-ctx.Done():
			result = "gone"
			return
		}
	}
}

// writePoll answers a poll: {"cursor", "frames": events then replies}.
func (gw *Gateway) writePoll(w http.ResponseWriter, cursor uint64, events, replies [][]byte) {
	var b bytes.Buffer
	b.WriteString(`{"cursor":`)
	b.WriteString(strconv.FormatUint(cursor, 10))
	b.WriteString(`,"frames":[`)
	n := 0
	for _, list := range [][][]byte{events, replies} {
		for _, f := range list {
			if n > 0 {
				b.WriteByte(',')
			}
			b.Write(f)
			n++
		}
	}
	b.WriteString("]}")
	gw.metrics.pollFrames.Add(float64(n))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
