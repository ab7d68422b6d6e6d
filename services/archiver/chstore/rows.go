package chstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/schemas"
)

// Row is one log entry as archived. Data is the entry's payload exactly as stored in the log; the
// other columns are extracted from it for queries.
type Row struct {
	Seq     uint64
	Ts      time.Time
	Type    string
	Subject string
	Conv    string
	Kind    string
	From    string
	Tid     string
	Ref     uint64
	RefFrom string
	MsgType string
	User    string
	Action  string
	Data    string
	// Stored is JetStream's timestamp of the entry; not a column (Existing's time window covers
	// it as well as Ts).
	Stored time.Time
}

// columns is the column list of every insert (ClickHouse 18.16 needs it named).
const columns = "seq, ts, ts_ms, type, subject, conv, kind, from_user, tid, ref, ref_from, msg_type, user, action, data"

// RowOf maps the log entry at seq on subject to a row. An entry that does not decode is archived
// all the same (type "", its payload in data), so the archive holds the whole log; its time is
// the time JetStream stored it. The row depends on the entry alone, so a redelivered entry maps to
// the row stored the first time; Existing relies on its time being the payload's or JetStream's.
func RowOf(seq uint64, subject string, data []byte, stored time.Time) Row {
	r := Row{Seq: seq, Subject: subject, Data: string(data), Ts: stored.UTC(), Stored: stored}
	e, err := schemas.DecodeEvent(data)
	if err != nil {
		return r
	}
	if t, err := time.Parse(time.RFC3339Nano, e.Ts); err == nil {
		r.Ts = t.UTC()
	}
	r.Type, r.Conv, r.Kind, r.From, r.Tid, r.Ref, r.RefFrom = e.Type, e.Conv, e.Kind, e.From, e.Tid, e.Ref, e.RefFrom
	r.MsgType, r.User, r.Action = e.MsgType, e.User, e.Action
	if _, err := schemas.ParseConv(r.Conv); err != nil {
		// Only conversation events have one (DecodeEvent checks theirs); a stray value on
		// another type (a contact event) must not reach the conv column.
		r.Conv = ""
	}
	if e.Type == schemas.TypeRead {
		r.Ref = e.Seq // a read's marker
	}
	return r
}

// Insert writes rows into db's events table as one batch (one INSERT statement, so one block).
// The block is filled a column at a time, one Append of a slice per column in the order of
// columns: the client then does no per-row conversion of 15 values to interfaces.
func Insert(ctx context.Context, conn driver.Conn, db string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		seq, ref = make([]uint64, n), make([]uint64, n)
		ts       = make([]time.Time, n)
		tsMs     = make([]uint16, n)
		typ      = make([]string, n)
		subject  = make([]string, n)
		conv     = make([]string, n)
		kind     = make([]string, n)
		from     = make([]string, n)
		tid      = make([]string, n)
		refFrom  = make([]string, n)
		msgType  = make([]string, n)
		user     = make([]string, n)
		action   = make([]string, n)
		data     = make([]string, n)
	)
	for i, r := range rows {
		t := r.Ts.UTC()
		seq[i], ts[i], tsMs[i] = r.Seq, t.Truncate(time.Second), uint16(t.Nanosecond()/int(time.Millisecond))
		typ[i], subject[i], conv[i], kind[i], from[i], tid[i] = r.Type, r.Subject, r.Conv, r.Kind, r.From, r.Tid
		ref[i], refFrom[i], msgType[i], user[i], action[i], data[i] = r.Ref, r.RefFrom, r.MsgType, r.User, r.Action, r.Data
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+EventsTable+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("chstore: prepare insert: %w", err)
	}
	for i, col := range []any{seq, ts, tsMs, typ, subject, conv, kind, from, tid, ref, refFrom, msgType, user, action, data} {
		if err := b.Column(i).Append(col); err != nil {
			_ = b.Abort()
			return fmt.Errorf("chstore: append column %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chstore: insert %d rows: %w", len(rows), err)
	}
	return nil
}

