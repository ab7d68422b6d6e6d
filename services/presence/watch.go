package presence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// watch follows a whole bucket, deletes and expiries included, and hands every entry to apply.
// Should the bucket lose its contents under it (a memory bucket after NATS restarted: it is gone,
// or its revisions start again from 1 and a watcher would wait for revisions that never come),
// the bucket is created again if need be, read again from scratch and the aggregates reconciled
// (for the conns bucket, once the gateways' heartbeats have had one TTL to restore it).
type watch struct {
	s     *Service
	name  string
	kv    jetstream.KeyValue
	apply func(e jetstream.KeyValueEntry, replay bool)
	reset func()
	// settle is how long after a reset the aggregates are reconciled.
	settle time.Duration

	w       jetstream.KeyWatcher
	lastRev uint64
}

// open starts a watcher and applies the bucket's current contents; it returns once they are all
// applied. setup bounds the replay, base is the watcher's lifetime.
func (w *watch) open(setup, base context.Context) error {
	kw, err := w.kv.WatchAll(base)
	if err != nil {
		return err
	}
	for {
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("watcher closed during the initial read")
			}
			if e == nil {
				w.w = kw
				return nil
			}
			w.note(e)
			w.apply(e, true)
		case <-setup.Done():
			stopWatcher(kw)
			return setup.Err()
		}
	}
}

func (w *watch) note(e jetstream.KeyValueEntry) {
	if r := e.Revision(); r > w.lastRev {
		w.lastRev = r
	}
}

// loop applies updates until ctx ends (nil) or the watcher fails (an error).
func (w *watch) loop(ctx context.Context) error {
	check := time.NewTicker(resetCheckEvery(w.s.connTTL))
	defer check.Stop()
	defer func() { stopWatcher(w.w) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watcher of %s closed", w.name)
			}
			if e != nil {
				w.note(e)
				w.apply(e, false)
			}
		case <-check.C:
			if !w.wasReset(ctx) {
				continue
			}
			w.s.log.Warn("bucket lost its contents (NATS restarted?): reading it again", "bucket", w.name,
				"lastRev", w.lastRev)
			stopWatcher(w.w)
			w.reset()
			w.lastRev = 0
			setup, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := w.open(setup, ctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch %s again: %w", w.name, err)
			}
			// Give the gateways' heartbeats one connection TTL to bring the live connections
			// back before users without any are scheduled to go offline.
			why := "bucket " + w.name + " was reset"
			if w.settle > 0 {
				time.AfterFunc(w.settle, func() { w.s.reconcile(why) })
			} else {
				w.s.reconcile(why)
			}
		}
	}
}

// wasReset reports whether the bucket's last revision is below the last one seen.
func (w *watch) wasReset(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.kv.Status(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		// Gone altogether (a memory stream does not survive a standalone server's restart):
		// create the buckets again.
		if err := schemas.Ensure(ctx, w.s.js, w.s.deps.Topology); err != nil {
			w.s.log.Warn("buckets not created again", "bucket", w.name, "err", err)
			return false
		}
		return true
	}
	if err != nil {
		return false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return false
	}
	return bs.StreamInfo().State.LastSeq < w.lastRev
}

func resetCheckEvery(connTTL time.Duration) time.Duration {
	return min(max(connTTL/2, time.Second), 15*time.Second)
}

// stopWatcher stops a watcher and empties its channel, so the subscription's delivery can finish
// and close it.
func stopWatcher(kw jetstream.KeyWatcher) {
	if kw == nil {
		return
	}
	_ = kw.Stop()
	go func() {
		for range kw.Updates() {
		}
	}()
}
