package gateway_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

// ---- helpers shared by auth_test.go, limits_test.go, history_test.go and ops_test.go ----

// httpRaw does an HTTP request with a raw body (nil for none) and returns status, header and body.
func httpRaw(t *testing.T, method, u, token string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, resp.Header, data
}

// postJSON posts v encoded as JSON.
func postJSON(t *testing.T, u string, v any) (int, http.Header, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return httpRaw(t, "POST", u, "", b, nil)
}

var errCodes = map[string]int{
	"bad_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
	"too_large": 413, "rate_limited": 429, "unavailable": 503, "internal": 500,
}

// checkHTTPError asserts an HTTP error answer: the status, a JSON body of exactly
// {"errCode","errMsg"} with the errCode matching the status, and a non-empty errMsg.
func checkHTTPError(t *testing.T, what string, status int, hdr http.Header, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d (body %s)", what, status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: error body is not JSON: %q", what, body)
	}
	if len(m) != 2 {
		t.Errorf("%s: error body has fields other than errCode, errMsg: %s", what, body)
	}
	code, _ := m["errCode"].(string)
	msg, _ := m["errMsg"].(string)
	if code != wantCode || msg == "" {
		t.Fatalf("%s: body %s, want errCode %q and an errMsg", what, body, wantCode)
	}
	if errCodes[code] != status {
		t.Errorf("%s: errCode %s with status %d", what, code, status)
	}
}

// awaitClose waits for the server to close c and returns the close error.
func awaitClose(t *testing.T, c *gt.Client) error {
	t.Helper()
	select {
	case err := <-c.Closed:
		return err
	case <-time.After(wait):
		t.Fatalf("socket not closed within %v", wait)
		return nil
	}
}

// mustClose asserts that the server closes c with a close frame carrying code.
func mustClose(t *testing.T, c *gt.Client, code int) {
	t.Helper()
	if err := awaitClose(t, c); !isClose(err, code) {
		t.Fatalf("socket closed with %v, want close code %d", err, code)
	}
}

// errorFrame waits for an error frame on c (any id) and checks its code.
func errorFrame(t *testing.T, c *gt.Client, code string) gt.Frame {
	t.Helper()
	f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "error" })
	if err != nil {
		t.Fatalf("no error frame: %v", err)
	}
	if f.Str("errCode") != code {
		t.Fatalf("error frame %v, want errCode %s", f, code)
	}
	return f
}

