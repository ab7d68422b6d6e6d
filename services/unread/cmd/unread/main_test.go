package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventchat/chat/platform/cmdtest"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

// TestCommandServesChecksAndStopsOnSIGTERM runs the command against a nats-server: it becomes
// ready, pushes the count a read changed, `unread check` finds no difference, and it exits 0 on
// SIGTERM, leaving a snapshot.
func TestCommandServesChecksAndStopsOnSIGTERM(t *testing.T) {
	ns := cmdtest.NATS(t)
	addr := cmdtest.FreeAddr(t)
	env := []string{"CHAT_NATS_URL=" + ns.ClientURL(), "CHAT_LOG_LEVEL=warn"}
	p := cmdtest.Start(t, append(env, "CHAT_UNREAD_ADDR="+addr), "-unread-snapshot-every", "1h")
	p.WaitReady(addr, 20*time.Second)

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

	out, code := cmdtest.Run(t, env, "check")
	if code != 0 {
		t.Fatalf("check: exit %d: %s", code, out)
	}
	if got, want := strings.TrimSpace(out), "no difference at seq "+strconv.FormatUint(last, 10); got != want {
		t.Fatalf("check printed %q, want %q", got, want)
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
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
