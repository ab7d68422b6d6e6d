package gateway_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads a gateway's /metrics.
func scrape(t *testing.T, gw *gt.Gateway) []sample {
	t.Helper()
	st, hdr, body := httpRaw(t, "GET", gw.URL+"/metrics", "", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("/metrics: %d", st)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	return parseMetrics(t, string(body))
}

func parseMetrics(t *testing.T, text string) []sample {
	t.Helper()
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[i+1:], "}"), ",") {
				k, val, ok := strings.Cut(kv, "=")
				if ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
			s.name = s.name[:i]
		}
		out = append(out, s)
	}
	return out
}

// sumMetric adds the series of name whose labels include labels; ok is false if there is none.
func sumMetric(samples []sample, name string, labels map[string]string) (v float64, ok bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, want := range labels {
			if s.labels[k] != want {
				continue next
			}
		}
		v += s.value
		ok = true
	}
	return v, ok
}

// metricValue scrapes gw and returns the sum of the matching series (0 if none).
func metricValue(t *testing.T, gw *gt.Gateway, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := sumMetric(scrape(t, gw), name, labels)
	return v
}

// waitMetric polls gw's metric until cond holds, within wait.
func waitMetric(t *testing.T, gw *gt.Gateway, name string, labels map[string]string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v := metricValue(t, gw, name, labels)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s%v is %v, condition not met within %v", name, labels, v, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _, body := httpRaw(t, "GET", gw.URL+p, "", nil, nil); st != http.StatusOK {
			t.Fatalf("%s: %d %s", p, st, body)
		}
	}
	alice := e.user("alice", 0)
	pingOK(t, alice.c, "p")
	if err := gw.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Open sessions are closed with 1001.
	mustClose(t, alice.c, 1001)
	// A stopped gateway is not ready: it answers 503 or not at all.
	resp, err := http.Get(gw.URL + "/readyz")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz after stop: %d %s", resp.StatusCode, body)
		}
	}
	if _, _, err := gt.Dial(gw.URL, gt.DialOpts{Token: alice.token}); err == nil {
		t.Fatal("a stopped gateway accepted a WebSocket")
	}
}

