package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eventchat/chat/services/gateway/gatewaytest"
)

// gatewayResult is chatd under load: a closed-loop run for throughput, then an open-loop ladder
// of rising fixed rates for latency against offered rate and the highest sustained rate.
type gatewayResult struct {
	Senders      int         `json:"senders"`
	Window       int         `json:"window"`
	SetupSeconds float64     `json:"setupSeconds"`
	Closed       *loadResult `json:"closedLoop,omitempty"`
	// Ladder is the open-loop runs, rate by rate, up to the first that failed (kept: it shows
	// where the latency went).
	Ladder []*loadResult `json:"ladder,omitempty"`
	// MaxSustained is the highest ladder step that held: every message acked and delivered within
	// the run, send-to-deliver p99 under SustainedP99Ms, at least 95 % of the offered rate acked.
	MaxSustained   *loadResult `json:"maxSustained,omitempty"`
	SustainedP99Ms float64     `json:"sustainedP99Ms"`
}

// open returns the ladder's run at rate, or nil.
func (g *gatewayResult) open(rate float64) *loadResult {
	if g == nil {
		return nil
	}
	for _, r := range g.Ladder {
		if r.TargetRate == rate {
			return r
		}
	}
	return nil
}

// sustained says whether an open-loop run held its rate.
func sustained(r *loadResult, p99Ms float64) bool {
	return r.Error == "" && r.Undelivered == 0 && r.SendToDeliver.Count > 0 && r.SendToDeliver.P99 < p99Ms &&
		r.AckedPerSec >= 0.95*r.TargetRate && len(r.Errors) == 0
}

// runGateway connects the clients to the chatd child srv and runs the closed loop, then the
// ladder. profile starts the CPU profile of the closed-loop window, if asked for, and returns its stop.
func runGateway(srv *child, p params, profile func() func()) (*gatewayResult, error) {
	res := &gatewayResult{Senders: p.Senders, Window: p.Window, SustainedP99Ms: p.SustainedP99Ms}
	start := time.Now()
	b, err := startBench(srv, p)
	if err != nil {
		return res, err
	}
	defer b.close()
	res.SetupSeconds = time.Since(start).Seconds()
	logf("gateway ready: %d senders, %d receivers connected in %.1fs", len(b.senders), len(b.receivers), res.SetupSeconds)

	res.Closed = b.run(loadSpec{phase: 1, mode: "closed", window: p.Window, warmup: p.Warmup,
		measure: p.Measure, profile: profile}, p)
	logf("gateway closed loop: %s", res.Closed.summary())
	errs := []error{res.Closed.err()}
	for k, rate := range p.OpenRates {
		// The open loop's window only bounds a stalled gateway; at its rate it never fills.
		interval := time.Duration(float64(time.Second) * float64(p.Senders) / float64(rate))
		r := b.run(loadSpec{phase: 2 + k, mode: "open", window: p.OpenWindow, warmup: p.OpenWarmup,
			measure: p.stepDuration(float64(rate)), interval: interval}, p)
		res.Ladder = append(res.Ladder, r)
		logf("gateway open loop %6d/s: %s", rate, r.summary())
		if !sustained(r, p.SustainedP99Ms) {
			break // the rate is not held: higher ones would only pile up a backlog
		}
		res.MaxSustained = r
	}
	return res, errors.Join(errs...)
}

// bench is chatd with its connected clients: senders[i] sends to receivers[i].
type bench struct {
	srv       *child
	senders   []*gatewaytest.Client
	receivers []*gatewaytest.Client
}

func startBench(srv *child, p params) (*bench, error) {
	b := &bench{srv: srv}
	var users []string
	for i := range p.Senders {
		users = append(users, senderID(i), receiverID(i))
	}
	tokens, err := accounts(srv.URL, users)
	if err != nil {
		b.close()
		return nil, err
	}
	// Receivers first, so that every message has a session to go to. They never sync: they need
	// only live events, which the gateway releases to a new session after its sync grace, long
	// before the first message.
	for i := range p.Senders {
		c, err := dial(srv.URL, tokens[receiverID(i)])
		if err != nil {
			b.close()
			return nil, err
		}
		b.receivers = append(b.receivers, c)
	}
	for i := range p.Senders {
		c, err := dial(srv.URL, tokens[senderID(i)])
		if err != nil {
			b.close()
			return nil, err
		}
		b.senders = append(b.senders, c)
	}
	return b, nil
}

