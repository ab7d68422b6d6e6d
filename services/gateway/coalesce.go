package gateway

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxCoalesce bounds the bytes gathered into one socket write.
const maxCoalesce = 64 * 1024

// shareLinger is how long after a session's previous socket write a lone frame shared with many
// sessions (a group's message) waits for more frames to go out with it. A member of a busy group
// gets a frame every few milliseconds, each a system call of its own (most of the gateway's CPU in
// a large fanout, and as much again in the client): held back this long, several go in one write.
// Only a session that wrote less than shareLinger ago waits, so the first frame after a quiet spell
// goes at once; direct messages and answers are never held back for company, though one queued
// while the writer of a streaming session sleeps waits for it. No frame waits longer than this.
const shareLinger = 20 * time.Millisecond

var coalesceBufs = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, maxCoalesce)) }}

// coalescingConn lets a session's writer gather a burst of WebSocket frames into one write
// system call: between begin and end, writes are buffered (in a pooled buffer, so an idle
// connection holds none); outside a burst they go straight to the socket. Under load most of a
// gateway's CPU went to one write per frame.
type coalescingConn struct {
	net.Conn
	mu        sync.Mutex
	buf       *bytes.Buffer // non-nil during a burst
	lastWrite time.Time     // of the last write to the socket
	// A write deadline set during a burst waits for the socket write that sends it.
	deadline        time.Time
	deadlinePending bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		c.lastWrite = time.Now()
		return c.Conn.Write(p)
	}
	if c.buf.Len()+len(p) > maxCoalesce {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxCoalesce {
			c.armLocked()
			c.lastWrite = time.Now()
			return c.Conn.Write(p)
		}
	}
	return c.buf.Write(p)
}

// SetWriteDeadline sets the socket's write deadline; during a burst, where writes only fill the
// buffer, the deadline waits for the write that sends them. The WebSocket library sets it before
// every frame, and re-arming the socket's timer per frame cost more than gathering the frame.
func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf != nil {
		c.deadline, c.deadlinePending = t, true
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// armLocked gives the socket the deadline set during the burst, if any.
func (c *coalescingConn) armLocked() {
	if c.deadlinePending {
		_ = c.Conn.SetWriteDeadline(c.deadline)
		c.deadlinePending = false
	}
}

// begin starts gathering writes.
func (c *coalescingConn) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		c.buf = coalesceBufs.Get().(*bytes.Buffer)
	}
}

// end writes what was gathered and stops gathering.
func (c *coalescingConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return nil
	}
	err := c.flushLocked()
	c.armLocked() // for a burst that wrote nothing
	c.buf.Reset()
	coalesceBufs.Put(c.buf)
	c.buf = nil
	return err
}

func (c *coalescingConn) flushLocked() error {
	if c.buf.Len() == 0 {
		return nil
	}
	c.armLocked()
	c.lastWrite = time.Now()
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	return err
}

// maxStreamBursts bounds the writes a writer makes in a row while streaming (nextStreamed), about a
// second's worth, before it looks at its pings and closes again.
const maxStreamBursts = 50

// sinceWrite is the time from the last socket write to now (a long time if none).
func (c *coalescingConn) sinceWrite(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastWrite.IsZero() {
		return time.Hour
	}
	return now.Sub(c.lastWrite)
}

// linger is called with f, just taken from the queue and about to be written, and reports whether
// the session is streaming shared frames (a busy group's messages): f is one, and the session
// wrote less than shareLinger ago or was streaming already. A lone such frame of a session that
// wrote less than shareLinger ago is held back until then, so that the frames queued meanwhile go in
// the same write. The writer sleeps (no timer to allocate); a close waits as long at most.
func (s *session) linger(f outFrame, streaming bool) bool {
	if f.prep == nil || s.cc == nil {
		return false
	}
	since := s.cc.sinceWrite(time.Now())
	if since >= shareLinger && !streaming {
		return false // the first after a quiet spell goes at once
	}
	if since < shareLinger && s.send.len() == 0 {
		time.Sleep(shareLinger - since)
	}
	return true
}

// nextStreamed is what a streaming session's writer does after a write instead of waiting to be woken
// by the next frame: it sleeps until shareLinger after the write, then takes the oldest frame queued
// meanwhile; ok is false if none came (the stream has stopped).
func (s *session) nextStreamed() (f outFrame, ok bool) {
	if d := shareLinger - s.cc.sinceWrite(time.Now()); d > 0 {
		time.Sleep(d)
	}
	return s.send.pop()
}

// hijacker hands the WebSocket upgrader a coalescingConn in place of the raw connection.
type hijacker struct {
	http.ResponseWriter
	conn *coalescingConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &coalescingConn{Conn: c}
	return h.conn, brw, nil
}
