package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eventchat/chat/schemas"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// WebSocket close codes (PROTOCOL.md, "Close codes").
const (
	closeGoingAway    = websocket.CloseGoingAway       // 1001 server shutting down
	closePolicy       = websocket.ClosePolicyViolation // 1008 unauthorized, bad frames, flooding
	closeTooBig       = websocket.CloseMessageTooBig   // 1009
	closeInternal     = websocket.CloseInternalServerErr
	closeTryAgain     = websocket.CloseTryAgainLater // 1013 overloaded or too slow a reader
	maxPendingLive    = 10000                        // live events held back during one sync
	writeWait         = 10 * time.Second
	commandTimeout    = 15 * time.Second
	badFrameBurst     = 10 // malformed frames tolerated in a burst...
	badFramePerMinute = 10 // ...and per minute, before the session is closed with 1008
)

// session is one authenticated client connection: a read pump that handles frames in order and a
// writer that owns the socket's writes and runs only while it has work, joined by a bounded
// queue.
type session struct {
	gw      *Gateway
	conn    *websocket.Conn
	cc      *coalescingConn // the socket under conn; nil if the upgrade did not go through ours
	user    string
	expires time.Time

	send     *frameQueue // frames to write, at most SendQueue (sendqueue.go)
	timer    *time.Timer // pings and the token's expiry (tick)
	pingDue  atomic.Bool
	closing  chan struct{}
	readDone chan struct{} // closed when the read pump has returned
	done     chan struct{} // closed when the writer has closed the socket
	once     sync.Once
	// Set before closing is closed: the close frame to send, and whether queued frames go first.
	closeCode   int
	closeReason string
	drain       bool

	// Delivery state, under mu. Every visible event with seq in [covLo, covHi] has been queued;
	// while syncing, live events wait in pending.
	mu      sync.Mutex
	covLo   uint64
	covHi   uint64
	syncing bool
	// hold: live events wait until the session's first sync (or its first other command, or the
	// sync grace period), so a client that connects and syncs sees everything in seq order.
	hold    bool
	pending []pendingLive

	connID string        // this connection's id in presence reports
	client string        // the client's User-Agent, for presence
	idle   *atomic.Bool  // reported idle by the client (shared by the polls of one long-poll client)
	live   atomic.Bool   // reported connected to the presence service (heartbeats go out)
	hbSlot int           // which tick of the heartbeat interval reports this connection
	typing *rate.Limiter // typing notices relayed; made on first use (read pump only)

	// lastStored is the highest seq stored for one of this session's commands (for the minimum
	// seq of a conversations request).
	lastStored atomic.Uint64
	// unreadCauses: per conversation, the cause of the last unread change pushed (dedup).
	unreadMu     sync.Mutex
	unreadCauses map[string]uint64

	limiter  *rate.Limiter
	strikes  int
	badness  *rate.Limiter // bad frames; made on first use (read pump only)
	acks     chan struct{} // semaphore: messages awaiting storage
	inflight sync.WaitGroup

	// poll is set on the short-lived session of one long-poll request (poll.go): its frames are
	// collected into the poll's answer instead of a socket, and live events only wake it (the
	// poll reads events from the log by its cursor).
	poll *pollBox
}

type pendingLive struct {
	seq uint64
	f   outFrame
}

func newSession(gw *Gateway, conn *websocket.Conn, user string, expires time.Time, client string) *session {
	c := &gw.cfg
	return &session{
		gw: gw, conn: conn, user: user, expires: expires,
		send:     newFrameQueue(c.SendQueue),
		closing:  make(chan struct{}),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
		limiter:  rate.NewLimiter(rate.Limit(c.RateLimit), c.RateBurst),
		acks:     make(chan struct{}, c.MaxPendingAcks),
		hold:     true,
		connID:   newConnID(),
		hbSlot:   rand.IntN(heartbeatSlots),
		client:   truncateRunes(client, 128),
		idle:     new(atomic.Bool),
	}
}

// setConn attaches the socket once the upgrade is done.
func (s *session) setConn(c *websocket.Conn, cc *coalescingConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn, s.cc = c, cc
}

