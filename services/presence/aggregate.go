package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errConflicts: a recompute lost maxCASAttempts compare-and-swaps in a row.
var errConflicts = errors.New("too many concurrent writes")

func (s *Service) recomputeLogged(ctx context.Context, user, why string) {
	if err := s.recompute(ctx, user); err != nil {
		s.log.Warn("presence not recomputed", "user", user, "why", why, "err", err)
	}
}

// recompute brings user's aggregate in line with the connections in the conns bucket. The
// aggregate is read before the connections and written with compare-and-swap on the revision
// read: a write based on connections read earlier than a concurrent writer's fails and is redone.
// Only the writer that changes the status publishes the change.
func (s *Service) recompute(ctx context.Context, user string) error {
	start := time.Now()
	defer func() { s.m.recomputeSeconds.Observe(time.Since(start).Seconds()) }()
	for range maxCASAttempts {
		cur, rev, err := s.readAgg(ctx, user)
		if err != nil {
			return err
		}
		conns, err := s.listConns(ctx, user)
		if err != nil {
			return err
		}
		next, write := s.compute(user, cur, conns, s.now())
		if write {
			s.log.Debug("aggregate", "user", user, "status", next.Status, "devices", next.Devices, "offlineAt", next.OfflineAt)
		}
		if !write {
			if cur != nil {
				s.known.aggPut(user, cur, rev, false)
			}
			return nil
		}
		newRev, err := s.writeAgg(ctx, user, next, cur, rev)
		if isConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		s.known.aggPut(user, &next, newRev, true)
		if cur == nil || cur.Status != next.Status {
			s.publish(next)
		}
		return nil
	}
	return errConflicts
}

// compute is the aggregate user should have, given the current one (nil: none) and the live
// connections, and whether it must be written.
//
//   - with connections: online (away if all are idle), their number, no OfflineAt, lastSeen now;
//   - without: the status stays, OfflineAt = now + grace and lastSeen = now (when the last
//     connection went) unless OfflineAt is already set; the sweep makes it offline later;
//   - without connections and offline (or never seen): nothing changes.
func (s *Service) compute(user string, cur *schemas.PresenceState, conns []schemas.ConnEntry, now time.Time) (schemas.PresenceState, bool) {
	if n := len(conns); n > 0 {
		status := schemas.StatusAway
		for _, c := range conns {
			if !c.Idle {
				status = schemas.StatusOnline
				break
			}
		}
		if cur != nil && cur.Status == status && cur.Devices == n && cur.OfflineAt == "" {
			return *cur, false
		}
		return schemas.PresenceState{User: user, Status: status, LastSeen: schemas.FormatTime(now), Devices: n}, true
	}
	if cur == nil || cur.Status == schemas.StatusOffline || cur.OfflineAt != "" && cur.Devices == 0 {
		return schemas.PresenceState{}, false
	}
	next := *cur
	next.User, next.Devices = user, 0
	if next.OfflineAt == "" {
		next.OfflineAt = schemas.FormatTime(now.Add(s.cfg.Grace))
		next.LastSeen = schemas.FormatTime(now)
	}
	return next, true
}

// offlineCheck ends user's grace period: if OfflineAt has come and there is still no connection,
// the user goes offline (lastSeen kept) and the change is published. A lost compare-and-swap means
// another instance wrote first (it went offline there, or a connection came back): nothing to do.
func (s *Service) offlineCheck(ctx context.Context, user string) {
	cur, rev, err := s.readAgg(ctx, user)
	if err != nil {
		s.log.Warn("pending offline not checked", "user", user, "err", err)
		return
	}
	if cur == nil {
		s.known.dropAgg(user)
		return
	}
	if cur.OfflineAt == "" {
		s.known.aggPut(user, cur, rev, false)
		return
	}
	if at, err := time.Parse(time.RFC3339Nano, cur.OfflineAt); err == nil && at.After(s.now()) {
		s.known.aggPut(user, cur, rev, false)
		return
	}
	conns, err := s.listConns(ctx, user)
	if err != nil {
		s.log.Warn("pending offline not checked", "user", user, "err", err)
		return
	}
	if len(conns) > 0 {
		// A connection the aggregate does not count yet (its recompute is under way or was lost).
		s.recomputeLogged(ctx, user, "pending offline with connections")
		return
	}
	next := schemas.PresenceState{User: user, Status: schemas.StatusOffline, LastSeen: cur.LastSeen}
	newRev, err := s.writeAgg(ctx, user, next, cur, rev)
	if isConflict(err) {
		return
	}
	if err != nil {
		s.log.Warn("user not set offline", "user", user, "err", err)
		return
	}
	s.known.aggPut(user, &next, newRev, true)
	if cur.Status != schemas.StatusOffline {
		s.publish(next)
	}
}

