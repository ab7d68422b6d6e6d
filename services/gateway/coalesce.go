package gateway

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
)

// maxCoalesce bounds the bytes gathered into one socket write.
const maxCoalesce = 64 * 1024

var coalesceBufs = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, maxCoalesce)) }}

// coalescingConn lets a session's write pump gather a burst of WebSocket frames into one write
// system call: between begin and end, writes are buffered (in a pooled buffer, so an idle
// connection holds none); outside a burst they go straight to the socket. Under load most of a
// gateway's CPU went to one write per frame.
type coalescingConn struct {
	net.Conn
	mu  sync.Mutex
	buf *bytes.Buffer // non-nil during a burst
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return c.Conn.Write(p)
	}
	if c.buf.Len()+len(p) > maxCoalesce {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxCoalesce {
			return c.Conn.Write(p)
		}
	}
	return c.buf.Write(p)
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
	c.buf.Reset()
	coalesceBufs.Put(c.buf)
	c.buf = nil
	return err
}

func (c *coalescingConn) flushLocked() error {
	if c.buf.Len() == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	return err
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
