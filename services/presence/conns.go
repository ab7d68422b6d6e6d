package presence

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// onReport takes a gateway's connection report off the subscription: it validates it and queues
// it on the user's worker.
func (s *Service) onReport(msg *nats.Msg) {
	ev, why := parseReport(msg)
	if why != "" {
		s.m.invalid.Inc()
		s.log.Debug("connection report dropped", "subject", msg.Subject, "why", why)
		return
	}
	s.m.connEvents.WithLabelValues(ev.State).Inc()
	s.dispatch(ev.User, func(ctx context.Context) { s.handleReport(ctx, ev) })
}

// parseReport decodes and validates a report; why says what is wrong with an invalid one.
func parseReport(msg *nats.Msg) (ev schemas.ConnEvent, why string) {
	if len(msg.Data) > maxReportBytes {
		return ev, "too large"
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return ev, "not JSON"
	}
	switch {
	case ev.Type != schemas.TypeConn:
		return ev, "type"
	case !schemas.ValidUser(ev.User):
		return ev, "user"
	case !schemas.ValidMid(ev.Conn):
		return ev, "conn"
	case msg.Subject != schemas.PresenceConnSubject(ev.User):
		return ev, "subject does not match user"
	case len(ev.Gateway) > 128 || len(ev.Client) > 128:
		return ev, "gateway or client too long"
	}
	switch ev.State {
	case schemas.ConnConnect, schemas.ConnHeartbeat, schemas.ConnIdle, schemas.ConnActive, schemas.ConnDisconnect:
		return ev, ""
	}
	return ev, "state"
}

// handleReport applies one report: it writes or deletes the connection's entry and recomputes
// the user when that may change the aggregate. A heartbeat only refreshes the entry (its TTL
// starts again), unless the aggregate known here disagrees with a live connection.
func (s *Service) handleReport(ctx context.Context, ev schemas.ConnEvent) {
	key := schemas.ConnKey(ev.User, ev.Conn)
	switch ev.State {
	case schemas.ConnConnect:
		entry := schemas.ConnEntry{Gateway: ev.Gateway, Idle: ev.Idle, Client: ev.Client, Since: s.since(ev.Ts)}
		rev, err := s.conns.Put(ctx, key, mustJSON(entry))
		if err != nil {
			s.logReport(slog.LevelWarn, ev, "connection not stored", "err", err)
			return
		}
		s.known.connPut(key, ev.User, rev, entry)
		s.recomputeLogged(ctx, ev.User, ev.State)
	case schemas.ConnDisconnect:
		if err := s.conns.Delete(ctx, key); err != nil {
			s.logReport(slog.LevelWarn, ev, "connection not deleted", "err", err)
			return
		}
		s.known.connClosed(key, ev.User, 0, s.now())
		s.recomputeLogged(ctx, ev.User, ev.State)
	default:
		idle := ev.Idle
		switch ev.State {
		case schemas.ConnIdle:
			idle = true
		case schemas.ConnActive:
			idle = false
		}
		changed, ok := s.refresh(ctx, ev, key, idle)
		if !ok {
			return
		}
		if ev.State != schemas.ConnHeartbeat || changed || s.heartbeatNeedsRecompute(ev.User, idle) {
			s.recomputeLogged(ctx, ev.User, ev.State)
		}
	}
}