// readAgg reads user's aggregate and its revision; nil if there is none.
func (s *Service) readAgg(ctx context.Context, user string) (*schemas.PresenceState, uint64, error) {
	e, err := s.aggs.Get(ctx, schemas.PresenceKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read aggregate: %w", err)
	}
	var ps schemas.PresenceState
	if err := json.Unmarshal(e.Value(), &ps); err != nil {
		// Unreadable: treat as absent but keep its revision, so the rewrite is still a CAS.
		s.log.Warn("unreadable aggregate replaced", "user", user, "err", err)
		return &schemas.PresenceState{User: user, Status: schemas.StatusOffline}, e.Revision(), nil
	}
	return &ps, e.Revision(), nil
}

// writeAgg writes next over cur (read at rev) with compare-and-swap.
func (s *Service) writeAgg(ctx context.Context, user string, next schemas.PresenceState, cur *schemas.PresenceState, rev uint64) (uint64, error) {
	key, data := schemas.PresenceKey(user), mustJSON(next)
	if cur == nil {
		return s.aggs.Create(ctx, key, data)
	}
	return s.aggs.Update(ctx, key, data, rev)
}

// listConns reads user's live connections from the conns bucket.
//
// It asks for the last entry of each of the user's keys in one multi-last direct get: the server
// answers from its per-subject index, where a filtered consumer (a KV watch) made it scan the
// stream, which made connect storms slow (7-15 ms a listing at 20k connections).
func (s *Service) listConns(ctx context.Context, user string) ([]schemas.ConnEntry, error) {
	req, _ := json.Marshal(map[string]any{"multi_last": []string{schemas.ConnsOfSubject(user)}})
	var out []schemas.ConnEntry
	err := s.gets.Request(ctx, schemas.ConnsDirectGet(), req, func(m *nats.Msg) (bool, error) {
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of the batch
			return true, nil
		case "404": // no entry at all
			return true, nil
		default:
			return true, fmt.Errorf("direct get answered %s %s", status, m.Header.Get("Description"))
		}
		// The last message of a deleted or expired key is its delete marker.
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" || m.Header.Get("Nats-Marker-Reason") != "" {
			return false, nil
		}
		var c schemas.ConnEntry
		_ = json.Unmarshal(m.Data, &c) // an unreadable entry is still a live connection
		out = append(out, c)
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return out, nil
}

// publish announces a new status on core NATS.
func (s *Service) publish(ps schemas.PresenceState) {
	ev := schemas.PresenceChanged{Type: schemas.TypePresenceChanged, User: ps.User, Status: ps.Status, LastSeen: ps.LastSeen}
	if err := s.nc.Publish(schemas.PresenceChangedSubject(ps.User), mustJSON(ev)); err != nil {
		s.log.Warn("presence change not published", "user", ps.User, "status", ps.Status, "err", err)
		return
	}
	s.m.changes.WithLabelValues(ps.Status).Inc()
	s.log.Debug("presence changed", "user", ps.User, "status", ps.Status, "lastSeen", ps.LastSeen)
}

// applyAgg takes an aggregate from the watcher.
func (s *Service) applyAgg(e jetstream.KeyValueEntry, _ bool) {
	user := e.Key()
	if !schemas.ValidUser(user) {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		s.known.aggPut(user, nil, e.Revision(), false)
		return
	}
	var ps schemas.PresenceState
	if err := json.Unmarshal(e.Value(), &ps); err != nil {
		return
	}
	s.known.aggPut(user, &ps, e.Revision(), false)
}

// isConflict reports a lost compare-and-swap: the key was written since it was read (10071, or
// 10164 on replicated streams).
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
