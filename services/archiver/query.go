package archiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/analytics"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/nats-io/nats.go"
)

// serve joins the queue group for events and analytics requests.
func (s *Service) serve() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, h := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{schemas.ArchiveEventsRq, s.onEvents},
		{schemas.ArchiveAnalyticsRq, s.onAnalytics},
	} {
		sub, err := s.nc.QueueSubscribe(h.subject, schemas.ArchiverQueue, h.handle)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return nil, fmt.Errorf("archiver: subscribe %s: %w", h.subject, err)
		}
		subs = append(subs, sub)
	}
	if err := s.nc.Flush(); err != nil {
		s.log.Warn("flush subscriptions", "err", err)
	}
	return subs, nil
}

// answer runs f on its own goroutine, at most maxAnswers at once (the subscription waits).
func (s *Service) answer(f func()) {
	s.slots <- struct{}{}
	s.answers.Add(1)
	go func() {
		defer func() { <-s.slots; s.answers.Done() }()
		f()
	}()
}

func (s *Service) waitAnswers() {
	done := make(chan struct{})
	go func() { s.answers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("answers still running at shutdown")
	}
}

func (s *Service) respond(m *nats.Msg, kind string, code schemas.ErrCode, start time.Time, v any) {
	result := resultOK
	if code != "" {
		result = string(code)
	}
	s.m.requests.WithLabelValues(kind, result).Inc()
	s.m.requestSecs.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if m.Reply == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode answer", "kind", kind, "err", err)
		return
	}
	if err := m.Respond(data); err != nil {
		s.log.Warn("answer", "kind", kind, "err", err)
	}
}

// onEvents answers an ArchiveEventsRequest.
func (s *Service) onEvents(m *nats.Msg) {
	s.answer(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.QueryTimeout)
		defer cancel()
		rp := s.events(ctx, m.Data)
		s.respond(m, kindEvents, rp.ErrCode, start, rp)
	})
}

// onAnalytics answers an AnalyticsRequest.
func (s *Service) onAnalytics(m *nats.Msg) {
	s.answer(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AnalyticsTimeout)
		defer cancel()
		rp := s.analytics(ctx, m.Data)
		s.respond(m, kindReports, rp.ErrCode, start, rp)
	})
}

func (s *Service) analytics(ctx context.Context, data []byte) schemas.AnalyticsReply {
	fail := func(code schemas.ErrCode, msg string) schemas.AnalyticsReply {
		return schemas.AnalyticsReply{Columns: []string{}, Rows: [][]any{}, ErrCode: code, ErrMsg: msg}
	}
	var rq schemas.AnalyticsRequest
	if err := json.Unmarshal(data, &rq); err != nil {
		return fail(schemas.CodeBadRequest, "invalid analytics request")
	}
	rp, err := analytics.Run(chContext(ctx), s.ch, s.cfg.Database, rq)
	if err != nil {
		code, msg := s.queryFailure(err)
		s.log.Warn("analytics report failed", "report", rq.Report, "err", err)
		return fail(code, msg)
	}
	return rp
}

// queryFailure maps a ClickHouse error to an answer: an exception the server raised is internal,
// anything else (no connection, timeout) unavailable. Readiness is left to the sink and the
// pinger: a slow report is no sign of an unreachable server.
func (s *Service) queryFailure(err error) (schemas.ErrCode, string) {
	s.m.errors.WithLabelValues(opQuery).Inc()
	var exc *clickhouse.Exception
	if errors.As(err, &exc) {
		return schemas.CodeInternal, "internal error"
	}
	return schemas.CodeUnavailable, "archive unavailable"
}

// events answers an events request: the visible events of the request's conversations, within
// its bounds and up to the archived seq, in the order asked.
func (s *Service) events(ctx context.Context, data []byte) schemas.ArchiveEventsReply {
	fail := func(code schemas.ErrCode, msg string) schemas.ArchiveEventsReply {
		return schemas.ArchiveEventsReply{Events: []schemas.ArchivedEvent{}, ErrCode: code, ErrMsg: msg}
	}
	var rq schemas.ArchiveEventsRequest
	if err := json.Unmarshal(data, &rq); err != nil {
		return fail(schemas.CodeBadRequest, "invalid events request")
	}
	if err := validateEvents(&rq); err != nil {
		return fail(schemas.CodeBadRequest, err.Error())
	}
	// The archived seq first: every event up to it is in ClickHouse before the query runs. The
	// cached value (at most floorEvery old) is read again when it does not cover the range asked.
	archived := s.floor.Load()
	if archived == 0 || (rq.Before != 0 && archived < rq.Before-1) {
		var err error
		if archived, err = s.readFloor(ctx); err != nil && archived == 0 {
			return fail(schemas.CodeUnavailable, "archive position unknown")
		}
	}
	rp := schemas.ArchiveEventsReply{Events: []schemas.ArchivedEvent{}, Archived: archived}
	seen := make(map[uint64]bool, rq.Limit)
	err := readWindows(&rq, archived, s.cfg.windows, func(lo, hi uint64) (bool, error) {
		q, args := eventsQuery(s.cfg.Database, &rq, lo, hi, rq.Limit-len(rp.Events))
		rows, err := s.ch.Query(chContext(ctx), q, args...)
		if err != nil {
			return false, err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				seq  uint64
				text string
			)
			if err := rows.Scan(&seq, &text); err != nil {
				return false, err
			}
			// LIMIT 1 BY seq already de-duplicates; this is the second line of defence.
			if seen[seq] || !json.Valid([]byte(text)) {
				continue
			}
			seen[seq] = true
			rp.Events = append(rp.Events, schemas.ArchivedEvent{Seq: seq, Data: json.RawMessage(text)})
		}
		return len(rp.Events) >= rq.Limit, rows.Err()
	})
	if err != nil {
		code, msg := s.queryFailure(err)
		s.log.Warn("events query failed", "err", err)
		return fail(code, msg)
	}
	s.chIsUp()
	return rp
}