// refresh rewrites a live connection's entry (heartbeat, idle, active) with compare-and-swap on the
// revision known here, so that a report overtaken by the connection's disconnect (reports of one
// connection may reach different instances) does not bring it back. A connection not known here
// at all (its entry expired while its gateway was cut off, or NATS lost the memory bucket) is
// created: its gateway says it is live. It reports whether the connection is new or its Idle
// changed, and false if the report was dropped.
func (s *Service) refresh(ctx context.Context, ev schemas.ConnEvent, key string, idle bool) (changed, ok bool) {
	entry := schemas.ConnEntry{Gateway: ev.Gateway, Idle: idle, Client: ev.Client}
	rec, known := s.known.conn(key)
	if known && rec.closed {
		s.logReport(slog.LevelDebug, ev, "report for a closed connection dropped")
		return false, false
	}
	var rev uint64
	var err error
	if !known {
		entry.Since = s.since(ev.Ts)
		rev, err = s.conns.Create(ctx, key, mustJSON(entry))
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Created meanwhile (its connect, on another instance): refresh that one.
			rev, err = s.refreshStored(ctx, key, &entry)
		}
	} else {
		entry.Since = rec.entry.Since
		rev, err = s.conns.Update(ctx, key, mustJSON(entry), rec.rev)
		if isConflict(err) {
			// Another report of the connection was stored meanwhile, or it went.
			rev, err = s.refreshStored(ctx, key, &entry)
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || isConflict(err) {
			s.logReport(slog.LevelDebug, ev, "report for a connection that went meanwhile dropped")
		} else {
			s.logReport(slog.LevelWarn, ev, "connection not refreshed", "err", err)
		}
		return false, false
	}
	s.known.connPut(key, ev.User, rev, entry)
	// Compared with what was known before the write: the watcher may deliver the write first.
	return !known || rec.entry.Idle != idle, true
}

func (s *Service) logReport(level slog.Level, ev schemas.ConnEvent, msg string, args ...any) {
	s.log.Log(context.Background(), level, msg, append([]any{"user", ev.User, "conn", ev.Conn, "state", ev.State}, args...)...)
}

// refreshStored rewrites the stored entry of key, if there is one, keeping its Since.
func (s *Service) refreshStored(ctx context.Context, key string, entry *schemas.ConnEntry) (uint64, error) {
	cur, err := s.conns.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	var old schemas.ConnEntry
	if json.Unmarshal(cur.Value(), &old) == nil && old.Since != "" {
		entry.Since = old.Since
	}
	if entry.Since == "" {
		entry.Since = schemas.FormatTime(s.now())
	}
	return s.conns.Update(ctx, key, mustJSON(*entry), cur.Revision())
}

// heartbeatNeedsRecompute reports whether the aggregate known here disagrees with a live
// connection of user: missing or offline, pending offline, away although this connection is
// active, or counting another number of devices than this instance knows.
func (s *Service) heartbeatNeedsRecompute(user string, idle bool) bool {
	a, ok := s.known.agg(user)
	if !ok || a.state.OfflineAt != "" {
		return true
	}
	if a.state.Status == schemas.StatusAway && !idle {
		return true
	}
	return a.state.Devices != s.known.liveCount(user)
}

// applyConn takes an entry of the conns bucket from the watcher: a connection deleted by another
// instance, expired (no heartbeat for the bucket's TTL: the server leaves a marker the watcher
// reports as a purge) or unknown makes the user be recomputed. During the initial read nothing is
// recomputed: reconcile does that once both buckets are read.
func (s *Service) applyConn(e jetstream.KeyValueEntry, replay bool) {
	user, _, ok := schemas.ParseConnKey(e.Key())
	if !ok {
		return
	}
	var recompute bool
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var entry schemas.ConnEntry
		_ = json.Unmarshal(e.Value(), &entry) // an unreadable entry is still a live connection
		s.known.connPut(e.Key(), user, e.Revision(), entry)
	case jetstream.KeyValueDelete:
		recompute = s.known.connClosed(e.Key(), user, e.Revision(), s.now())
	case jetstream.KeyValuePurge:
		recompute = s.known.connExpired(e.Key(), user, e.Revision())
	}
	if recompute && !replay {
		why := "conn " + e.Operation().String()
		s.dispatch(user, func(ctx context.Context) { s.recomputeLogged(ctx, user, why) })
	}
}

// since is the protocol time of a report's Ts, or now if it is missing, unreadable or ahead.
func (s *Service) since(ts string) string {
	now := s.now()
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || t.After(now.Add(time.Minute)) {
		t = now
	}
	return schemas.FormatTime(t)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("presence: marshal: " + err.Error())
	}
	return b
}