// stopReading makes the read pump return after the frame in hand (shutdown). It reports false for
// a session whose socket is not attached yet.
func (s *session) stopReading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return false
	}
	_ = s.conn.SetReadDeadline(time.Now())
	return true
}

// close asks the writer to send a close frame and shut the socket. drain: the frames already
// queued go out first (a clean close); otherwise they are dropped (a reader too slow for them).
func (s *session) close(code int, reason string, drain bool) {
	s.once.Do(func() {
		s.closeCode, s.closeReason, s.drain = code, reason, drain
		if code != 0 {
			s.gw.metrics.closes.WithLabelValues(strconv.Itoa(code)).Inc()
		}
		close(s.closing)
	})
	if s.send != nil { // nil for the session of a long poll
		s.send.wake() // the writer sends the close
	}
}

func (s *session) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// enqueue queues a frame without blocking; a full queue closes the session (1013): one slow reader
// must never stall the live feed or other sessions.
func (s *session) enqueue(f outFrame) bool {
	if s.poll != nil {
		return s.pollAdd(f)
	}
	if s.send.push(f) {
		s.gw.metrics.framesOut.Inc()
		return true
	}
	s.close(closeTryAgain, "too slow a reader: send queue full", false)
	return false
}

// enqueueWait queues a frame, waiting for room (for sync and history answers, which the client
// asked for and reads at its own pace).
func (s *session) enqueueWait(ctx context.Context, f outFrame) bool {
	if s.poll != nil {
		return s.pollAdd(f)
	}
	if !s.send.pushWait(ctx, s.closing, f) {
		return false
	}
	s.gw.metrics.framesOut.Inc()
	return true
}

// reply queues a direct answer.
func (s *session) reply(v any) {
	f, err := newOutFrame(v, false)
	if err != nil {
		s.gw.log.Error("encode frame", "err", err)
		return
	}
	s.enqueue(f)
}

// replyErr answers a frame with an error; anything but a protocol error is logged and answered as
// internal, without its details.
func (s *session) replyErr(id string, err error) {
	pe := asProtocolError(err)
	if pe.Code == schemas.CodeInternal || pe.Code == schemas.CodeUnavailable {
		s.gw.log.Error("command failed", "user", s.user, "err", err)
	}
	s.gw.metrics.errors.WithLabelValues(string(pe.Code)).Inc()
	s.reply(schemas.ErrorFrame{Cmd: schemas.CmdError, ID: id, ErrCode: pe.Code, ErrMsg: pe.Msg})
}

// deliverLive queues a live event unless this session has it already; during a sync (and before
// the first one) it is held back, so the session sees events in seq order.
func (s *session) deliverLive(seq uint64, f outFrame) {
	if s.poll != nil {
		s.poll.wakeLive()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncing || s.hold {
		if len(s.pending) >= maxPendingLive {
			s.close(closeTryAgain, "too many live events held back", false)
			return
		}
		s.pending = append(s.pending, pendingLive{seq, f})
		return
	}
	s.queueLiveLocked(seq, f)
}

func (s *session) queueLiveLocked(seq uint64, f outFrame) bool {
	if seq <= s.covHi {
		return true
	}
	if s.covLo == 0 {
		s.covLo = seq
	}
	s.covHi = seq
	return s.enqueue(f)
}

// releaseHold ends the hold on live events of a session that did not start with a sync.
func (s *session) releaseHold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hold {
		return
	}
	s.hold = false
	if !s.syncing {
		s.flushPendingLocked()
	}
}

// beginSync holds back live events; it returns the range already delivered, which the sync skips.
func (s *session) beginSync() (lo, hi uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncing, s.hold = true, false
	return s.covLo, s.covHi
}

// endSync ends a sync. covered: every visible event in (after, head] has been queued. Then the live
// events held back meanwhile are released, those the sync did not already cover.
func (s *session) endSync(covered bool, after, head uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if covered {
		if s.covLo == 0 || after+1 < s.covLo {
			s.covLo = after + 1
		}
		s.covHi = max(s.covHi, head)
	}
	s.syncing = false
	s.flushPendingLocked()
}

