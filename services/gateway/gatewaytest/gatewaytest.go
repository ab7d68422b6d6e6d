// Package gatewaytest runs real gateways on a real embedded nats-server for tests and benchmarks,
// and speaks the client protocol as a client would: HTTP for accounts, WebSocket for frames.
package gatewaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// StartNATS starts a nats-server with JetStream in dir, listening on a random loopback port.
func StartNATS(dir string, syncAlways bool) (*server.Server, error) {
	return platform.StartNATS(platform.EmbeddedNATS{StoreDir: dir, SyncAlways: syncAlways, Listen: "127.0.0.1:-1"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// NATS starts a nats-server for a test, stopped at its end.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	s, err := StartNATS(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Gateway is a running gateway.
type Gateway struct {
	GW   *gateway.Gateway
	URL  string // http://host:port
	NC   *nats.Conn
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// Stop drains the gateway (as SIGTERM does) and waits for it.
func (g *Gateway) Stop() error {
	g.once.Do(func() {
		g.stop()
		g.err = <-g.done
		g.NC.Close()
	})
	return g.err
}

// StartGateway runs a gateway against the NATS at natsURL with cfg (gateway.Defaults() adjusted).
func StartGateway(natsURL string, cfg gateway.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		nc.Close()
		return nil, err
	}
	gw, err := gateway.New(cfg, gateway.Deps{NATS: nc, Log: log, Ops: platform.NewOps(), Listener: ln})
	if err != nil {
		nc.Close()
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{GW: gw, NC: nc, stop: cancel, done: make(chan error, 1)}
	go func() { g.done <- gw.Run(ctx) }()
	select {
	case <-gw.Ready():
	case err := <-g.done:
		cancel()
		nc.Close()
		return nil, err
	case <-time.After(30 * time.Second):
		cancel()
		return nil, errors.New("gateway not ready in 30s")
	}
	g.URL = "http://" + gw.Addr()
	return g, nil
}

// TestConfig is gateway.Defaults with a fixed test secret and generous rate limits.
func TestConfig() gateway.Config {
	cfg := gateway.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.Tokens.Secret = "test-secret-test-secret-test-secret-0123"
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	cfg.ShutdownTimeout = 10 * time.Second
	return cfg
}

// StartGW starts a gateway for a test, stopped at its end. mod adjusts TestConfig().
func StartGW(t testing.TB, ns *server.Server, mod func(*gateway.Config)) *Gateway {
	t.Helper()
	cfg := TestConfig()
	if mod != nil {
		mod(&cfg)
	}
	var log *slog.Logger
	if os.Getenv("CHAT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	g, err := StartGateway(ns.ClientURL(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop() })
	return g
}

// HTTP does a JSON request and decodes the answer into out (if not nil); it returns the status.
func HTTP(method, url, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

// Account registers user (password "password-<user>") and logs in; it returns the token.
func Account(baseURL, user string) (string, error) {
	pw := "password-" + user
	st, err := HTTP("POST", baseURL+"/v1/register", "", schemas.RegisterRequest{User: user, Password: pw}, nil)
	if err != nil {
		return "", err
	}
	if st != http.StatusCreated && st != http.StatusConflict {
		return "", fmt.Errorf("register %s: status %d", user, st)
	}
	var lr schemas.LoginResponse
	st, err = HTTP("POST", baseURL+"/v1/login", "", schemas.LoginRequest{User: user, Password: pw}, &lr)
	if err != nil {
		return "", err
	}
	if st != http.StatusOK {
		return "", fmt.Errorf("login %s: status %d", user, st)
	}
	return lr.Token, nil
}

// Frame is a decoded server frame: the raw JSON and its fields as a map.
type Frame map[string]any

// Cmd is the frame's cmd.
func (f Frame) Cmd() string { s, _ := f["cmd"].(string); return s }

// Str is a string field.
func (f Frame) Str(k string) string { s, _ := f[k].(string); return s }

// Seq is the frame's seq (0 if none).
func (f Frame) Seq() uint64 { return f.Uint("seq") }

// Uint is a numeric field.
func (f Frame) Uint(k string) uint64 {
	if n, ok := f[k].(json.Number); ok {
		v, _ := n.Int64()
		return uint64(v)
	}
	return 0
}

// Client is a WebSocket client; frames it receives queue in Frames.
type Client struct {
	Conn   *websocket.Conn
	Frames chan Frame
	// Closed receives the close error (a *websocket.CloseError when the server closed cleanly).
	Closed chan error
	wmu    sync.Mutex
	// backlog holds frames received but not yet taken: Await leaves the frames it passes over here,
	// so waiting for one answer never loses an event that arrived before it.
	backlog []Frame
	decode  func([]byte) Frame
}

// DialOpts are options for Dial.
type DialOpts struct {
	Token  string // sent as Authorization: Bearer
	Origin string
	Header http.Header
	// Decode, if set, turns each received frame into a Frame instead of a full JSON decode (load
	// generators keep only the fields they need).
	Decode func([]byte) Frame
}

// Dial opens a WebSocket to the gateway at baseURL.
func Dial(baseURL string, o DialOpts) (*Client, *http.Response, error) {
	h := http.Header{}
	for k, v := range o.Header {
		h[k] = v
	}
	if o.Token != "" {
		h.Set("Authorization", "Bearer "+o.Token)
	}
	if o.Origin != "" {
		h.Set("Origin", o.Origin)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(baseURL, "http")+"/v1/ws", h)
	if err != nil {
		return nil, resp, err
	}
	c := &Client{Conn: conn, Frames: make(chan Frame, 100000), Closed: make(chan error, 1), decode: o.Decode}
	if c.decode == nil {
		c.decode = decodeFrame
	}
	go c.read()
	return c, resp, nil
}

func (c *Client) read() {
	for {
		_, data, err := c.Conn.ReadMessage()
		if err != nil {
			c.Closed <- err
			close(c.Frames)
			return
		}
		c.Frames <- c.decode(data)
	}
}

// decodeFrame decodes a whole frame; numbers stay json.Number.
func decodeFrame(data []byte) Frame {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var f Frame
	if err := dec.Decode(&f); err != nil {
		return Frame{"cmd": "!undecodable", "raw": string(data)}
	}
	return f
}

// Send writes one frame (any JSON-encodable value, or a raw string/[]byte).
func (c *Client) Send(v any) error {
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.Conn.WriteMessage(websocket.TextMessage, data)
}

// Next returns the next frame, or an error after timeout or when the socket closed.
func (c *Client) Next(timeout time.Duration) (Frame, error) {
	if len(c.backlog) > 0 {
		f := c.backlog[0]
		c.backlog = c.backlog[1:]
		return f, nil
	}
	return c.receive(timeout)
}

func (c *Client) receive(timeout time.Duration) (Frame, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f, ok := <-c.Frames:
		if !ok {
			return nil, errors.New("socket closed")
		}
		return f, nil
	case <-t.C:
		return nil, errors.New("no frame within " + timeout.String())
	}
}

// Await returns the first frame matching pred within timeout. Frames before it that do not match
// stay queued for later calls.
func (c *Client) Await(timeout time.Duration, pred func(Frame) bool) (Frame, error) {
	for i, f := range c.backlog {
		if pred(f) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return f, nil
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errors.New("no matching frame within " + timeout.String())
		}
		f, err := c.receive(left)
		if err != nil {
			return nil, err
		}
		if pred(f) {
			return f, nil
		}
		c.backlog = append(c.backlog, f)
	}
}

// Drop forgets the frames received so far that no call has taken.
func (c *Client) Drop() { c.backlog = nil }

// Reply returns the answer to the frame with id (ack, ok, error, synced, history, pong, ...).
func (c *Client) Reply(id string, timeout time.Duration) (Frame, error) {
	return c.Await(timeout, func(f Frame) bool { return f.Str("id") == id })
}

// Close closes the socket.
func (c *Client) Close() { _ = c.Conn.Close() }
