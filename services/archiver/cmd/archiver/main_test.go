package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/eventchat/chat/platform/cmdtest"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/localch"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

// TestCommandArchivesAndStopsOnSIGTERM runs the command against a nats-server and a local
// ClickHouse: it becomes ready, archives the log, answers an events request and exits 0 on
// SIGTERM.
func TestCommandArchivesAndStopsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ch, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if errors.Is(err, localch.ErrNotInstalled) {
		t.Fatal("this test needs a real ClickHouse server and none is installed: apt-get install clickhouse-server clickhouse-client")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	ns := cmdtest.NATS(t)
	addr := cmdtest.FreeAddr(t)
	p := cmdtest.Start(t, []string{"CHAT_NATS_URL=" + ns.ClientURL(), "CHAT_LOG_LEVEL=warn", "CHAT_CLICKHOUSE_ADDR=" + ch.Addr(),
		"CHAT_CLICKHOUSE_DB=cmd_test", "CHAT_ARCHIVER_ADDR=" + addr}, "-archiver-batch-wait", "20ms")
	p.WaitReady(addr, 60*time.Second)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ts := schemas.FormatTime(time.Now())
	for i, ev := range []schemas.Event{
		{Type: schemas.TypeMember, Conv: "g:team", Ts: ts, User: "ann", Action: schemas.ActionJoined, By: "ann", Members: []string{"ann"}},
		{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Mid: "m1", MsgType: "text", Msg: "one"},
	} {
		data, _ := json.Marshal(ev)
		subject := "chat.msg.g.team"
		if i == 0 {
			subject = schemas.MemberSubject("team")
		}
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "both events archived", func() bool {
		var n uint64
		return conn.QueryRow(ctx, "SELECT count() FROM cmd_test.events").Scan(&n) == nil && n == 2
	})
	var rp schemas.ArchiveEventsReply
	waitFor(t, "an events request sees them", func() bool {
		data, _ := json.Marshal(schemas.ArchiveEventsRequest{User: "ann", Convs: []schemas.ArchiveConv{{Conv: "g:team"}}, Limit: 10})
		msg, err := nc.Request(schemas.ArchiveEventsRq, data, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(msg.Data, &rp); err != nil || rp.ErrCode != "" {
			t.Fatalf("events answer %s", msg.Data)
		}
		return len(rp.Events) == 2 && rp.Archived == 2
	})

	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// Without a ClickHouse address the command refuses to start (exit 2).
func TestCommandNeedsClickHouse(t *testing.T) {
	if _, code := cmdtest.Run(t, []string{"CHAT_CLICKHOUSE_ADDR="}); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
