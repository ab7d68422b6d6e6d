// Package chstore is the archive's ClickHouse schema and row format: the versioned migrations the
// archiver applies at start, the mapping of a log entry to a row, and the few statements every
// user of the table shares. The SQL runs on ClickHouse 18.16 and on current releases (24.x/25.x):
// features newer servers add (column codecs) are used only where the server has them.
package chstore

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Table names inside the archive's database.
const (
	EventsTable     = "events"
	SeqIndexTable   = "event_seqs"
	MigrationsTable = "schema_migrations"
	// seqIndexView fills SeqIndexTable from every insert into EventsTable.
	seqIndexView = "event_seqs_mv"
)

var validDB = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// ValidDatabase reports whether name may be used as the archive's database: it becomes part of
// SQL statements, so only a plain identifier is accepted.
func ValidDatabase(name string) bool { return validDB.MatchString(name) }

// Server describes the ClickHouse server the schema is applied to.
type Server struct {
	Major, Minor int
}

// Codecs reports whether the server supports column compression codecs (ClickHouse 19.1 and
// later; 18.16 does not parse them).
func (s Server) Codecs() bool { return s.Major >= 20 || (s.Major == 19 && s.Minor >= 1) }

// ParseVersion parses SELECT version()'s answer ("18.16.1", "24.8.4.13").
func ParseVersion(v string) (Server, error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return Server{}, fmt.Errorf("chstore: unrecognised server version %q", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Server{}, fmt.Errorf("chstore: unrecognised server version %q", v)
	}
	return Server{Major: major, Minor: minor}, nil
}

// codec returns a column's CODEC clause where the server supports codecs, else "".
func (s Server) codec(c string) string {
	if !s.Codecs() {
		return ""
	}
	return " CODEC(" + c + ")"
}

// Migration is one versioned, idempotent schema step.
type Migration struct {
	Version int
	Name    string
	// SQL returns the statements for database db on server s, run in order.
	SQL func(db string, s Server) []string
}

// Migrations are every schema step, in order. A step is never edited once released: a change is
// a new step. Each statement is idempotent (IF NOT EXISTS), so two archivers starting at once, or
// one that died half-way, converge.
var Migrations = []Migration{
	{Version: 1, Name: "events table", SQL: func(db string, s Server) []string {
		// One row per log entry. ORDER BY (conv, seq) serves history (one conversation, a seq
		// range, newest first) from a contiguous range of the primary index; monthly partitions
		// let analytics over a time range skip whole months. ReplacingMergeTree keyed by
		// (conv, seq) is only a second line of defence: the sink never inserts a seq twice
		// (it checks before inserting, see the archiver), and no query relies on merges or FINAL.
		return []string{
			"CREATE DATABASE IF NOT EXISTS " + db,
			"CREATE TABLE IF NOT EXISTS " + db + "." + EventsTable + ` (
	seq       UInt64` + s.codec("Delta, LZ4") + `,
	ts        DateTime('UTC')` + s.codec("Delta, LZ4") + `,
	ts_ms     UInt16,
	type      String,
	subject   String,
	conv      String,
	kind      String,
	from_user String,
	tid       String,
	ref       UInt64,
	ref_from  String,
	msg_type  String,
	user      String,
	action    String,
	data      String` + s.codec("ZSTD(3)") + `
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (conv, seq)`,
		}
	}},
	{Version: 2, Name: "seq index", SQL: func(db string, s Server) []string {
		// The seqs the events table holds, ordered by seq, for the sink's check before each
		// insert (Existing). The events table is ordered by (conv, seq), so asking it which of a
		// batch's seqs it holds reads the seq column of every part the batch's time overlaps:
		// merged parts span a month, so the check grew with the month's rows (2.6 ms per million
		// rows on 18.16, 53 ms at 20 million). Here it reads the granules of the batch's seq
		// ranges, whatever the archive's size.
		//
		// The materialized view writes a block's seqs in the same INSERT, after the block is in
		// the events table, so a seq found here is in the events table. The view is created
		// before the backfill, so a row is indexed by one or the other or both (a duplicate that
		// ReplacingMergeTree folds and the check does not mind). The statements are idempotent
		// except the backfill, whose repeat (a migration that died before it was recorded) only
		// adds such duplicates.
		index := db + "." + SeqIndexTable
		return []string{
			"CREATE TABLE IF NOT EXISTS " + index + " (seq UInt64" + s.codec("Delta, LZ4") +
				") ENGINE = ReplacingMergeTree ORDER BY seq",
			"CREATE MATERIALIZED VIEW IF NOT EXISTS " + db + "." + seqIndexView + " TO " + index +
				" AS SELECT seq FROM " + db + "." + EventsTable,
			"INSERT INTO " + index + " (seq) SELECT seq FROM " + db + "." + EventsTable,
		}
	}},
}

// Migrate applies the migrations the database has not recorded yet, in order, and records each.
// It returns the schema version reached.
func Migrate(ctx context.Context, conn driver.Conn, db string) (int, error) {
	return MigrateTo(ctx, conn, db, len(Migrations))
}

// MigrateTo is Migrate up to schema version target and no further: for a baseline with an older
// schema, or a test of an upgrade.
func MigrateTo(ctx context.Context, conn driver.Conn, db string, target int) (int, error) {
	if !ValidDatabase(db) {
		return 0, fmt.Errorf("chstore: invalid database name %q", db)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return 0, fmt.Errorf("chstore: server version: %w", err)
	}
	srv, err := ParseVersion(v)
	if err != nil {
		return 0, err
	}
	for _, stmt := range []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + "." + MigrationsTable +
			" (version UInt32, name String, applied DateTime('UTC')) ENGINE = MergeTree ORDER BY version",
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("chstore: %w", err)
		}
	}
	var applied uint32
	if err := conn.QueryRow(ctx, "SELECT toUInt32(max(version)) FROM "+db+"."+MigrationsTable).Scan(&applied); err != nil {
		return 0, fmt.Errorf("chstore: read schema version: %w", err)
	}
	for _, m := range Migrations {
		if m.Version <= int(applied) || m.Version > target {
			continue
		}
		for _, stmt := range m.SQL(db, srv) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return int(applied), fmt.Errorf("chstore: migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		// Inserts are batches: ClickHouse 18.16 does not answer INSERT ... VALUES sent as a query.
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+MigrationsTable+" (version, name, applied)")
		if err == nil {
			if err = b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err == nil {
				err = b.Send()
			}
		}
		if err != nil {
			return int(applied), fmt.Errorf("chstore: record migration %d: %w", m.Version, err)
		}
		applied = uint32(m.Version)
	}
	return int(applied), nil
}
