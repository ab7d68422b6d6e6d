package chstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/eventchat/chat/services/archiver/localch"
)

// startServer starts a local ClickHouse for the test and connects to it; both end with the test.
func startServer(ctx context.Context, t *testing.T) driver.Conn {
	t.Helper()
	srv, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Migrations apply once and again without change; rows go in as batches, and Existing finds
// exactly the seqs stored.
func TestMigrateInsertExisting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := startServer(ctx, t)
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

// Existing (the seq index) and ExistingInTable (the table itself) find every stored seq of the
// rows asked about and nothing else: seqs far apart (runs of their own), seqs of other batches
// inside the rows' range, a payload time far from JetStream's (the time window covers both) and
// times a DateTime cannot hold (no window).
func TestExistingRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := startServer(ctx, t)
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
	checks := map[string]func(context.Context, driver.Conn, string, []chstore.Row) (map[uint64]bool, error){
		"Existing": chstore.Existing, "ExistingInTable": chstore.ExistingInTable}
	for name, existing := range checks {
		// The rows in the DateTime range (a window for ExistingInTable), then the others.
		got := map[uint64]bool{}
		for _, part := range [][]chstore.Row{mine[:len(mine)-2], mine[len(mine)-2:]} {
			found, err := existing(ctx, conn, "chat_test", part)
			if err != nil {
				t.Fatal(err)
			}
			for seq := range found {
				got[seq] = true
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s found %d seqs, want %d: %v", name, len(got), len(want), got)
		}
		for seq := range want {
			if !got[seq] {
				t.Fatalf("%s missed seq %d", name, seq)
			}
		}
	}
}

// The seq index migration indexes the rows an archive already holds (the backfill) as well as
// those inserted after it (the materialized view), and the check reads the index.
func TestSeqIndexBackfill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := startServer(ctx, t)
	// An archive of the first schema version, holding rows.
	if v, err := chstore.MigrateTo(ctx, conn, "chat_old", 1); err != nil || v != 1 {
		t.Fatalf("MigrateTo(1) = %d, %v", v, err)
	}
	row := func(seq uint64) chstore.Row {
		data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: "g:x", Ts: "2026-11-22T10:00:00Z",
			From: "ann", Mid: "m", MsgType: "text", Msg: "hello"})
		return chstore.RowOf(seq, "chat.msg.g.x", data, time.Now())
	}
	var before, after []chstore.Row
	for seq := uint64(1); seq <= 3000; seq++ {
		if seq <= 2000 {
			before = append(before, row(seq))
		} else {
			after = append(after, row(seq))
		}
	}
	if err := chstore.Insert(ctx, conn, "chat_old", before); err != nil {
		t.Fatal(err)
	}
	if got, err := chstore.Migrate(ctx, conn, "chat_old"); err != nil || got != len(chstore.Migrations) {
		t.Fatalf("Migrate = %d, %v", got, err)
	}
	found, err := chstore.Existing(ctx, conn, "chat_old", append(before, after...))
	if err != nil || len(found) != len(before) || !found[1] || !found[2000] || found[2001] {
		t.Fatalf("after the backfill, Existing found %d seqs (want %d), %v", len(found), len(before), err)
	}
	if err := chstore.Insert(ctx, conn, "chat_old", after[:500]); err != nil {
		t.Fatal(err)
	}
	found, err = chstore.Existing(ctx, conn, "chat_old", append(before, after...))
	if err != nil || len(found) != len(before)+500 || !found[2500] || found[2501] {
		t.Fatalf("after an insert, Existing found %d seqs (want %d), %v", len(found), len(before)+500, err)
	}
	var indexed uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM chat_old."+chstore.SeqIndexTable).Scan(&indexed); err != nil || indexed != 2500 {
		t.Fatalf("the index holds %d seqs, want 2500 (%v)", indexed, err)
	}
}
