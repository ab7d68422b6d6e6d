package chstore

import (
	"context"
	"fmt"
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
}

// columns is the column list of every insert (ClickHouse 18.16 needs it named).
const columns = "seq, ts, ts_ms, type, subject, conv, kind, from_user, tid, ref, ref_from, msg_type, user, action, data"

// RowOf maps the log entry at seq on subject to a row. An entry that does not decode is archived
// all the same (type "", its payload in data), so the archive holds the whole log; its time is
// the time JetStream stored it.
func RowOf(seq uint64, subject string, data []byte, stored time.Time) Row {
	r := Row{Seq: seq, Subject: subject, Data: string(data), Ts: stored.UTC()}
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
		// another type (a contact event) must not reach the conv column or the existing check.
		r.Conv = ""
	}
	if e.Type == schemas.TypeRead {
		r.Ref = e.Seq // a read's marker
	}
	return r
}

// Insert writes rows into db's events table as one batch (one INSERT statement, so one block).
func Insert(ctx context.Context, conn driver.Conn, db string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+EventsTable+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("chstore: prepare insert: %w", err)
	}
	for _, r := range rows {
		ts := r.Ts.UTC()
		if err := b.Append(r.Seq, ts.Truncate(time.Second), uint16(ts.Nanosecond()/int(time.Millisecond)), r.Type,
			r.Subject, r.Conv, r.Kind, r.From, r.Tid, r.Ref, r.RefFrom, r.MsgType, r.User, r.Action, r.Data); err != nil {
			_ = b.Abort()
			return fmt.Errorf("chstore: append row %d: %w", r.Seq, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chstore: insert %d rows: %w", len(rows), err)
	}
	return nil
}

// Existing returns which rows (by seq) are already in db's events table: the sink's check before
// inserting, so a batch redelivered after a crash between insert and ack stores nothing twice. The
// lookup goes through the primary key (conv, seq): the rows' conversations, then their seqs.
func Existing(ctx context.Context, conn driver.Conn, db string, rows []Row) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	if len(rows) == 0 {
		return out, nil
	}
	convs := map[string]bool{}
	lo, hi := rows[0].Seq, rows[0].Seq
	var seqList, convList strings.Builder
	for i, r := range rows {
		lo, hi = min(lo, r.Seq), max(hi, r.Seq)
		if i > 0 {
			seqList.WriteByte(',')
		}
		fmt.Fprintf(&seqList, "%d", r.Seq)
		if convs[r.Conv] {
			continue
		}
		// Only conversation ids that parse (letters, digits, '_', '-', ':') or "" reach the SQL.
		if _, err := schemas.ParseConv(r.Conv); err != nil && r.Conv != "" {
			return nil, fmt.Errorf("chstore: row %d has an invalid conversation", r.Seq)
		}
		if len(convs) > 0 {
			convList.WriteByte(',')
		}
		convs[r.Conv] = true
		convList.WriteString("'" + r.Conv + "'")
	}
	q := fmt.Sprintf("SELECT seq FROM %s.%s WHERE conv IN (%s) AND seq >= %d AND seq <= %d AND seq IN (%s)",
		db, EventsTable, convList.String(), lo, hi, seqList.String())
	res, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("chstore: existing seqs: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var s uint64
		if err := res.Scan(&s); err != nil {
			return nil, err
		}
		out[s] = true
	}
	return out, res.Err()
}
