package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/services/archiver"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/eventchat/chat/services/presence"
	"github.com/eventchat/chat/services/unread"
)

// metric reads one series (name with its labels, as /metrics writes them) from the all-in-one's /metrics (0 when absent).
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// The whole system with the local ClickHouse: every event is archived, the stream is trimmed to a
// short window, and history and sync page across the boundary, returning exactly what the log
// held, with the same visibility rules.
func TestArchiveEndToEnd(t *testing.T) {
	cfg := config{DataDir: t.TempDir(), Gateway: gt.TestConfig(), Presence: presence.Defaults(),
		Unread: unread.Defaults(), Archiver: archiver.Defaults(), LocalClickHouse: "auto"}
	cfg.NATS = platform.EmbeddedNATS{SyncAlways: false}
	cfg.Topology.DedupWindow = time.Second
	cfg.Archiver.Keep, cfg.Archiver.TrimEvery, cfg.Archiver.BatchWait = time.Second, 200*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	addrc, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		errc <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a, _ string) { addrc <- a })
	}()
	var url string
	select {
	case a := <-addrc:
		url = "http://" + a
	case err := <-errc:
		t.Fatalf("chatd did not start: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("chatd did not start in 2 minutes")
	}
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("chatd stopped with %v", err)
		}
	}()

	tok := map[string]string{}
	for _, u := range []string{"ann", "ben", "cat"} {
		var err error
		if tok[u], err = gt.Account(url, u); err != nil {
			t.Fatal(err)
		}
	}
	ann, ben, cat := connect(t, url, tok["ann"]), connect(t, url, tok["ben"]), connect(t, url, tok["cat"])
	if r := ann.do(map[string]any{"cmd": "create", "conv": "g:arch", "members": []string{"ben"}}); r.Cmd() != "ok" {
		t.Fatal(r)
	}
	var last uint64
	for i := range 60 {
		f := map[string]any{"cmd": "message", "conv": "g:arch", "type": "text", "msg": fmt.Sprint("old ", i), "mid": fmt.Sprint("o", i)}
		if i%10 == 3 {
			f["tid"] = "ben" // private: ann and ben only
		}
		if i == 40 {
			// cat joins late: she sees the group's history as a current member, never the private ones.
			if r := ann.do(map[string]any{"cmd": "invite", "conv": "g:arch", "user": "cat"}); r.Cmd() != "ok" {
				t.Fatal(r)
			}
		}
		r := ann.do(f)
		if r.Cmd() != "ack" {
			t.Fatal(r)
		}
		last = r.Seq()
	}
	// The reference: every event as history pages it while the stream still holds it all.
	full := map[*client][]gt.Frame{}
	for _, c := range []*client{ann, ben, cat} {
		full[c] = pageAll(t, c, "g:arch")
	}
	if len(full[ann]) != len(full[ben]) || len(full[cat]) >= len(full[ann]) {
		t.Fatalf("reference pages: ann %d, ben %d, cat %d", len(full[ann]), len(full[ben]), len(full[cat]))
	}

	// Wait until everything is archived and the stream trimmed past most of it (the keep window
	// is a second).
	deadline := time.Now().Add(90 * time.Second)
	for metric(t, url, "chat_archiver_archived_seq") < float64(last) || metric(t, url, "chat_archiver_trimmed_seq") < float64(last-10) {
		if time.Now().After(deadline) {
			t.Fatalf("not archived and trimmed in time: archived %v, trimmed %v, last %d",
				metric(t, url, "chat_archiver_archived_seq"), metric(t, url, "chat_archiver_trimmed_seq"), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// History across the boundary: the same pages as before, for each user.
	for _, c := range []*client{ann, ben, cat} {
		got := pageAll(t, c, "g:arch")
		if a, b := framesJSON(t, got), framesJSON(t, full[c]); a != b {
			t.Fatalf("history after trimming differs:\n%s\n%s", a, b)
		}
	}
	if n := metric(t, url, `chat_gateway_archive_requests_total{result="ok"}`); n == 0 {
		t.Fatal("history after trimming never asked the archive")
	}
	// And a sync from 0 on a new session: every event once, in order, archive then stream.
	ben2 := connect(t, url, tok["ben"])
	if err := ben2.Send(map[string]any{"cmd": "sync", "after": 0, "id": "s"}); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for {
		f, err := ben2.Next(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if f.Cmd() == "synced" {
			break
		}
		if f.Cmd() == "message" || f.Cmd() == "member" {
			if n := len(seqs); n > 0 && f.Seq() <= seqs[n-1] {
				t.Fatalf("sync out of order: %d after %d", f.Seq(), seqs[n-1])
			}
			seqs = append(seqs, f.Seq())
		}
	}
	if len(seqs) != len(full[ben]) {
		t.Fatalf("sync from 0 after trimming delivered %d events, history has %d", len(seqs), len(full[ben]))
	}
}

// pageAll pages a conversation's history backwards, 7 at a time, and returns it oldest first.
func pageAll(t *testing.T, c *client, conv string) []gt.Frame {
	t.Helper()
	var out []gt.Frame
	var before uint64
	for {
		f := map[string]any{"cmd": "history", "conv": conv, "limit": 7}
		if before > 0 {
			f["before"] = before
		}
		r := c.do(f)
		if r.Cmd() != "history" {
			t.Fatal(r)
		}
		msgs, _ := r["messages"].([]any)
		if len(msgs) == 0 {
			return out
		}
		page := make([]gt.Frame, len(msgs))
		for i, m := range msgs {
			page[i] = gt.Frame(m.(map[string]any))
		}
		out = append(page, out...)
		before = page[0].Seq()
	}
}

func framesJSON(t *testing.T, fs []gt.Frame) string {
	t.Helper()
	return mustJSON(t, fs)
}