// validateEvents checks every identifier and bound of a request before it goes near SQL.
func validateEvents(rq *schemas.ArchiveEventsRequest) error {
	if !schemas.ValidUser(rq.User) {
		return errors.New("invalid user")
	}
	if len(rq.Convs) == 0 || len(rq.Convs) > schemas.MaxArchiveConvs {
		return fmt.Errorf("convs: 1 to %d conversations", schemas.MaxArchiveConvs)
	}
	seen := make(map[string]bool, len(rq.Convs))
	for _, c := range rq.Convs {
		if _, err := schemas.ParseConv(c.Conv); err != nil {
			return errors.New("invalid conversation")
		}
		if seen[c.Conv] {
			return errors.New("a conversation is named twice")
		}
		seen[c.Conv] = true
		if c.To != 0 && c.To < c.From {
			return errors.New("conversation range: to before from")
		}
	}
	if rq.Limit < 1 || rq.Limit > schemas.MaxArchiveEventsPage {
		return fmt.Errorf("limit: 1 to %d", schemas.MaxArchiveEventsPage)
	}
	return nil
}

// Reading windows of an events request: a page is read in seq windows from where it starts
// (After going up, Before going down), the first of limit*windowPerEvent seqs (at least
// windowMin), each next one windowGrowth times wider, until the page is full or the range
// exhausted. A busy conversation's page then reads a few granules near its start instead of
// every row the conversation has (ClickHouse 18.16 sorts all matching rows for ORDER BY ...
// LIMIT); a quiet one costs a few more short queries.
type windowing struct {
	min, perEvent, growth uint64
}

var defaultWindows = windowing{min: 1024, perEvent: 64, growth: 32}

// readWindows calls read for each window [lo, hi] (inclusive) of the request's range, in paging
// order, until read reports the page full or the range ends.
func readWindows(rq *schemas.ArchiveEventsRequest, archived uint64, w windowing, read func(lo, hi uint64) (full bool, err error)) error {
	if rq.After == math.MaxUint64 || rq.Before == 1 {
		return nil
	}
	lo, hi := rq.After+1, archived
	if rq.Before != 0 {
		hi = min(hi, rq.Before-1)
	}
	span := max(uint64(rq.Limit)*w.perEvent, w.min, 1)
	for lo <= hi {
		wlo, whi := lo, hi
		if hi-lo >= span {
			if rq.Desc {
				wlo = hi - span + 1
			} else {
				whi = lo + span - 1
			}
		}
		full, err := read(wlo, whi)
		if err != nil || full {
			return err
		}
		if rq.Desc {
			if wlo == lo {
				return nil
			}
			hi = wlo - 1
		} else {
			if whi == hi {
				return nil
			}
			lo = whi + 1
		}
		if span < math.MaxUint64/w.growth {
			span *= w.growth
		} else {
			span = math.MaxUint64
		}
	}
	return nil
}

// eventsQuery builds the events query for seqs lo..hi (inclusive): conversation events
// (messages, edits, deletes, reactions, member events) of the request's conversations, each within
// the seqs the user may see there or the user's own member event, private (tid) events only to
// their sender, target or the author of the message they refer to, at most limit, in the order
// asked. Identifiers go through the driver's binding (they are validated too); bounds are numbers.
func eventsQuery(db string, rq *schemas.ArchiveEventsRequest, lo, hi uint64, limit int) (q string, args []any) {
	// Conversations with the same visible range share one clause, so each id appears once.
	type span struct{ from, to uint64 }
	var order []span
	groups := map[span][]string{}
	for _, c := range rq.Convs {
		sp := span{c.From, c.To}
		if _, ok := groups[sp]; !ok {
			order = append(order, sp)
		}
		groups[sp] = append(groups[sp], c.Conv)
	}
	var b strings.Builder
	b.WriteString("SELECT seq, data FROM " + db + "." + chstore.EventsTable +
		" WHERE type IN ('" + schemas.TypeMessage + "', '" + schemas.TypeMember + "')" +
		" AND seq >= " + strconv.FormatUint(lo, 10) + " AND seq <= " + strconv.FormatUint(hi, 10) +
		" AND (tid = '' OR from_user = ? OR tid = ? OR ref_from = ?) AND (")
	args = append(args, rq.User, rq.User, rq.User)
	for i, sp := range order {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(conv IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(groups[sp])), ", ") + ")")
		for _, c := range groups[sp] {
			args = append(args, c)
		}
		var rng []string
		if sp.from > 0 {
			rng = append(rng, "seq >= "+strconv.FormatUint(sp.from, 10))
		}
		if sp.to > 0 {
			rng = append(rng, "seq < "+strconv.FormatUint(sp.to, 10))
		}
		if len(rng) > 0 {
			b.WriteString(" AND ((" + strings.Join(rng, " AND ") + ") OR (type = '" + schemas.TypeMember + "' AND user = ?))")
			args = append(args, rq.User)
		}
		b.WriteString(")")
	}
	b.WriteString(") ORDER BY seq")
	if rq.Desc {
		b.WriteString(" DESC")
	}
	b.WriteString(" LIMIT 1 BY seq LIMIT " + strconv.Itoa(limit))
	return b.String(), args
}
