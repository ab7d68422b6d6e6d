package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// startNATS starts an embedded NATS server on a free loopback port and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := platform.StartNATS(platform.EmbeddedNATS{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// archiverStub answers analytics requests in the archiver's queue group with answer(request).
func archiverStub(t *testing.T, url string, answer func(schemas.AnalyticsRequest) any) *[]schemas.AnalyticsRequest {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var seen []schemas.AnalyticsRequest
	_, err = nc.QueueSubscribe(schemas.ArchiveAnalyticsRq, schemas.ArchiverQueue, func(m *nats.Msg) {
		var req schemas.AnalyticsRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("request does not decode: %v", err)
		}
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		if a := answer(req); a != nil {
			var data []byte
			if b, ok := a.([]byte); ok {
				data = b
			} else {
				data, _ = json.Marshal(a)
			}
			_ = m.Respond(data)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &seen
}

func runCtl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// chatctl sends the request the command line describes, prints the archiver's table and exits 0;
// a bad_request answer exits 2, any other error answer or garbage exits 1.
func TestAnalyticsAgainstAStubArchiver(t *testing.T) {
	url := startNATS(t)
	seen := archiverStub(t, url, func(req schemas.AnalyticsRequest) any {
		switch req.Report {
		case "messages-per-day":
			return schemas.AnalyticsReply{Columns: []string{"day", "messages"},
				Rows: [][]any{{"2026-01-19", 12}, {"2026-01-20", 9007199254740993}}}
		case "first-response-time":
			return schemas.AnalyticsReply{Columns: []string{"conversations", "unanswered", "median_ms", "p90_ms"},
				Rows: [][]any{{0, 3, nil, nil}}}
		case "broken":
			return schemas.AnalyticsReply{ErrCode: schemas.CodeInternal, ErrMsg: "clickhouse: connection refused"}
		case "garbage":
			return []byte("{not json")
		case "silent":
			return nil
		}
		return schemas.AnalyticsReply{ErrCode: schemas.CodeBadRequest, ErrMsg: "unknown report " + req.Report}
	})

	code, out, errs := runCtl("analytics", "messages-per-day", "--nats-url", url, "--since", "2026-01-19",
		"--until", "2026-01-21T00:00:00Z", "--conv", "g:team", "--format", "json")
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if want := "[\n  {\"day\": \"2026-01-19\", \"messages\": 12},\n  {\"day\": \"2026-01-20\", \"messages\": 9007199254740993}\n]\n"; out != want {
		t.Fatalf("stdout %q, want %q", out, want)
	}
	if got := (*seen)[0]; got != (schemas.AnalyticsRequest{Report: "messages-per-day", Since: "2026-01-19",
		Until: "2026-01-21T00:00:00Z", Conv: "g:team"}) {
		t.Fatalf("request %+v", got)
	}

	t.Setenv("CHAT_NATS_URL", url) // the environment is enough
	code, out, _ = runCtl("analytics", "--format", "csv", "first-response-time")
	if code != exitOK || out != "conversations,unanswered,median_ms,p90_ms\n0,3,,\n" {
		t.Fatalf("csv: exit %d, %q", code, out)
	}
	code, out, _ = runCtl("analytics", "first-response-time")
	if code != exitOK || !strings.Contains(out, "conversations  unanswered  median_ms  p90_ms\n0              3           -          -\n") {
		t.Fatalf("table: exit %d, %q", code, out)
	}

	code, out, errs = runCtl("analytics", "messages-per-week")
	if code != exitUsage || out != "" || !strings.Contains(errs, "bad request: unknown report messages-per-week") {
		t.Fatalf("bad request: exit %d, %q, %q", code, out, errs)
	}
	code, _, errs = runCtl("analytics", "broken")
	if code != exitFailure || !strings.Contains(errs, "the archiver failed (internal): clickhouse: connection refused") {
		t.Fatalf("archiver error: exit %d, %q", code, errs)
	}
	code, _, errs = runCtl("analytics", "garbage")
	if code != exitFailure || !strings.Contains(errs, "does not decode") {
		t.Fatalf("garbage: exit %d, %q", code, errs)
	}
	start := time.Now()
	code, _, errs = runCtl("analytics", "silent", "--timeout", "300ms")
	if code != exitFailure || !strings.Contains(errs, errNoArchiver) || !strings.Contains(errs, "--timeout") {
		t.Fatalf("timeout: exit %d, %q", code, errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the timeout took %s", d)
	}
}

// Nobody subscribed: chatctl says no archiver answered and exits 1; no NATS at all also exits 1.
func TestAnalyticsWithoutArchiver(t *testing.T) {
	url := startNATS(t)
	code, out, errs := runCtl("analytics", "messages-per-day", "--nats-url", url)
	if code != exitFailure || out != "" || errs != "chatctl analytics: "+errNoArchiver+"\n" {
		t.Fatalf("no responders: exit %d, %q, %q", code, out, errs)
	}
	code, _, errs = runCtl("analytics", "messages-per-day", "--nats-url", "nats://127.0.0.1:1")
	if code != exitFailure || !strings.Contains(errs, "cannot reach NATS") {
		t.Fatalf("no NATS: exit %d, %q", code, errs)
	}
}

// Help, usage mistakes and the report list need no NATS.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inOut    string
		inStderr string
	}{
		{nil, exitUsage, "", "usage: chatctl <command>"},
		{[]string{"help"}, exitOK, "analytics", ""},
		{[]string{"--help"}, exitOK, "usage: chatctl <command>", ""},
		{[]string{"help", "analytics"}, exitOK, "chatctl analytics <report>", ""},
		{[]string{"help", "nope"}, exitUsage, "", "unknown command"},
		{[]string{"replay"}, exitUsage, "", `unknown command "replay"`},
		{[]string{"analytics"}, exitUsage, "", "which report?"},
		{[]string{"analytics", "--help"}, exitOK, "--since D", ""},
		{[]string{"analytics", "messages-per-day", "--format", "yaml"}, exitUsage, "", `--format "yaml"`},
		{[]string{"analytics", "busiest-conversations", "--limit", "0"}, exitUsage, "", "--limit 0"},
		{[]string{"analytics", "list"}, exitOK, "first-response-time", ""},
	} {
		code, out, errs := runCtl(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.inOut) || !strings.Contains(errs, tc.inStderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.args, code, out, errs)
		}
	}
	_, out, _ := runCtl("analytics", "list")
	for _, r := range reportList {
		if !strings.Contains(out, r.name) {
			t.Errorf("list lacks %s", r.name)
		}
	}
}

// `chatctl analytics list` names the reports docs/analytics.md documents (which the archiver's
// analytics package checks against the reports it runs), in the same order.
func TestReportListMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented, listed []string
	for _, m := range regexp.MustCompile("(?m)^## `([a-z-]+)`$").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	for _, r := range reportList {
		listed = append(listed, r.name)
	}
	if !slices.Equal(documented, listed) {
		t.Fatalf("chatctl lists %v, docs/analytics.md documents %v", listed, documented)
	}
}