func dial(url, token string) (*gatewaytest.Client, error) {
	c, _, err := gatewaytest.Dial(url, gatewaytest.DialOpts{Token: token, Decode: lightDecode})
	return c, err
}

// accounts registers the users and logs them in, a few at a time: password hashing (argon2id)
// is deliberately expensive and bounded by the gateway to one per CPU anyway.
func accounts(url string, users []string) (map[string]string, error) {
	var mu sync.Mutex
	tokens := map[string]string{}
	var errs []error
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for u := range work {
				tok, err := gatewaytest.Account(url, u)
				mu.Lock()
				tokens[u] = tok
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	return tokens, errors.Join(errs...)
}

func (b *bench) close() {
	for _, c := range append(b.senders, b.receivers...) {
		c.Close()
	}
}

// gatewayMetrics is a scrape of the gateway's /metrics: the group-commit batch sizes are only
// visible there.
type gatewayMetrics map[string]float64

func scrapeMetrics(ctx context.Context, baseURL string) (gatewayMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	m := gatewayMetrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "chat_gateway_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil && i > 0 {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// sum adds every series whose name (labels included) starts with prefix.
func (m gatewayMetrics) sum(prefix string) float64 {
	var s float64
	for k, v := range m {
		if k == prefix || strings.HasPrefix(k, prefix+"{") {
			s += v
		}
	}
	return s
}

// groupCommit fills in what the gateway's metrics say about the measured window: the mean
// events per atomic batch, the batches that fell back to single appends, and how far the live
// feed (the gateway's one reader of the log) trailed the appends.
func (r *loadResult) groupCommit(before, after gatewayMetrics) {
	if before == nil || after == nil {
		return
	}
	d := func(name string) float64 { return after.sum(name) - before.sum(name) }
	if n := d("chat_gateway_append_batch_size_count"); n > 0 {
		r.MeanBatch = d("chat_gateway_append_batch_size_sum") / n
		r.Batches = int64(n)
	}
	if n := d("chat_gateway_live_lag_seconds_count"); n > 0 {
		r.LiveLagMeanMs = 1000 * d("chat_gateway_live_lag_seconds_sum") / n
	}
	r.Fallbacks = int64(d("chat_gateway_append_fallbacks_total"))
	r.SessionCloses = int64(d("chat_gateway_session_closes_total"))
}

// lightDecode keeps only the fields the load generator reads, so the clients, which share the
// cores with the server, spend as little as they can on decoding. The gateway's frames are flat
// JSON objects and the benchmark's strings carry no escapes, so a scan for each key is enough; any
// frame it cannot read this way gets a full decode.
func lightDecode(data []byte) gatewaytest.Frame {
	f := gatewaytest.Frame{"cmd": jsonField(data, "cmd")}
	switch f["cmd"] {
	case "message":
		f["msg"] = jsonField(data, "msg")
		f["seq"] = json.Number(jsonField(data, "seq"))
	case "ack":
		f["id"] = jsonField(data, "id")
	case "error":
		f["id"], f["errCode"] = jsonField(data, "id"), jsonField(data, "errCode")
	case "":
		var full gatewaytest.Frame
		if json.Unmarshal(data, &full) != nil {
			return gatewaytest.Frame{"cmd": "!undecodable"}
		}
		return full
	}
	return f
}

// jsonField returns the raw value of the top-level key in a flat JSON object whose strings have no
// escapes: the string's contents, or a number's digits; "" if absent.
func jsonField(data []byte, key string) string {
	pat := make([]byte, 0, len(key)+3)
	pat = append(append(append(pat, '"'), key...), '"', ':')
	i := bytes.Index(data, pat)
	if i < 0 {
		return ""
	}
	v := data[i+len(pat):]
	if len(v) > 0 && v[0] == '"' {
		if end := bytes.IndexByte(v[1:], '"'); end >= 0 {
			return string(v[1 : 1+end])
		}
		return ""
	}
	end := bytes.IndexAny(v, ",}")
	if end < 0 {
		return ""
	}
	return string(v[:end])
}
