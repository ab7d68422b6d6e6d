package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// groups keeps group state: the log is the authority, the groups bucket a projection of it, and
// this cache a copy the live feed keeps current.
//
// A membership change is validated against the projected state at sequence S and appended with
// Nats-Expected-Last-Subject-Sequence S on the group's membership subject, so two gateways racing
// on one group cannot both win: the loser re-reads and re-validates. The bucket is then brought up
// to date by folding the log after S (refresh), which also repairs a projection left behind by a
// gateway that died between appending and projecting.
type groups struct {
	nc     *nats.Conn
	stream jetstream.Stream
	kv     jetstream.KeyValue
	index  jetstream.KeyValue

	mu    sync.Mutex
	cache map[string]*schemas.Group // a Group with Seq 0: known not to exist (yet)
}

func newGroups(nc *nats.Conn, stream jetstream.Stream, kv, index jetstream.KeyValue) *groups {
	return &groups{nc: nc, stream: stream, kv: kv, index: index, cache: map[string]*schemas.Group{}}
}

// cached returns the cached state of a group, loading it on first use. The result is shared:
// callers must not modify it.
func (gs *groups) cached(ctx context.Context, group string) (*schemas.Group, error) {
	gs.mu.Lock()
	g := gs.cache[group]
	gs.mu.Unlock()
	if g != nil {
		return g, nil
	}
	return gs.reload(ctx, group)
}

// reload refreshes a group from the bucket and the log and replaces the cached copy.
func (gs *groups) reload(ctx context.Context, group string) (*schemas.Group, error) {
	g, _, err := gs.refresh(ctx, group)
	if err != nil {
		return nil, err
	}
	gs.store(g)
	return g, nil
}

// store replaces the cached copy if g is newer.
func (gs *groups) store(g *schemas.Group) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if old := gs.cache[g.Group]; old == nil || g.Seq >= old.Seq {
		gs.cache[g.Group] = g
	}
}

// applyLive folds a membership event read by the live feed into the cached copy, if there is one.
// Copy-on-write: readers holding the old state are not disturbed.
func (gs *groups) applyLive(e *schemas.Event, seq uint64) {
	c, err := schemas.ParseConv(e.Conv)
	if err != nil || c.Kind != schemas.ConvGroup {
		return
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	old := gs.cache[c.Group]
	if old == nil || seq <= old.Seq {
		return
	}
	g := old.Clone()
	g.Apply(e, seq)
	gs.cache[c.Group] = g
}

// memberNow answers whether user is a member of group now, re-reading the authority when the
// cache says no (the cache may lag a change made through another gateway a moment ago).
func (gs *groups) memberNow(ctx context.Context, group, user string) (*schemas.Group, bool, error) {
	g, err := gs.cached(ctx, group)
	if err != nil {
		return nil, false, err
	}
	if g.IsMember(user) {
		return g, true, nil
	}
	if g, err = gs.reload(ctx, group); err != nil {
		return nil, false, err
	}
	return g, g.IsMember(user), nil
}

// refresh reads the group's projection and folds in any membership events the log has after it,
// writing the result back (compare-and-swap) when it changed. It returns the state and its revision.
func (gs *groups) refresh(ctx context.Context, group string) (*schemas.Group, uint64, error) {
	key := schemas.GroupKey(group)
	subj := schemas.MemberSubject(group)
	for attempt := 0; attempt < 10; attempt++ {
		g := &schemas.Group{Group: group, Members: map[string]*schemas.Membership{}}
		var rev uint64
		entry, err := gs.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, 0, fmt.Errorf("groups: get %s: %w", group, err)
		default:
			if g, err = schemas.UnmarshalGroup(entry.Value()); err != nil {
				return nil, 0, fmt.Errorf("groups: decode %s: %w", group, err)
			}
			rev = entry.Revision()
		}
		last, err := gs.lastSeq(ctx, subj)
		if err != nil {
			return nil, 0, err
		}
		if last <= g.Seq {
			return g, rev, nil
		}
		// The projection is behind the log: fold the missing events.
		for next := g.Seq + 1; next <= last; {
			m, err := gs.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, 0, fmt.Errorf("groups: read %s at %d: %w", subj, next, err)
			}
			e, err := schemas.DecodeEvent(m.Data)
			if err != nil {
				return nil, 0, err
			}
			g.Apply(&e, m.Sequence)
			next = m.Sequence + 1
		}
		data, err := schemas.MarshalGroup(g)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev, err = gs.kv.Create(ctx, key, data)
		} else {
			rev, err = gs.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return g, rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) && !isKVConflict(err) {
			return nil, 0, fmt.Errorf("groups: write %s: %w", group, err)
		}
		// Someone else projected meanwhile: start over from what they wrote.
	}
	return nil, 0, fmt.Errorf("groups: refresh %s: too much contention", group)
}

func isKVConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrWrongLastSequence || apiErr.ErrorCode == jsErrWrongLastSeqClust)
}

// lastSeq is the sequence of the last event on subj, 0 if none.
func (gs *groups) lastSeq(ctx context.Context, subj string) (uint64, error) {
	return lastSeqOf(ctx, gs.stream, subj)
}

// lastSeqOf is the sequence of the last event on subj, 0 if none.
func lastSeqOf(ctx context.Context, stream jetstream.Stream, subj string) (uint64, error) {
	m, err := stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last of %s: %w", subj, err)
	}
	return m.Sequence, nil
}

// decideFunc looks at the current state of a group and returns the membership events to append,
// or a protocol error. No events means nothing to do.
type decideFunc func(g *schemas.Group) ([]schemas.Event, error)

// change applies a membership change: decide against the current state, index the users who
// become members, append the events atomically under compare-and-swap, and project them. It
// retries when another change got in first.
func (gs *groups) change(ctx context.Context, group string, decide decideFunc) (*schemas.Group, error) {
	conv, err := schemas.GroupConv(group)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 8; attempt++ {
		g, _, err := gs.refresh(ctx, group)
		if err != nil {
			return nil, err
		}
		events, err := decide(g)
		if err != nil || len(events) == 0 {
			gs.store(g)
			return g, err
		}
		// Index first: a user's sync must know about a group before its events can reach them.
		if err := gs.indexMembers(ctx, conv, events); err != nil {
			return nil, err
		}
		msgs := make([]outMsg, len(events))
		for i := range events {
			data, err := json.Marshal(&events[i])
			if err != nil {
				return nil, err
			}
			msgs[i] = outMsg{subject: schemas.MemberSubject(group), data: data}
		}
		expect := g.Seq
		msgs[0].expectLast = &expect
		seqs, err := appendAtomic(ctx, gs.nc, msgs)
		if isWrongLastSeq(err) {
			continue // lost a race: re-read, re-decide
		}
		if err != nil {
			return nil, fmt.Errorf("groups: append to %s: %w", group, err)
		}
		for i := range events {
			if events[i].Action == schemas.ActionLeft {
				gs.markLeft(ctx, events[i].User, conv, seqs[i])
			}
		}
		// Project (folds exactly the events just appended, plus any a crashed writer left).
		g, _, err = gs.refresh(ctx, group)
		if err != nil {
			return nil, err
		}
		gs.store(g)
		return g, nil
	}
	return nil, fmt.Errorf("groups: change %s: too much contention", group)
}

// indexEntry is the value of a conversation index key: Left is the seq at which the user left a
// group (0 while a member), so a sync from after it can skip the group.
type indexEntry struct {
	Left uint64 `json:"left,omitempty"`
}

func (gs *groups) indexMembers(ctx context.Context, conv schemas.Conv, events []schemas.Event) error {
	// A create indexes up to 1000 members: in parallel, bounded.
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelKV)
	for i := range events {
		if a := events[i].Action; a == schemas.ActionJoined || a == schemas.ActionInvited {
			user := events[i].User
			g.Go(func() error {
				if _, err := gs.index.Put(ctx, schemas.IndexKey(user, conv), []byte("{}")); err != nil {
					return fmt.Errorf("groups: index %s: %w", user, err)
				}
				return nil
			})
		}
	}
	return g.Wait()
}

// parallelKV bounds the key-value requests one command has in flight.
const parallelKV = 32

// markLeft records in the index when a user left. It is advisory (it lets a later sync skip the
// group): a failure only costs that sync some reading, so it is not an error for the change.
func (gs *groups) markLeft(ctx context.Context, user string, conv schemas.Conv, seq uint64) {
	data, _ := json.Marshal(indexEntry{Left: seq})
	_, _ = gs.index.Put(ctx, schemas.IndexKey(user, conv), data)
}