func (s *session) flushPendingLocked() {
	for _, p := range s.pending {
		if !s.queueLiveLocked(p.seq, p.f) {
			break
		}
	}
	s.pending = nil
}

// startWriter lets the session write: its writer (writeLoop) runs on a goroutine of its own
// whenever there is something to write (a frame, a ping, the close) and returns when there is
// not, so an idle connection holds one goroutine (the read pump), not two. The writer alone
// writes to the socket, and at most one runs at a time (frameQueue.wake). s.done is closed once
// the writer has closed the socket.
func (s *session) startWriter() {
	s.timer = time.AfterFunc(s.untilTick(), s.tick)
	s.send.start(s.writeLoop)
}

// tick runs on the session's one timer (an idle connection pays for each): it asks the writer
// for a ping every PingInterval, and closes the session when its token expires.
func (s *session) tick() {
	if s.closed() {
		return
	}
	if !s.expires.IsZero() && !time.Now().Before(s.expires) {
		s.replyErr("", schemas.Errorf(schemas.CodeUnauthorized, "token expired: log in again"))
		s.close(closePolicy, "token expired", true)
		return
	}
	s.pingDue.Store(true)
	s.send.wake()
	s.timer.Reset(s.untilTick())
}

// untilTick is the time to the next tick: the next ping, or the token's expiry if sooner.
func (s *session) untilTick() time.Duration {
	d := s.gw.cfg.PingInterval
	if !s.expires.IsZero() {
		d = min(d, time.Until(s.expires))
	}
	return d
}

// writeLoop writes what there is to write, and returns when there is nothing (park) or the
// session has closed.
func (s *session) writeLoop() {
	for {
		switch {
		case s.closed():
			s.shut()
			return
		case s.pingDue.Swap(false):
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				s.close(0, "", false)
			}
		default:
			f, ok := s.send.pop()
			if ok {
				s.writeFrames(f)
			} else if s.send.park(s.writerWanted) {
				return
			}
		}
	}
}

// writerWanted reports work for the writer other than queued frames.
func (s *session) writerWanted() bool { return s.closed() || s.pingDue.Load() }

// writeFrames writes f and the frames behind it. A busy group's frames go a few per write
// (coalesce.go): a lone one waits a moment for company, and while they keep coming the writer
// sleeps between writes rather than wake for each (a bounded number of times: then pings and
// closes get their turn).
func (s *session) writeFrames(f outFrame) {
	streaming := false
	for bursts := 0; ; bursts++ {
		streaming = s.linger(f, streaming)
		if s.closed() && !s.drain {
			return // the close drops f and the frames behind it
		}
		if err := s.writeBurst(f); err != nil {
			s.close(0, "", false)
			return
		}
		if !streaming || bursts >= maxStreamBursts {
			return
		}
		var ok bool
		if f, ok = s.nextStreamed(); !ok {
			return
		}
	}
}

// shut ends a closed session's writes: the queued frames go first for a clean close (drain),
// then the close frame, and the socket is closed.
func (s *session) shut() {
	s.timer.Stop()
	if s.drain {
		for n := s.send.len(); n > 0; n-- {
			f, _ := s.send.pop() // only the writer takes frames: n are there
			if err := s.write(f); err != nil {
				break
			}
		}
	}
	s.finishClose()
	_ = s.conn.Close()
	close(s.done)
}

// finishClose sends the close frame of a session closed with a code.
func (s *session) finishClose() {
	if s.closeCode != 0 {
		msg := websocket.FormatCloseMessage(s.closeCode, s.closeReason)
		_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
}

// writeBurst writes f and whatever else is queued behind it with as few system calls as the
// coalescing buffer allows.
func (s *session) writeBurst(f outFrame) error {
	n := s.send.len()
	if n == 0 || s.cc == nil {
		return s.write(f)
	}
	s.cc.begin()
	err := s.write(f)
	for ; n > 0 && err == nil; n-- {
		next, _ := s.send.pop() // only the writer takes frames: n are there
		err = s.write(next)
	}
	if endErr := s.cc.end(); err == nil {
		err = endErr
	}
	return err
}

func (s *session) write(f outFrame) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeWait))
	if f.prep != nil {
		return s.conn.WritePreparedMessage(f.prep)
	}
	return s.conn.WriteMessage(websocket.TextMessage, f.data)
}

