package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/localch"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The test binary runs the command itself when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("ARCHIVER_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

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
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(os.Args[0], "-archiver-batch-wait", "20ms")
	cmd.Env = append(os.Environ(), "ARCHIVER_RUN_MAIN=1", "CHAT_NATS_URL="+ns.ClientURL(), "CHAT_LOG_LEVEL=warn",
		"CHAT_CLICKHOUSE_ADDR="+ch.Addr(), "CHAT_CLICKHOUSE_DB=cmd_test", "CHAT_ARCHIVER_ADDR="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	waitFor(t, "/readyz answers 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v (code %d)", err, cmd.ProcessState.ExitCode())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
}

// Without a ClickHouse address the command refuses to start (exit 2).
func TestCommandNeedsClickHouse(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ARCHIVER_RUN_MAIN=1", "CHAT_CLICKHOUSE_ADDR=")
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit %v, want code 2", err)
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