// TestReadinessFailsWhileDraining runs a gateway with an Ops of the test's own, whose endpoints a
// second server also serves, so readiness can be watched through and after the drain.
func TestReadinessFailsWhileDraining(t *testing.T) {
	ns := gt.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := platform.NewOps()
	g, err := gateway.New(gt.TestConfig(), gateway.Deps{NATS: nc, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ops: ops, Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway not ready")
	}
	mux := http.NewServeMux()
	ops.Mount(mux)
	side := httptest.NewServer(mux)
	defer side.Close()
	readyz := func(base string) int {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	gwURL := "http://" + g.Addr()
	if st := readyz(gwURL); st != 200 {
		t.Fatalf("gateway /readyz %d", st)
	}
	if st := readyz(side.URL); st != 200 {
		t.Fatalf("side /readyz %d", st)
	}
	tok, err := gt.Account(gwURL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := gt.Dial(gwURL, gt.DialOpts{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel() // SIGTERM
	// Readiness fails as soon as the drain starts, while the session is still being closed.
	deadline := time.Now().Add(wait)
	for readyz(side.URL) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still not 503 after the drain began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustClose(t, c, 1001)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not finish")
	}
	if st := readyz(side.URL); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after the drain: %d", st)
	}
	if st := readyz(gwURL); st != 0 && st != http.StatusServiceUnavailable {
		t.Fatalf("gateway /readyz after the drain: %d", st)
	}
}

func TestReadinessFailsWithoutNATS(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.ShutdownTimeout = 2 * time.Second })
	gw := e.gws[0]
	if st, _, body := httpRaw(t, "GET", gw.URL+"/readyz", "", nil, nil); st != 200 {
		t.Fatalf("/readyz %d %s", st, body)
	}
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	deadline := time.Now().Add(wait)
	for {
		st, hdr, body := httpRaw(t, "GET", gw.URL+"/readyz", "", nil, nil)
		if st == http.StatusServiceUnavailable {
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("/readyz 503 Content-Type %q (%s)", hdr.Get("Content-Type"), body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d with NATS down", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Liveness is not readiness: the process is alive.
	if st, _, _ := httpRaw(t, "GET", gw.URL+"/healthz", "", nil, nil); st != 200 {
		t.Fatalf("/healthz %d with NATS down", st)
	}
}

func TestReadinessFailsWithoutStreams(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.ShutdownTimeout = 2 * time.Second })
	gw := e.gws[0]
	if st, _, body := httpRaw(t, "GET", gw.URL+"/readyz", "", nil, nil); st != 200 {
		t.Fatalf("/readyz %d %s", st, body)
	}
	js, err := jetstream.New(gw.NC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, schemas.GroupsBucket); err != nil {
		t.Fatal(err)
	}
	if st, _, body := httpRaw(t, "GET", gw.URL+"/readyz", "", nil, nil); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d with a bucket missing: %s", st, body)
	}
	if st, _, _ := httpRaw(t, "GET", gw.URL+"/healthz", "", nil, nil); st != 200 {
		t.Fatalf("/healthz %d", st)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, 1, nil)
	gw := e.gws[0]
	s0 := scrape(t, gw)
	for _, name := range []string{"chat_gateway_connections", "chat_gateway_frames_in_total", "chat_gateway_acks_total",
		"chat_gateway_append_seconds_count", "chat_gateway_append_seconds_sum", "chat_gateway_append_seconds_bucket",
		"chat_gateway_errors_total"} {
		if name == "chat_gateway_frames_in_total" {
			continue // a vector: no series before the first frame
		}
		if _, ok := sumMetric(s0, name, nil); !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, code := range []string{"bad_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large",
		"rate_limited", "unavailable", "internal"} {
		if _, ok := sumMetric(s0, "chat_gateway_errors_total", map[string]string{"code": code}); !ok {
			t.Errorf("chat_gateway_errors_total{code=%q} missing", code)
		}
	}
	if v, _ := sumMetric(s0, "chat_gateway_connections", nil); v != 0 {
		t.Errorf("connections %v before any", v)
	}

	alice, bob := e.user("alice", 0), e.user("bob", 0)
	waitMetric(t, gw, "chat_gateway_connections", nil, func(v float64) bool { return v == 2 })
	extra := e.dial(alice.token, 0)
	waitMetric(t, gw, "chat_gateway_connections", nil, func(v float64) bool { return v == 3 })
	extra.Close()
	waitMetric(t, gw, "chat_gateway_connections", nil, func(v float64) bool { return v == 2 })

	get := func(name string, labels map[string]string) float64 { return metricValue(t, gw, name, labels) }
	ping0 := get("chat_gateway_frames_in_total", map[string]string{"cmd": "ping"})
	msg0 := get("chat_gateway_frames_in_total", map[string]string{"cmd": "message"})
	other0 := get("chat_gateway_frames_in_total", map[string]string{"cmd": "other"})
	acks0 := get("chat_gateway_acks_total", nil)
	count0 := get("chat_gateway_append_seconds_count", nil)
	sum0 := get("chat_gateway_append_seconds_sum", nil)
	bad0 := get("chat_gateway_errors_total", map[string]string{"code": "bad_request"})
	forb0 := get("chat_gateway_errors_total", map[string]string{"code": "forbidden"})
	unauth0 := get("chat_gateway_errors_total", map[string]string{"code": "unauthorized"})

	for i := 0; i < 3; i++ {
		pingOK(t, alice.c, strconv.Itoa(i))
	}
	for i := 0; i < 5; i++ {
		alice.msg(to("bob"), "m", "m"+strconv.Itoa(i))
	}
	events(t, bob.c, 5)
	alice.fails("bad_request", map[string]any{"cmd": "no-such-cmd"})
	alice.fails("forbidden", map[string]any{"cmd": "history", "conv": "g:nobody-here"})
	if st, _, _ := postJSON(t, gw.URL+"/v1/login", map[string]any{"user": "alice", "password": "wrong-password"}); st != 401 {
		t.Fatalf("bad login answered %d", st)
	}

	// Counters move before the answers go out, so they are exact by now.
	s1 := scrape(t, gw)
	check := func(name string, labels map[string]string, before, delta float64) {
		t.Helper()
		v, ok := sumMetric(s1, name, labels)
		if !ok || v != before+delta {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, before+delta)
		}
	}
	check("chat_gateway_frames_in_total", map[string]string{"cmd": "ping"}, ping0, 3)
	check("chat_gateway_frames_in_total", map[string]string{"cmd": "message"}, msg0, 5)
	check("chat_gateway_frames_in_total", map[string]string{"cmd": "other"}, other0, 1)
	check("chat_gateway_acks_total", nil, acks0, 5)
	check("chat_gateway_append_seconds_count", nil, count0, 5)
	check("chat_gateway_errors_total", map[string]string{"code": "bad_request"}, bad0, 1)
	check("chat_gateway_errors_total", map[string]string{"code": "forbidden"}, forb0, 1)
	check("chat_gateway_errors_total", map[string]string{"code": "unauthorized"}, unauth0, 1)
	if v, _ := sumMetric(s1, "chat_gateway_append_seconds_sum", nil); v <= sum0 {
		t.Errorf("append_seconds_sum %v, was %v", v, sum0)
	}
	// The +Inf bucket holds every observation.
	if v, _ := sumMetric(s1, "chat_gateway_append_seconds_bucket", map[string]string{"le": "+Inf"}); v != count0+5 {
		t.Errorf("append_seconds +Inf bucket %v, want %v", v, count0+5)
	}
	// No user or conversation ids in labels.
	for _, s := range s1 {
		if !strings.HasPrefix(s.name, "chat_") {
			continue
		}
		for k, v := range s.labels {
			if strings.Contains(v, "alice") || strings.Contains(v, "bob") || strings.Contains(v, "dm:") {
				t.Errorf("%s has label %s=%q", s.name, k, v)
			}
		}
	}
	// A retried mid is acknowledged (and counted) again.
	alice.msg(to("bob"), "m", "m0")
	s1 = scrape(t, gw)
	check("chat_gateway_acks_total", nil, acks0, 6)
}
