package chstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/eventchat/chat/services/archiver/localch"
)

// Migrations apply once and again without change; rows go in as batches, and Existing finds
// exactly the seqs stored.
func TestMigrateInsertExisting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 2 {
		v, err := chstore.Migrate(ctx, conn, "chat_test")
		if err != nil || v != len(chstore.Migrations) {
			t.Fatalf("Migrate = %d, %v", v, err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM chat_test.schema_migrations").Scan(&n); err != nil || n != uint64(len(chstore.Migrations)) {
		t.Fatalf("migrations recorded: %d, %v", n, err)
	}
	if _, err := chstore.Migrate(ctx, conn, "bad-name; DROP"); err == nil {
		t.Fatal("an invalid database name was accepted")
	}

	msg := func(seq uint64, conv string) chstore.Row {
		data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: conv, Ts: "2026-11-22T10:00:00.123Z",
			From: "ann", Mid: "m1", MsgType: "text", Msg: "hello"})
		return chstore.RowOf(seq, "chat.msg.g.x", data, time.Now())
	}
	rows := []chstore.Row{msg(1, "g:x"), msg(2, "g:x"), msg(5, "dm:ann:ben"),
		chstore.RowOf(6, "chat.weird", []byte("not json"), time.Now())}
	if r := rows[0]; r.Type != schemas.TypeMessage || r.From != "ann" || r.Ts.Nanosecond() != 123_000_000 {
		t.Fatalf("RowOf: %+v", r)
	}
	if err := chstore.Insert(ctx, conn, "chat_test", rows[:2]); err != nil {
		t.Fatal(err)
	}
	got, err := chstore.Existing(ctx, conn, "chat_test", rows)
	if err != nil || len(got) != 2 || !got[1] || !got[2] {
		t.Fatalf("Existing = %v, %v", got, err)
	}
	if err := chstore.Insert(ctx, conn, "chat_test", rows[2:]); err != nil {
		t.Fatal(err)
	}
	if got, err = chstore.Existing(ctx, conn, "chat_test", rows); err != nil || len(got) != 4 {
		t.Fatalf("Existing = %v, %v", got, err)
	}
	var ms uint16
	if err := conn.QueryRow(ctx, "SELECT ts_ms FROM chat_test.events WHERE seq = 1").Scan(&ms); err != nil || ms != 123 {
		t.Fatalf("ts_ms = %d, %v", ms, err)
	}
}

// Existing finds every stored seq of the rows asked about and nothing else: seqs far apart (runs
// of their own), seqs of other batches inside the rows' range, a payload time far from
// JetStream's (the time window covers both) and times a DateTime cannot hold (no window).
func TestExistingRunsAndTimeWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := chstore.Migrate(ctx, conn, "chat_test"); err != nil {
		t.Fatal(err)
	}
	stored := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	row := func(seq uint64, ts string) chstore.Row {
		data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: "g:x", Ts: ts, From: "ann", Mid: "m",
			MsgType: "text", Msg: "hello"})
		return chstore.RowOf(seq, "chat.msg.g.x", data, stored)
	}
	now := "2026-05-06T07:08:09.5Z"
	var mine, others []chstore.Row
	for seq := uint64(100); seq < 200; seq++ {
		if seq%3 == 0 {
			others = append(others, row(seq, now)) // another instance's, inside our range
		} else {
			mine = append(mine, row(seq, now))
		}
	}
	mine = append(mine,
		row(5, now),                            // redelivered, far behind
		row(1_000_000, "2025-01-01T00:00:00Z"), // far ahead, a payload time months before JetStream's
		row(1_000_001, "2300-01-01T00:00:00Z"), // after the last DateTime
		row(1_000_002, "1960-01-01T00:00:00Z")) // before the first
	stored2 := append([]chstore.Row{}, others...)
	want := map[uint64]bool{}
	for i, r := range mine {
		if i%2 == 0 || r.Seq >= 1_000_000 || r.Seq == 5 {
			stored2 = append(stored2, r)
			want[r.Seq] = true
		}
	}
	if err := chstore.Insert(ctx, conn, "chat_test", stored2); err != nil {
		t.Fatal(err)
	}
	// The rows in the DateTime range (a window), then the others (none).
	got := map[uint64]bool{}
	for _, part := range [][]chstore.Row{mine[:len(mine)-2], mine[len(mine)-2:]} {
		found, err := chstore.Existing(ctx, conn, "chat_test", part)
		if err != nil {
			t.Fatal(err)
		}
		for seq := range found {
			got[seq] = true
		}
	}
	if len(got) != len(want) {
		t.Fatalf("Existing found %d seqs, want %d: %v", len(got), len(want), got)
	}
	for seq := range want {
		if !got[seq] {
			t.Fatalf("Existing missed seq %d", seq)
		}
	}
}
