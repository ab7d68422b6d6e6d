package localch

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// A server starts in a fresh directory, keeps its data across a stop, and answers again after a
// restart on the same ports.
func TestStartStopRestartKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	exec := func(q string) {
		t.Helper()
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
	{
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		// Inserts go as batches: 18.16 does not answer an INSERT ... VALUES sent as a plain query.
		b, err := conn.PrepareBatch(ctx, "INSERT INTO t (x)")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(uint64(42)); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var x uint64
	if err := conn.QueryRow(ctx, "SELECT x FROM t").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after restart: %d, %v", x, err)
	}
}
