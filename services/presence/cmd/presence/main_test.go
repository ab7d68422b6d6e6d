package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eventchat/chat/platform/cmdtest"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// The test binary runs the command itself when asked to.
func TestMain(m *testing.M) { cmdtest.Main(m, main) }

// TestCommandServesAndStopsOnSIGTERM runs the command against a nats-server: it becomes ready,
// turns a connection report into a presence change, and exits 0 on SIGTERM.
func TestCommandServesAndStopsOnSIGTERM(t *testing.T) {
	ns := cmdtest.NATS(t)
	addr := cmdtest.FreeAddr(t)
	p := cmdtest.Start(t, []string{"CHAT_NATS_URL=" + ns.ClientURL(), "CHAT_PRESENCE_ADDR=" + addr,
		"CHAT_PRESENCE_CONN_TTL=5s", "CHAT_LOG_LEVEL=warn"}, "-presence-grace", "1s")
	p.WaitReady(addr, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	changes, err := nc.SubscribeSync(schemas.PresenceChangedAll)
	if err != nil {
		t.Fatal(err)
	}
	report, _ := json.Marshal(schemas.ConnEvent{Type: schemas.TypeConn, User: "alice", Conn: "c1", Gateway: "g",
		State: schemas.ConnConnect, Ts: schemas.FormatTime(time.Now())})
	// The service may still be subscribing when /readyz first answers: report until it answers.
	var msg *nats.Msg
	for msg == nil && time.Now().Before(deadline) {
		if err := nc.Publish(schemas.PresenceConnSubject("alice"), report); err != nil {
			t.Fatal(err)
		}
		msg, _ = changes.NextMsg(500 * time.Millisecond)
	}
	if msg == nil {
		t.Fatal("no presence change")
	}
	var ev schemas.PresenceChanged
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.User != "alice" || ev.Status != schemas.StatusOnline {
		t.Fatalf("change %s (%v)", msg.Data, err)
	}

	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