// Existing returns which rows (by seq) are already in db's events table, as its seq index
// (SeqIndexTable, filled by the events table's materialized view) says: the sink's check before
// a first attempt at a batch of first deliveries. The index's primary key is the seq, so the
// check reads the granules of the rows' seq runs (see seqRuns) whatever the archive's size.
//
// The index can miss a stored row: ClickHouse writes the view after the table, so an INSERT that
// failed in between (a server crash, or a block spanning two monthly partitions that failed
// after the first part) leaves rows in the table that the index lacks. The sink therefore checks
// a retried batch, or one holding a redelivered event, with ExistingInTable.
func Existing(ctx context.Context, conn driver.Conn, db string, rows []Row) (map[uint64]bool, error) {
	if len(rows) == 0 {
		return map[uint64]bool{}, nil
	}
	seqs := sortedSeqs(rows)
	return existingSeqs(ctx, conn, db+"."+SeqIndexTable, seqRunsWhere(seqs), seqs)
}

// ExistingInTable returns which rows (by seq) are in db's events table itself: exact, but it
// reads the seq column of every part the rows' time window overlaps, and merged parts span a
// month (2.6 ms per million rows on 18.16), so the sink uses it only where an earlier attempt at
// the same rows may have partly succeeded.
//
// The time window lets ClickHouse skip the parts (the partition key's min-max index) of other
// months: a row stored with one of these seqs has the ts RowOf gives the entry, either the
// payload's time or JetStream's (the window covers both, whichever RowOf picked), truncated to the
// second as Insert stores it. Times a DateTime cannot hold leave the window out (every part).
func ExistingInTable(ctx context.Context, conn driver.Conn, db string, rows []Row) (map[uint64]bool, error) {
	if len(rows) == 0 {
		return map[uint64]bool{}, nil
	}
	lo, hi := rows[0].Ts, rows[0].Ts
	for _, r := range rows {
		for _, t := range []time.Time{r.Ts, r.Stored} {
			if !t.IsZero() {
				lo, hi = earlier(lo, t), later(hi, t)
			}
		}
	}
	seqs := sortedSeqs(rows)
	where := "(" + seqRunsWhere(seqs) + ")"
	if lo.Unix() >= minDateTime && hi.Unix() <= maxDateTime {
		where = fmt.Sprintf("ts >= toDateTime(%d) AND ts <= toDateTime(%d) AND ", lo.Unix(), hi.Unix()) + where
	}
	return existingSeqs(ctx, conn, db+"."+EventsTable, where, seqs)
}

// existingSeqs selects the seqs of table matching where and returns those among seqs (sorted).
// Neither check names a seq one by one: on 18.16, a statement listing a batch's 5000 seqs cost
// the server more CPU than inserting the batch.
func existingSeqs(ctx context.Context, conn driver.Conn, table, where string, seqs []uint64) (map[uint64]bool, error) {
	res, err := conn.Query(ctx, "SELECT seq FROM "+table+" WHERE "+where)
	if err != nil {
		return nil, fmt.Errorf("chstore: existing seqs: %w", err)
	}
	defer res.Close()
	out := map[uint64]bool{}
	for res.Next() {
		var s uint64
		if err := res.Scan(&s); err != nil {
			return nil, err
		}
		if _, found := slices.BinarySearch(seqs, s); found {
			out[s] = true
		}
	}
	return out, res.Err()
}

func sortedSeqs(rows []Row) []uint64 {
	seqs := make([]uint64, len(rows))
	for i, r := range rows {
		seqs[i] = r.Seq
	}
	slices.Sort(seqs)
	return seqs
}

// seqRunsWhere is the condition "seq within one of the runs of seqs" (sorted, not empty).
func seqRunsWhere(seqs []uint64) string {
	var where strings.Builder
	for i, run := range seqRuns(seqs) {
		if i > 0 {
			where.WriteString(" OR ")
		}
		fmt.Fprintf(&where, "(seq >= %d AND seq <= %d)", run[0], run[1])
	}
	return where.String()
}

// The range of ClickHouse's DateTime (seconds since the epoch, unsigned 32 bits).
const (
	minDateTime = 0
	maxDateTime = 1<<32 - 1
)

// runGap is the longest gap inside one run of seqRuns: the seqs of the gaps are read and
// dropped, at most runGap per gap.
const runGap = 1024

// seqRuns covers sorted seqs with [first, last] runs, a new run starting after a gap of more
// than runGap. A batch of one instance is a few runs (one when it is alone on the consumer; the
// seqs of instances sharing it interleave); a redelivered event far behind is a run of its own.
func seqRuns(seqs []uint64) [][2]uint64 {
	var runs [][2]uint64
	for _, s := range seqs {
		if n := len(runs); n > 0 && s-runs[n-1][1] <= runGap+1 {
			runs[n-1][1] = s
			continue
		}
		runs = append(runs, [2]uint64{s, s})
	}
	return runs
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
