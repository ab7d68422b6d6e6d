package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The test binary runs the command itself when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("PRESENCE_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCommandServesAndStopsOnSIGTERM runs the command against a nats-server: it becomes ready,
// turns a connection report into a presence change, and exits 0 on SIGTERM.
func TestCommandServesAndStopsOnSIGTERM(t *testing.T) {
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

	cmd := exec.Command(os.Args[0], "-presence-grace", "1s")
	cmd.Env = append(os.Environ(), "PRESENCE_RUN_MAIN=1", "CHAT_NATS_URL="+ns.ClientURL(),
		"CHAT_PRESENCE_ADDR="+addr, "CHAT_PRESENCE_CONN_TTL=5s", "CHAT_LOG_LEVEL=warn")
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

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz never answered 200")
		}
		time.Sleep(50 * time.Millisecond)
	}

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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v (code %s)", err, strconv.Itoa(cmd.ProcessState.ExitCode()))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit 20s after SIGTERM")
	}
}