// readPump reads and handles frames until the socket closes.
func (s *session) readPump() {
	defer close(s.readDone)
	pongWait := s.gw.cfg.PingInterval * 5 / 2
	_ = s.conn.SetReadDeadline(time.Now().Add(pongWait))
	s.conn.SetPongHandler(func(string) error {
		return s.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		typ, data, err := s.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.close(closeTooBig, "frame larger than 64 KiB", false)
			} else if s.gw.draining.Load() {
				// Shutdown stopped the reads; the drain closes the session once its acks are out.
			} else {
				s.close(0, "", false)
			}
			return
		}
		_ = s.conn.SetReadDeadline(time.Now().Add(pongWait))
		if typ != websocket.TextMessage {
			s.badFrame("", "frames are JSON text frames")
			continue
		}
		s.handle(data)
		if s.closed() {
			return
		}
	}
}

// badFrame answers a malformed frame; a session that keeps sending them is closed (1008).
func (s *session) badFrame(id, msg string) {
	s.replyErr(id, schemas.Errorf(schemas.CodeBadRequest, msg))
	if s.badness == nil { // made on first use: most sessions never send a bad frame
		s.badness = rate.NewLimiter(rate.Every(time.Minute/badFramePerMinute), badFrameBurst)
	}
	if !s.badness.Allow() {
		s.close(closePolicy, "too many bad frames", true)
	}
}

// decodeFrame parses a client frame and checks what every frame must satisfy.
func decodeFrame(data []byte) (*schemas.ClientFrame, *schemas.Error) {
	var f schemas.ClientFrame
	if err := schemas.DecodeClientFrame(data, &f); err != nil {
		// Echo the id when it is readable, so the client can match the error.
		var probe struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(data, &probe)
		if utf8.RuneCountInString(probe.ID) > schemas.MaxFrameIDLen {
			probe.ID = ""
		}
		return &schemas.ClientFrame{ID: probe.ID}, schemas.Errorf(schemas.CodeBadRequest, "malformed frame: "+jsonProblem(err))
	}
	if utf8.RuneCountInString(f.ID) > schemas.MaxFrameIDLen {
		f.ID = ""
		return &f, schemas.Errorf(schemas.CodeBadRequest, "frame id longer than 64 characters")
	}
	if f.Cmd == "" {
		return &f, schemas.Errorf(schemas.CodeBadRequest, "frame without cmd")
	}
	return &f, nil
}

// jsonProblem describes a JSON decoding error without echoing client data at length.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + te.Field + " has the wrong type"
	}
	return "not a JSON object"
}

// handle handles one frame of an authenticated session. A bug in a handler costs its frame an
// internal error, never the process.
func (s *session) handle(data []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.gw.log.Error("panic handling a frame", "user", s.user, "panic", r, "stack", string(debug.Stack()))
			s.replyErr("", fmt.Errorf("panic: %v", r))
		}
	}()
	f, perr := decodeFrame(data)
	if perr != nil {
		s.gw.metrics.framesIn.WithLabelValues("other").Inc()
		s.badFrame(f.ID, perr.Msg)
		return
	}
	s.gw.metrics.framesIn.WithLabelValues(cmdLabel(f.Cmd)).Inc()
	if !s.limiter.Allow() {
		s.strikes++
		s.replyErr(f.ID, schemas.Errorf(schemas.CodeRateLimited, "too many frames: slow down"))
		if s.strikes >= s.gw.cfg.RateStrikes {
			s.close(closePolicy, "flooding", true)
		}
		return
	}
	s.strikes = 0
	if f.Cmd != schemas.CmdSync {
		s.releaseHold() // this client is not starting with a sync
	}
	ctx, cancel := context.WithTimeout(s.gw.baseCtx, commandTimeout)
	defer cancel()
	if err := s.gw.dispatch(ctx, s, f); err != nil {
		s.replyErr(f.ID, err)
	}
}
