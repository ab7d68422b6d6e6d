package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The test binary runs the command itself when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("UNREAD_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCommandServesChecksAndStopsOnSIGTERM runs the command against a nats-server: it becomes
// ready, pushes the count a read changed, `unread check` finds no difference, and it exits 0 on
// SIGTERM, leaving a snapshot.
func TestCommandServesChecksAndStopsOnSIGTERM(t *testing.T) {
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

	env := append(os.Environ(), "UNREAD_RUN_MAIN=1", "CHAT_NATS_URL="+ns.ClientURL(), "CHAT_LOG_LEVEL=warn")
	cmd := exec.Command(os.Args[0], "-unread-snapshot-every", "1h")
	cmd.Env = append(env, "CHAT_UNREAD_ADDR="+addr)
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

	deadline := time.Now().Add(20 * time.Second)
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := nc.SubscribeSync(schemas.UnreadChangedAll)
	if err != nil {
		t.Fatal(err)
	}
	ts := schemas.FormatTime(time.Now())
	var last uint64
	for _, ev := range []struct {
		subject string
		e       schemas.Event
	}{
		{schemas.MemberSubject("team"), schemas.Event{Type: schemas.TypeMember, Conv: "g:team", Ts: ts, User: "ann",
			Action: schemas.ActionJoined, By: "ann", Members: []string{"ann", "ben"}}},
		{schemas.MemberSubject("team"), schemas.Event{Type: schemas.TypeMember, Conv: "g:team", Ts: ts, User: "ben",
			Action: schemas.ActionJoined, By: "ann"}},
		{"chat.msg.g.team", schemas.Event{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Mid: "m1",
			MsgType: "text", Msg: "one"}},
		{"chat.msg.g.team", schemas.Event{Type: schemas.TypeMessage, Conv: "g:team", Ts: ts, From: "ann", Mid: "m2",
			MsgType: "text", Msg: "two"}},
		{schemas.ReadSubject("ben"), schemas.Event{Type: schemas.TypeRead, Conv: "g:team", Ts: ts, From: "ben", Seq: 3}},
	} {
		data, _ := json.Marshal(ev.e)
		ack, err := js.Publish(context.Background(), ev.subject, data)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	msg, err := changes.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no unread change: %v", err)
	}
	var ch schemas.UnreadChanged
	if err := json.Unmarshal(msg.Data, &ch); err != nil || ch != (schemas.UnreadChanged{User: "ben", Conv: "g:team",
		Count: 1, ReadSeq: 3, Cause: last}) {
		t.Fatalf("change %s (%v)", msg.Data, err)
	}

	check := exec.Command(os.Args[0], "check")
	check.Env = env
	var out bytes.Buffer
	check.Stdout, check.Stderr = &out, os.Stderr
	if err := check.Run(); err != nil {
		t.Fatalf("check: %v: %s", err, out.String())
	}
	if got, want := strings.TrimSpace(out.String()), "no difference at seq "+strconv.FormatUint(last, 10); got != want {
		t.Fatalf("check printed %q, want %q", got, want)
	}

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
	// Snapshots are hourly here: the one in the store was written on the way out.
	store, err := js.ObjectStore(context.Background(), schemas.UnreadSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.GetInfo(context.Background(), schemas.UnreadSnapshotObject)
	if err != nil || info.Metadata["seq"] != strconv.FormatUint(last, 10) {
		t.Fatalf("snapshot after shutdown: %+v, %v", info, err)
	}
}
