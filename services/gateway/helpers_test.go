package gateway_test

import (
	"errors"
	"fmt"
	"github.com/gorilla/websocket"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats-server/v2/server"
)

// wait is how long a test waits for something that should happen promptly; generous, because
// tests share two cores with everything else.
const wait = 10 * time.Second

type env struct {
	t   *testing.T
	ns  *server.Server
	gws []*gt.Gateway
}

// newEnv starts a nats-server and n gateways on it.
func newEnv(t *testing.T, n int, mod func(*gateway.Config)) *env {
	t.Helper()
	e := &env{t: t, ns: gt.NATS(t)}
	for i := 0; i < n; i++ {
		e.gws = append(e.gws, gt.StartGW(t, e.ns, mod))
	}
	return e
}

type user struct {
	t     *testing.T
	name  string
	token string
	c     *gt.Client
	ids   atomic.Int64
}

// user registers name and connects it to gateway gw.
func (e *env) user(name string, gw int) *user {
	e.t.Helper()
	tok, err := gt.Account(e.gws[gw].URL, name)
	if err != nil {
		e.t.Fatal(err)
	}
	u := &user{t: e.t, name: name, token: tok}
	u.c = e.dial(tok, gw)
	return u
}

// dial opens another session with a token.
func (e *env) dial(tok string, gw int) *gt.Client {
	e.t.Helper()
	c, _, err := gt.Dial(e.gws[gw].URL, gt.DialOpts{Token: tok})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// do sends a frame with a fresh id and returns the answer to it.
func (u *user) do(f map[string]any) gt.Frame {
	u.t.Helper()
	return doOn(u.t, u.c, &u.ids, f)
}

func doOn(t *testing.T, c *gt.Client, ids *atomic.Int64, f map[string]any) gt.Frame {
	t.Helper()
	id := fmt.Sprintf("r%d", ids.Add(1))
	f["id"] = id
	if err := c.Send(f); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reply(id, wait)
	if err != nil {
		t.Fatalf("%v: no answer: %v", f, err)
	}
	return r
}

// ok sends a frame that must be answered ok (or ack).
func (u *user) ok(f map[string]any) gt.Frame {
	u.t.Helper()
	r := u.do(f)
	if r.Cmd() != "ok" && r.Cmd() != "ack" && r.Cmd() != "synced" && r.Cmd() != "history" && r.Cmd() != "pong" {
		u.t.Fatalf("%v answered %v", f, r)
	}
	return r
}

// fails sends a frame that must be answered with error code.
func (u *user) fails(code string, f map[string]any) gt.Frame {
	u.t.Helper()
	r := u.do(f)
	if r.Cmd() != "error" || r.Str("errCode") != code {
		u.t.Fatalf("%v: want error %s, got %v", f, code, r)
	}
	return r
}

// msg sends a text message and returns its ack.
func (u *user) msg(target map[string]any, text, mid string) gt.Frame {
	u.t.Helper()
	f := map[string]any{"cmd": "message", "type": "text", "msg": text, "mid": mid}
	for k, v := range target {
		f[k] = v
	}
	r := u.do(f)
	if r.Cmd() != "ack" {
		u.t.Fatalf("message %v answered %v", f, r)
	}
	return r
}

// event waits for the next event frame (message or member) matching pred on c.
func event(t *testing.T, c *gt.Client, pred func(gt.Frame) bool) gt.Frame {
	t.Helper()
	f, err := c.Await(wait, func(f gt.Frame) bool {
		return (f.Cmd() == "message" || f.Cmd() == "member") && pred(f)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// events collects event frames on c until n have arrived.
func events(t *testing.T, c *gt.Client, n int) []gt.Frame {
	t.Helper()
	var out []gt.Frame
	for len(out) < n {
		f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "message" || f.Cmd() == "member" })
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, f)
	}
	return out
}

// upTo collects every event frame on c up to and including the first one matching marker. Tests
// assert that something was not delivered by sending a marker after it: the log is ordered, so
// anything that would have arrived would have arrived before the marker.
func upTo(t *testing.T, c *gt.Client, marker func(gt.Frame) bool) []gt.Frame {
	t.Helper()
	var out []gt.Frame
	for {
		f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "message" || f.Cmd() == "member" })
		if err != nil {
			t.Fatalf("marker not seen after %v: %v", out, err)
		}
		out = append(out, f)
		if marker(f) {
			return out
		}
	}
}

func hasText(text string) func(gt.Frame) bool {
	return func(f gt.Frame) bool { return f.Cmd() == "message" && f.Str("msg") == text }
}

func to(u string) map[string]any   { return map[string]any{"to": u} }
func conv(c string) map[string]any { return map[string]any{"conv": c} }
func dm(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// isClose reports whether err is a WebSocket close with code.
func isClose(err error, code int) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == code
}