// dialAnon opens a WebSocket without a token.
func dialAnon(t *testing.T, gw *gt.Gateway) *gt.Client {
	t.Helper()
	c, _, err := gt.Dial(gw.URL, gt.DialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// dialRefused opens a WebSocket that the gateway must refuse with status and errCode; it checks the
// JSON error body of the refusal.
func dialRefused(t *testing.T, gw *gt.Gateway, o gt.DialOpts, status int, code string) {
	t.Helper()
	c, resp, err := gt.Dial(gw.URL, o)
	if err == nil {
		c.Close()
		t.Fatalf("upgrade with %+v accepted, want %d", o, status)
	}
	if resp == nil {
		t.Fatalf("upgrade with %+v: no HTTP answer: %v", o, err)
	}
	body, _ := io.ReadAll(resp.Body)
	checkHTTPError(t, "upgrade", resp.StatusCode, resp.Header, body, status, code)
}

// pingOK checks that c answers a ping.
func pingOK(t *testing.T, c *gt.Client, id string) {
	t.Helper()
	if err := c.Send(map[string]any{"cmd": "ping", "id": id}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reply(id, wait)
	if err != nil || r.Cmd() != "pong" {
		t.Fatalf("ping %s: %v %v", id, r, err)
	}
}

// hs256 signs claims as an HS256 JWT with secret (alg overrides the header's alg when set).
func hs256(secret string, claims map[string]any, alg string) string {
	if alg == "" {
		alg = "HS256"
	}
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	unsigned := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	if alg == "none" {
		return unsigned + "."
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

// tamper changes a token's signature.
func tamper(tok string) string {
	if strings.HasSuffix(tok, "xx") {
		return tok[:len(tok)-2] + "yy"
	}
	return tok[:len(tok)-2] + "xx"
}

var testSecret = gt.TestConfig().Tokens.Secret

// ---- HTTP accounts ----

func TestRegister(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	reg := func(body any) (int, http.Header, []byte) { return postJSON(t, base+"/v1/register", body) }

	st, hdr, body := reg(map[string]any{"user": "alice", "password": "12345678", "name": "Alice A."})
	if st != http.StatusCreated {
		t.Fatalf("register: %d %s", st, body)
	}
	var created map[string]any
	if err := json.Unmarshal(body, &created); err != nil || created["user"] != "alice" || len(created) != 1 {
		t.Fatalf("register answered %s (%v)", body, err)
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
	}
	st, hdr, body = reg(map[string]any{"user": "alice", "password": "another-password"})
	checkHTTPError(t, "taken id", st, hdr, body, http.StatusConflict, "conflict")

	// Limits that pass.
	for _, ok := range []map[string]any{
		{"user": strings.Repeat("a", 64), "password": "12345678"},
		{"user": "long-pw", "password": strings.Repeat("p", 1024)},
		{"user": "named", "password": "12345678", "name": strings.Repeat("é", 128)},
		{"user": "x_0-9", "password": "12345678"},
	} {
		if st, _, body := reg(ok); st != http.StatusCreated {
			t.Errorf("register %v: %d %s", ok["user"], st, body)
		}
	}

	for _, tc := range []struct {
		name string
		body any
	}{
		{"upper case", map[string]any{"user": "Bob", "password": "12345678"}},
		{"dot", map[string]any{"user": "bob.smith", "password": "12345678"}},
		{"subject wildcard", map[string]any{"user": "bob>", "password": "12345678"}},
		{"space", map[string]any{"user": "bob smith", "password": "12345678"}},
		{"non-ascii", map[string]any{"user": "bøb", "password": "12345678"}},
		{"too long", map[string]any{"user": strings.Repeat("a", 65), "password": "12345678"}},
		{"empty", map[string]any{"user": "", "password": "12345678"}},
		{"missing user", map[string]any{"password": "12345678"}},
		{"short password", map[string]any{"user": "bob", "password": "1234567"}},
		{"missing password", map[string]any{"user": "bob"}},
		{"long password", map[string]any{"user": "bob", "password": strings.Repeat("p", 1025)}},
		{"long name", map[string]any{"user": "bob", "password": "12345678", "name": strings.Repeat("n", 129)}},
		{"user wrong type", map[string]any{"user": 5, "password": "12345678"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, hdr, body := reg(tc.body)
			checkHTTPError(t, tc.name, st, hdr, body, http.StatusBadRequest, "bad_request")
		})
	}
	for _, raw := range []string{"", "not json", "[1,2]", `{"user":"bob","password":"12345678"`, "null"} {
		st, hdr, body := httpRaw(t, "POST", base+"/v1/register", "", []byte(raw), nil)
		checkHTTPError(t, "body "+raw, st, hdr, body, http.StatusBadRequest, "bad_request")
	}
	// Nothing invalid was registered: bob is still free.
	if st, _, body := reg(map[string]any{"user": "bob", "password": "12345678"}); st != http.StatusCreated {
		t.Fatalf("register bob after refusals: %d %s", st, body)
	}
}

var rfc3339Millis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestLogin(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	if st, _, body := postJSON(t, base+"/v1/register", map[string]any{"user": "alice", "password": "correct horse"}); st != 201 {
		t.Fatalf("register: %d %s", st, body)
	}
	before := time.Now()
	st, _, body := postJSON(t, base+"/v1/login", map[string]any{"user": "alice", "password": "correct horse"})
	if st != http.StatusOK {
		t.Fatalf("login: %d %s", st, body)
	}
	var lr map[string]any
	if err := json.Unmarshal(body, &lr); err != nil {
		t.Fatal(err)
	}
	tok, _ := lr["token"].(string)
	exp, _ := lr["expiresAt"].(string)
	if tok == "" || strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q", tok)
	}
	if !rfc3339Millis.MatchString(exp) {
		t.Fatalf("expiresAt %q is not RFC 3339 UTC with milliseconds", exp)
	}
	at, err := time.Parse(time.RFC3339, exp)
	if err != nil || !at.After(before) {
		t.Fatalf("expiresAt %q not in the future (%v)", exp, err)
	}
	if d := at.Sub(before); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("expiresAt %q is %v away, want the configured 24h", exp, d)
	}
	// The token works on the WebSocket and the HTTP API.
	c := e.dial(tok, 0)
	pingOK(t, c, "p1")
	if st, _, body := httpRaw(t, "GET", base+"/v1/conversations/dm:alice:bob/messages", tok, nil, nil); st != 200 {
		t.Fatalf("messages with the token: %d %s", st, body)
	}

	// Unknown user, wrong password and a malformed id get one and the same answer.
	var first []byte
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "alice", "correct horsE"},
		{"unknown user", "nobody", "correct horse"},
		{"upper case id", "Alice", "correct horse"},
		{"dotted id", "alice.x", "correct horse"},
		{"empty id", "", "correct horse"},
		{"long id", strings.Repeat("a", 65), "correct horse"},
		{"empty password", "alice", ""},
	} {
		st, hdr, body := postJSON(t, base+"/v1/login", map[string]any{"user": tc.user, "password": tc.pw})
		checkHTTPError(t, tc.name, st, hdr, body, http.StatusUnauthorized, "unauthorized")
		if first == nil {
			first = body
		} else if !bytes.Equal(body, first) {
			t.Errorf("%s answered %s, wrong password answered %s", tc.name, body, first)
		}
	}
	for _, raw := range []string{"", "not json", `{"user":1}`} {
		st, hdr, body := httpRaw(t, "POST", base+"/v1/login", "", []byte(raw), nil)
		checkHTTPError(t, "login body "+raw, st, hdr, body, http.StatusBadRequest, "bad_request")
	}
}

func TestHTTPBodyLimitAndErrorBodies(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	// A body of exactly 64 KiB is read (and refused for its content); one byte more is too large.
	exact := func(n int) []byte {
		prefix := `{"user":"big","password":"`
		suffix := `"}`
		return []byte(prefix + strings.Repeat("p", n-len(prefix)-len(suffix)) + suffix)
	}
	for _, path := range []string{"/v1/register", "/v1/login"} {
		st, hdr, body := httpRaw(t, "POST", base+path, "", exact(64*1024), nil)
		want, code := http.StatusBadRequest, "bad_request"
		if path == "/v1/login" {
			want, code = http.StatusUnauthorized, "unauthorized"
		}
		checkHTTPError(t, path+" 64 KiB", st, hdr, body, want, code)
		for _, n := range []int{64*1024 + 1, 1 << 20} {
			st, hdr, body := httpRaw(t, "POST", base+path, "", exact(n), nil)
			checkHTTPError(t, path+" too large", st, hdr, body, http.StatusRequestEntityTooLarge, "too_large")
		}
	}
	// Without a Content-Length (chunked), likewise.
	req, err := http.NewRequest("POST", base+"/v1/register", io.MultiReader(bytes.NewReader(exact(200*1024))))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	chunked, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 {
		t.Fatal("request has a Content-Length")
	}
	checkHTTPError(t, "chunked", resp.StatusCode, resp.Header, chunked, http.StatusRequestEntityTooLarge, "too_large")
	// Other errors are JSON too.
	st, hdr, body := httpRaw(t, "GET", base+"/v1/nothing-here", "", nil, nil)
	checkHTTPError(t, "unknown path", st, hdr, body, http.StatusNotFound, "not_found")
	st, hdr, body = httpRaw(t, "GET", base+"/v1/ws", "", nil, nil) // not an upgrade
	checkHTTPError(t, "ws without upgrade", st, hdr, body, http.StatusBadRequest, "bad_request")
}

// ---- WebSocket authentication ----

func TestWebSocketLoginFrame(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	bob := e.user("bob", 0)
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}

	// Header authentication.
	pingOK(t, e.dial(tok, 0), "h1")

	// First-frame login, then the socket is an ordinary session.
	c := dialAnon(t, gw)
	if err := c.Send(map[string]any{"cmd": "login", "token": tok, "id": "l1"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Reply("l1", wait)
	if err != nil || r.Cmd() != "ok" || len(r) != 2 {
		t.Fatalf("login frame answered %v %v, want exactly {cmd:ok,id:l1}", r, err)
	}
	pingOK(t, c, "p1")
	if err := c.Send(map[string]any{"cmd": "message", "to": "bob", "type": "text", "msg": "via login frame", "mid": "m1", "id": "s1"}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Reply("s1", wait); err != nil || r.Cmd() != "ack" {
		t.Fatalf("message: %v %v", r, err)
	}
	event(t, bob.c, hasText("via login frame"))
	event(t, c, hasText("via login frame"))

	// A second login on an authenticated socket is a bad request; the socket stays usable.
	for _, s := range []*gt.Client{c, e.dial(tok, 0)} {
		if err := s.Send(map[string]any{"cmd": "login", "token": tok, "id": "l2"}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Reply("l2", wait)
		if err != nil || r.Cmd() != "error" || r.Str("errCode") != "bad_request" {
			t.Fatalf("second login answered %v %v", r, err)
		}
		pingOK(t, s, "p2")
	}
}

func TestUnauthenticatedSocketIsRefused(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for _, tc := range []struct {
		name  string
		frame any
		id    string
	}{
		{"ping first", map[string]any{"cmd": "ping", "id": "p1"}, "p1"},
		{"message first", map[string]any{"cmd": "message", "to": "alice", "type": "text", "msg": "x", "mid": "m", "id": "m1"}, "m1"},
		{"sync first", map[string]any{"cmd": "sync", "after": 0, "id": "s1"}, "s1"},
		{"malformed first", "this is not json", ""},
		{"no cmd", map[string]any{"token": tok, "id": "n1"}, "n1"},
		{"login without token", map[string]any{"cmd": "login", "id": "l1"}, "l1"},
		{"login with garbage token", map[string]any{"cmd": "login", "token": "garbage", "id": "l2"}, "l2"},
		{"login with tampered token", map[string]any{"cmd": "login", "token": tamper(tok), "id": "l3"}, "l3"},
		{"login with expired token", map[string]any{"cmd": "login", "id": "l4",
			"token": hs256(testSecret, map[string]any{"sub": "alice", "exp": now - 10, "iat": now - 100}, "")}, "l4"},
		{"login with other secret", map[string]any{"cmd": "login", "id": "l5",
			"token": hs256("another-secret-another-secret-0123456789", map[string]any{"sub": "alice", "exp": now + 3600}, "")}, "l5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAnon(t, gw)
			if err := c.Send(tc.frame); err != nil {
				t.Fatal(err)
			}
			f := errorFrame(t, c, "unauthorized")
			if f.Str("id") != tc.id {
				t.Errorf("error frame %v, want id %q", f, tc.id)
			}
			mustClose(t, c, 1008)
		})
	}
	// A binary first frame, likewise.
	c := dialAnon(t, gw)
	if err := c.Conn.WriteMessage(2, []byte(`{"cmd":"login","token":"`+tok+`"}`)); err != nil {
		t.Fatal(err)
	}
	errorFrame(t, c, "unauthorized")
	mustClose(t, c, 1008)
}

func TestUnauthenticatedSocketTimesOut(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.AuthTimeout = 300 * time.Millisecond })
	c := dialAnon(t, e.gws[0])
	errorFrame(t, c, "unauthorized")
	mustClose(t, c, 1008)
}

func TestBadTokensAreRefused(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A gateway with another secret, on the same NATS (same accounts), issues tokens this one
	// must refuse.
	other := gt.StartGW(t, e.ns, func(c *gateway.Config) { c.Tokens.Secret = "a-completely-different-secret-0123456789" })
	otherTok, err := gt.Account(other.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	valid := hs256(testSecret, map[string]any{"sub": "alice", "exp": now + 3600, "iat": now}, "")
	// The hand-made token is accepted (so the refusals below are for the reasons given).
	pingOK(t, e.dial(valid, 0), "v1")
	pingOK(t, e.dial(tok, 0), "v2")

	for _, tc := range []struct{ name, token string }{
		{"garbage", "garbage"},
		{"other gateway's secret", otherTok},
		{"tampered signature", tamper(tok)},
		{"expired", hs256(testSecret, map[string]any{"sub": "alice", "exp": now - 5, "iat": now - 100}, "")},
		{"no exp", hs256(testSecret, map[string]any{"sub": "alice", "iat": now}, "")},
		{"alg none", hs256("", map[string]any{"sub": "alice", "exp": now + 3600}, "none")},
		{"alg HS512 header", hs256(testSecret, map[string]any{"sub": "alice", "exp": now + 3600}, "HS512")},
		{"invalid subject", hs256(testSecret, map[string]any{"sub": "Alice.x", "exp": now + 3600}, "")},
		{"no subject", hs256(testSecret, map[string]any{"exp": now + 3600}, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialRefused(t, gw, gt.DialOpts{Token: tc.token}, http.StatusUnauthorized, "unauthorized")
			st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/conversations/g:team/messages", tc.token, nil, nil)
			checkHTTPError(t, "messages", st, hdr, body, http.StatusUnauthorized, "unauthorized")
		})
	}
	// Authorization headers that are not a bearer token.
	for _, h := range []string{"Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer", "Bearer ", "bearer " + tok, tok} {
		dialRefused(t, gw, gt.DialOpts{Header: http.Header{"Authorization": {h}}}, http.StatusUnauthorized, "unauthorized")
	}
	// The other gateway refuses this one's tokens too.
	dialRefused(t, other, gt.DialOpts{Token: tok}, http.StatusUnauthorized, "unauthorized")
	pingOK(t, e.dial(tok, 0), "still")
}

func TestExpiredTokenClosesSocket(t *testing.T) {
	const ttl = 3 * time.Second
	e := newEnv(t, 1, func(c *gateway.Config) { c.Tokens.TTL = ttl })
	gw := e.gws[0]
	var lr struct{ Token, ExpiresAt string }
	st, _, body := postJSON(t, gw.URL+"/v1/register", map[string]any{"user": "alice", "password": "password-alice"})
	if st != 201 {
		t.Fatalf("register %d %s", st, body)
	}
	start := time.Now()
	st, _, body = postJSON(t, gw.URL+"/v1/login", map[string]any{"user": "alice", "password": "password-alice"})
	if st != 200 || json.Unmarshal(body, &lr) != nil {
		t.Fatalf("login %d %s", st, body)
	}
	exp, err := time.Parse(time.RFC3339, lr.ExpiresAt)
	if err != nil || exp.Sub(start) > ttl+time.Second {
		t.Fatalf("expiresAt %q for a %v token (%v)", lr.ExpiresAt, ttl, err)
	}
	byHeader := e.dial(lr.Token, 0)
	byFrame := dialAnon(t, gw)
	if err := byFrame.Send(map[string]any{"cmd": "login", "token": lr.Token, "id": "l"}); err != nil {
		t.Fatal(err)
	}
	if r, err := byFrame.Reply("l", wait); err != nil || r.Cmd() != "ok" {
		t.Fatalf("login: %v %v", r, err)
	}
	pingOK(t, byHeader, "p1")
	pingOK(t, byFrame, "p1")
	for _, c := range []*gt.Client{byHeader, byFrame} {
		f, err := c.Await(ttl+wait, func(f gt.Frame) bool { return f.Cmd() == "error" })
		if err != nil {
			t.Fatalf("no error frame when the token expired: %v", err)
		}
		if f.Str("errCode") != "unauthorized" {
			t.Fatalf("expiry error frame %v", f)
		}
		if now := time.Now(); now.Before(exp) {
			t.Errorf("closed at %v, before the token's expiry %v", now, exp)
		}
		mustClose(t, c, 1008)
	}
	// The expired token opens nothing any more.
	dialRefused(t, gw, gt.DialOpts{Token: lr.Token}, http.StatusUnauthorized, "unauthorized")
	c := dialAnon(t, gw)
	_ = c.Send(map[string]any{"cmd": "login", "token": lr.Token, "id": "l2"})
	errorFrame(t, c, "unauthorized")
	mustClose(t, c, 1008)
	// A fresh login resumes.
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	pingOK(t, e.dial(tok, 0), "again")
}

func TestOrigin(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) {
		c.AllowedOrigins = []string{"https://chat.example.com", "https://app.example.org/"}
	})
	gw := e.gws[0]
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(gw.URL)
	for _, o := range []string{
		"",                         // not a browser
		"http://" + u.Host,         // same host
		"https://chat.example.com", // configured
		"https://app.example.org",  // configured with a trailing slash
	} {
		c, _, err := gt.Dial(gw.URL, gt.DialOpts{Token: tok, Origin: o})
		if err != nil {
			t.Fatalf("origin %q refused: %v", o, err)
		}
		pingOK(t, c, "p")
		c.Close()
	}
	for _, o := range []string{
		"https://evil.example",
		"https://chat.example.com.evil.example",
		"http://chat.example.com", // configured with https
		"https://chat.example.com:8443",
		"null",
		"http://127.0.0.2:1",
	} {
		// Refused before authentication is even looked at: with a token, without, with a bad one.
		dialRefused(t, gw, gt.DialOpts{Token: tok, Origin: o}, http.StatusForbidden, "forbidden")
		dialRefused(t, gw, gt.DialOpts{Origin: o}, http.StatusForbidden, "forbidden")
	}

	// Without configured origins only the own host is allowed; "*" allows any.
	plain := gt.StartGW(t, e.ns, nil)
	dialRefused(t, plain, gt.DialOpts{Token: tok, Origin: "https://chat.example.com"}, http.StatusForbidden, "forbidden")
	pu, _ := url.Parse(plain.URL)
	c, _, err := gt.Dial(plain.URL, gt.DialOpts{Token: tok, Origin: "http://" + pu.Host})
	if err != nil {
		t.Fatalf("own origin refused: %v", err)
	}
	c.Close()
	star := gt.StartGW(t, e.ns, func(c *gateway.Config) { c.AllowedOrigins = []string{"*"} })
	c, _, err = gt.Dial(star.URL, gt.DialOpts{Token: tok, Origin: "https://anything.example"})
	if err != nil {
		t.Fatalf("origin refused with *: %v", err)
	}
	c.Close()
}

// TestRefusedUpgradesAnswerJSON: a malformed WebSocket handshake is refused like any other HTTP
// error, with a JSON body (PROTOCOL.md: "refused WebSocket upgrades answer the same way").
func TestRefusedUpgradesAnswerJSON(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	tok, err := gt.Account(gw.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	upgrade := func(extra map[string]string) http.Header {
		h := http.Header{}
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
		h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		for k, v := range extra {
			if v == "" {
				h.Del(k)
			} else {
				h.Set(k, v)
			}
		}
		return h
	}
	for _, tc := range []struct {
		name  string
		extra map[string]string
	}{
		{"no key", map[string]string{"Sec-WebSocket-Key": ""}},
		{"bad key", map[string]string{"Sec-WebSocket-Key": "short"}},
		{"old version", map[string]string{"Sec-WebSocket-Version": "8"}},
		{"no version", map[string]string{"Sec-WebSocket-Version": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, token := range []string{"", tok} {
				st, hdr, body := httpRaw(t, "GET", gw.URL+"/v1/ws", token, nil, upgrade(tc.extra))
				checkHTTPError(t, tc.name, st, hdr, body, http.StatusBadRequest, "bad_request")
			}
		})
	}
}
