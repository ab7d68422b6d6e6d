// Package analytics runs the archive's analytics reports (docs/analytics.md) on ClickHouse: the
// archiver answers chat.archive.req.analytics with Run, and chatctl prints the table.
//
// Every report counts ordinary messages: events of type chat.message.v1 with no kind (edits,
// deletes and reactions have one; member, read, contact and gone events have another type).
// A message that was later deleted still counts as sent; private (tid) messages count like any
// other. Time is the event's ts (the gateway's clock at append, millisecond precision), days and
// weeks are UTC.
//
// The SQL is the common subset of ClickHouse 18.16 and current releases (24.x/25.x): no window
// functions, no DateTime64, no WITH FILL, no FINAL. Values are passed with clickhouse-go's `?`
// binding; the database name, the only text that is not a bound value, is checked with
// chstore.ValidDatabase. No report relies on merges: a seq stored twice counts once (messages are
// uniqExact(seq), users uniqExact(from_user), first-response times argMin by seq per
// conversation).
package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
)

// Limits of the ranking reports' Limit.
const (
	DefaultLimit = 20
	MaxLimit     = 1000
)

// Report names.
const (
	MessagesPerDay       = "messages-per-day"
	ActiveUsers          = "active-users"
	BusiestConversations = "busiest-conversations"
	FirstResponseTime    = "first-response-time"
	MessagesByType       = "messages-by-type"
)

// report is one report: its SQL (built from constant fragments only) and what it accepts.
type report struct {
	name string
	// conv: the report can be narrowed to one conversation; ranked: it takes a limit.
	conv, ranked bool
	// sql returns the statement for database db and the filters present, and its arguments.
	sql func(db string, f filter) (string, []any)
	// post adjusts the reply (nil: none).
	post func(*schemas.AnalyticsReply)
}

var reports = []report{
	{name: MessagesPerDay, conv: true, sql: messagesPerDaySQL},
	{name: ActiveUsers, conv: true, sql: activeUsersSQL},
	{name: BusiestConversations, ranked: true, sql: busiestSQL},
	{name: FirstResponseTime, sql: firstResponseSQL, post: firstResponsePost},
	{name: MessagesByType, conv: true, sql: messagesByTypeSQL},
}

// Names are the reports Run knows, in the order docs/analytics.md describes them.
func Names() []string {
	out := make([]string, len(reports))
	for i, r := range reports {
		out[i] = r.name
	}
	return out
}

func find(name string) (report, bool) {
	for _, r := range reports {
		if r.name == name {
			return r, true
		}
	}
	return report{}, false
}

// filter is a request's validated parameters. Times are milliseconds since the Unix epoch;
// hasSince/hasUntil/conv tell which filters apply.
type filter struct {
	hasSince, hasUntil bool
	sinceMs, untilMs   int64
	conv               string
	limit              int
}

// maxTime is the last second a ClickHouse DateTime holds (UInt32 seconds).
const maxTime = math.MaxUint32

// parseTime reads a bound: a date (2006-01-02, midnight UTC) or an RFC 3339 time (any offset,
// converted to UTC; fractions below a millisecond are dropped).
func parseTime(s string) (int64, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return 0, fmt.Errorf("%q is neither a date (2006-01-02) nor an RFC 3339 time (2006-01-02T15:04:05Z)", s)
		}
	}
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(maxTime, 0)) {
		return 0, fmt.Errorf("%q is outside 1970-01-01 .. 2106-02-07", s)
	}
	return t.UnixMilli(), nil
}

// parse validates req against r.
func parse(r report, req schemas.AnalyticsRequest) (filter, error) {
	var f filter
	var err error
	if req.Since != "" {
		if f.sinceMs, err = parseTime(req.Since); err != nil {
			return f, fmt.Errorf("since: %w", err)
		}
		f.hasSince = true
	}
	if req.Until != "" {
		if f.untilMs, err = parseTime(req.Until); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
		f.hasUntil = true
	}
	if f.hasSince && f.hasUntil && f.untilMs <= f.sinceMs {
		return f, errors.New("until must be after since")
	}
	if req.Conv != "" {
		if !r.conv {
			return f, fmt.Errorf("report %s does not take a conversation", r.name)
		}
		if _, err := schemas.ParseConv(req.Conv); err != nil {
			return f, err
		}
		f.conv = req.Conv
	}
	switch {
	case !r.ranked && req.Limit != 0:
		return f, fmt.Errorf("report %s does not take a limit", r.name)
	case r.ranked && req.Limit == 0:
		f.limit = DefaultLimit
	case r.ranked && (req.Limit < 1 || req.Limit > MaxLimit):
		return f, fmt.Errorf("limit must be 1..%d", MaxLimit)
	default:
		f.limit = req.Limit
	}
	return f, nil
}

