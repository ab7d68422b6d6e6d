package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/eventchat/chat/services/presence"
	"github.com/eventchat/chat/services/unread"
)

// start runs the all-in-one on dir and returns its URL and a stop function that waits for it.
// Presence timings are short so tests see transitions quickly.
func start(t *testing.T, dir string) (string, func()) {
	t.Helper()
	cfg := config{DataDir: dir, Gateway: gt.TestConfig(), Presence: presence.Defaults(), Unread: unread.Defaults()}
	cfg.Presence.Grace, cfg.Presence.Sweep = time.Second, 50*time.Millisecond
	cfg.Gateway.PresenceHeartbeat = 300 * time.Millisecond
	cfg.Topology.PresenceConnTTL = 2 * time.Second
	cfg.Gateway.Tokens.Secret = "" // exercise the generated, persisted secret
	cfg.NATS = platform.EmbeddedNATS{SyncAlways: true}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { errc <- run(ctx, cfg, log, func(a, _ string) { addrc <- a }) }()
	select {
	case a := <-addrc:
		return "http://" + a, func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("chatd stopped with %v", err)
			}
		}
	case err := <-errc:
		t.Fatalf("chatd did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("chatd did not start in 30s")
	}
	return "", nil
}

// The all-in-one keeps everything across a restart on the same data dir: accounts, the signing
// key (old tokens stay valid), groups and messages; the second start reuses the stream.
func TestAllInOneKeepsStateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := start(t, dir)
	annTok, err := gt.Account(url, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gt.Account(url, "ben"); err != nil {
		t.Fatal(err)
	}
	c, _, err := gt.Dial(url, gt.DialOpts{Token: annTok})
	if err != nil {
		t.Fatal(err)
	}
	must := func(c *gt.Client, f map[string]any, want string) gt.Frame {
		t.Helper()
		if err := c.Send(f); err != nil {
			t.Fatal(err)
		}
		r, err := c.Reply(f["id"].(string), 10*time.Second)
		if err != nil || r.Cmd() != want {
			t.Fatalf("%v: %v %v", f, r, err)
		}
		return r
	}
	must(c, map[string]any{"cmd": "create", "conv": "g:keep", "members": []string{"ben"}, "id": "1"}, "ok")
	ack := must(c, map[string]any{"cmd": "message", "conv": "g:keep", "type": "text", "msg": "persist me", "mid": "p1", "id": "2"}, "ack")
	c.Close()
	stop()

	url, stop = start(t, dir)
	defer stop()
	// The token from before the restart still works: the signing key was kept.
	c, _, err = gt.Dial(url, gt.DialOpts{Token: annTok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := must(c, map[string]any{"cmd": "history", "conv": "g:keep", "id": "3"}, "history")
	msgs, _ := h["messages"].([]any)
	if len(msgs) != 3 { // two joins and the message
		t.Fatalf("history after restart: %v", h)
	}
	// The same mid is still recognised after the restart.
	again := must(c, map[string]any{"cmd": "message", "conv": "g:keep", "type": "text", "msg": "retry", "mid": "p1", "id": "4"}, "ack")
	if again.Seq() != ack.Seq() || again.Str("ts") != ack.Str("ts") {
		t.Fatalf("retry after restart %v, first %v", again, ack)
	}
	// Logging in again works against the kept account.
	if _, err := gt.Account(url, "ben"); err != nil {
		t.Fatal(err)
	}
}