func badRequest(format string, a ...any) schemas.AnalyticsReply {
	return schemas.AnalyticsReply{Columns: []string{}, Rows: [][]any{}, ErrCode: schemas.CodeBadRequest, ErrMsg: fmt.Sprintf(format, a...)}
}

// Run runs the report req names on database db (whose events table chstore.Migrate made). An
// unknown report or a bad parameter is answered with ErrCode bad_request and a nil error; an
// invalid db (the archiver's own configuration) or a ClickHouse failure is an error.
func Run(ctx context.Context, conn driver.Conn, db string, req schemas.AnalyticsRequest) (schemas.AnalyticsReply, error) {
	if !chstore.ValidDatabase(db) {
		return schemas.AnalyticsReply{}, fmt.Errorf("analytics: invalid database name %q", db)
	}
	r, ok := find(req.Report)
	if !ok {
		return badRequest("unknown report %q; reports: %s", req.Report, strings.Join(Names(), ", ")), nil
	}
	f, err := parse(r, req)
	if err != nil {
		return badRequest("%s", err.Error()), nil
	}
	q, args := r.sql(db, f)
	reply, err := query(ctx, conn, q, args)
	if err != nil {
		return schemas.AnalyticsReply{}, fmt.Errorf("analytics: %s: %w", r.name, err)
	}
	if r.post != nil {
		r.post(&reply)
	}
	return reply, nil
}

// query runs q and returns its result as a table of JSON-friendly values: numbers as they come,
// strings, dates as 2006-01-02, times as RFC 3339 (UTC, milliseconds), NaN and infinities as null.
func query(ctx context.Context, conn driver.Conn, q string, args []any) (schemas.AnalyticsReply, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return schemas.AnalyticsReply{}, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	out := schemas.AnalyticsReply{Columns: rows.Columns(), Rows: [][]any{}}
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return schemas.AnalyticsReply{}, err
		}
		row := make([]any, len(types))
		for i, p := range ptrs {
			row[i] = jsonValue(types[i].DatabaseTypeName(), reflect.ValueOf(p).Elem().Interface())
		}
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return schemas.AnalyticsReply{}, err
	}
	return out, nil
}

func jsonValue(dbType string, v any) any {
	switch x := v.(type) {
	case time.Time:
		if strings.HasPrefix(dbType, "Date") && !strings.HasPrefix(dbType, "DateTime") {
			return x.Format(time.DateOnly)
		}
		return schemas.FormatTime(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil
		}
	}
	return v
}

// The SQL. Every statement is assembled from the constant text below and the checked database
// name; every value is a `?` argument. docs/analytics.md shows each statement with every optional
// filter present (TestDocsShowTheSQL keeps them in step).

// ordinary selects the ordinary messages.
const ordinary = "type = 'chat.message.v1' AND kind = ''"

// Time filters on the event time in milliseconds. The second-resolution ts bound lets ClickHouse
// skip partitions and granules; the millisecond bound makes it exact.
const (
	sinceFilter = "AND ts >= toDateTime(?) AND toInt64(ts) * 1000 + ts_ms >= ?"
	untilFilter = "AND ts <= toDateTime(?) AND toInt64(ts) * 1000 + ts_ms < ?"
	convFilter  = "AND conv = ?"
)

// where returns the optional filters of f (time, and the conversation when useConv), each on a
// line of its own indented by indent, and their arguments.
func (f filter) where(useConv bool, indent string) (string, []any) {
	var b strings.Builder
	var args []any
	if f.hasSince {
		b.WriteString("\n" + indent + sinceFilter)
		args = append(args, floorSec(f.sinceMs), f.sinceMs)
	}
	if f.hasUntil {
		b.WriteString("\n" + indent + untilFilter)
		args = append(args, floorSec(f.untilMs), f.untilMs)
	}
	if useConv && f.conv != "" {
		b.WriteString("\n" + indent + convFilter)
		args = append(args, f.conv)
	}
	return b.String(), args
}

func floorSec(ms int64) int64 { return ms / 1000 } // ms >= 0

func table(db string) string { return db + "." + chstore.EventsTable }

func messagesPerDaySQL(db string, f filter) (string, []any) {
	w, args := f.where(true, "  ")
	return `SELECT toDate(ts) AS day, uniqExact(seq) AS messages
FROM ` + table(db) + `
WHERE ` + ordinary + w + `
GROUP BY day
ORDER BY day`, args
}

func activeUsersSQL(db string, f filter) (string, []any) {
	w, args := f.where(true, "      ")
	part := func(period, start string) string {
		return `    SELECT '` + period + `' AS period, ` + start + ` AS start, uniqExact(from_user) AS users
    FROM ` + table(db) + `
    WHERE ` + ordinary + w + `
    GROUP BY start`
	}
	return `SELECT period, start, users
FROM (
` + part("day", "toDate(ts)") + `
  UNION ALL
` + part("week", "toMonday(ts)") + `
)
ORDER BY period, start`, append(args, args...)
}

func busiestSQL(db string, f filter) (string, []any) {
	w, args := f.where(false, "  ")
	return `SELECT conv, uniqExact(seq) AS messages, uniqExact(from_user) AS senders
FROM ` + table(db) + `
WHERE ` + ordinary + w + `
GROUP BY conv
ORDER BY messages DESC, conv ASC
LIMIT ?`, append(args, f.limit)
}

// firstResponseSQL: per direct conversation dm:<a>:<b>, the first ordinary message of each
// participant (lowest seq); the conversation's first message is the lower of the two, its reply
// the other. The window selects conversations by the time of their first message; the reply may
// come later.
func firstResponseSQL(db string, f filter) (string, []any) {
	var having []string
	var args []any
	if f.hasSince {
		having = append(having, "first_ms >= ?")
		args = append(args, f.sinceMs)
	}
	if f.hasUntil {
		having = append(having, "first_ms < ?")
		args = append(args, f.untilMs)
	}
	h := ""
	if len(having) > 0 {
		h = "\n    HAVING " + strings.Join(having, " AND ")
	}
	return `SELECT
  countIf(replied) AS conversations,
  countIf(NOT replied) AS unanswered,
  quantileExactIf(0.5)(response_ms, replied) AS median_ms,
  quantileExactIf(0.9)(response_ms, replied) AS p90_ms
FROM (
  SELECT
    (a_seq > 0 AND b_seq > 0) AS replied,
    greatest(if(a_seq < b_seq, b_ms - a_ms, a_ms - b_ms), 0) AS response_ms
  FROM (
    SELECT
      conv,
      argMin(toInt64(ts) * 1000 + ts_ms, seq) AS first_ms,
      minIf(seq, from_user = splitByChar(':', conv)[2]) AS a_seq,
      argMinIf(toInt64(ts) * 1000 + ts_ms, seq, from_user = splitByChar(':', conv)[2]) AS a_ms,
      minIf(seq, from_user = splitByChar(':', conv)[3]) AS b_seq,
      argMinIf(toInt64(ts) * 1000 + ts_ms, seq, from_user = splitByChar(':', conv)[3]) AS b_ms
    FROM ` + table(db) + `
    WHERE ` + ordinary + ` AND conv LIKE 'dm:%'
    GROUP BY conv` + h + `
  )
)`, args
}

// firstResponsePost: with no answered conversation the quantiles are undefined (ClickHouse
// answers 0 or NaN depending on the version): null.
func firstResponsePost(r *schemas.AnalyticsReply) {
	if len(r.Rows) != 1 || len(r.Rows[0]) != 4 {
		return
	}
	if n, ok := r.Rows[0][0].(uint64); ok && n == 0 {
		r.Rows[0][2], r.Rows[0][3] = nil, nil
	}
}

func messagesByTypeSQL(db string, f filter) (string, []any) {
	w, args := f.where(true, "    ")
	// msg_type is renamed outside the aggregation: an alias "type" inside it would replace the
	// type column in WHERE (ClickHouse aliases are visible in the whole SELECT).
	return `SELECT msg_type AS type, messages
FROM (
  SELECT msg_type, uniqExact(seq) AS messages
  FROM ` + table(db) + `
  WHERE ` + ordinary + w + `
  GROUP BY msg_type
)
ORDER BY messages DESC, type ASC`, args
}
