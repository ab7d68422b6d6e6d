package unread

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stateTimeout bounds the wait for a live instance's state.
const stateTimeout = time.Minute

// stateReply answers a request on UnreadStateRq. The state can be larger than a NATS message, so
// it goes through the snapshot object store: Object names a projection encoded by Encode, at Seq,
// which the requester deletes once read.
type stateReply struct {
	Seq      uint64 `json:"seq"`
	Object   string `json:"object,omitempty"`
	Instance string `json:"instance,omitempty"`
	Error    string `json:"error,omitempty"`
}

// onState answers a state request with a consistent copy of the projection.
func (s *Service) onState(m *nats.Msg) {
	s.answer(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
		defer cancel()
		rp := stateReply{Instance: s.cfg.ID}
		var buf bytes.Buffer
		seq, err := s.proj.Encode(&buf)
		if err == nil {
			name := "check-" + rand.Text()
			if _, err = s.store.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "unread state for a check"},
				&buf); err == nil {
				rp.Seq, rp.Object = seq, name
			}
		}
		if err != nil {
			s.log.Error("state request", "err", err)
			rp.Error = "cannot store the state"
		}
		s.respond(m, rp)
	})
}

// Check compares the live projection with one rebuilt from the log: it asks a running instance
// for its state, replays the log into a fresh projection up to exactly that state's seq, and
// returns their differences (Diff: live on the left) and the seq compared at. No differences means
// the live projection is exactly what the log says.
func Check(ctx context.Context, nc *nats.Conn, log *slog.Logger) (diffs []string, seq uint64, err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: jetstream: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, schemas.UnreadStateRq, []byte("{}"))
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: ask for the live state: %w", err)
	}
	var rp stateReply
	if err := json.Unmarshal(msg.Data, &rp); err != nil {
		return nil, 0, fmt.Errorf("unread check: state answer: %w", err)
	}
	if rp.Error != "" || rp.Object == "" {
		return nil, 0, fmt.Errorf("unread check: instance %s: %s", rp.Instance, rp.Error)
	}
	store, err := js.ObjectStore(ctx, schemas.UnreadSnapshotBucket)
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: object store: %w", err)
	}
	live, err := readState(ctx, store, rp.Object)
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: %w", err)
	}
	log.Info("live state received", "instance", rp.Instance, "seq", rp.Seq)
	stream, err := js.Stream(ctx, schemas.EventsStream)
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: stream: %w", err)
	}
	start := time.Now()
	rebuilt, err := rebuild(ctx, stream, rp.Seq)
	if err != nil {
		return nil, 0, fmt.Errorf("unread check: %w", err)
	}
	log.Info("projection rebuilt from the log", "seq", rp.Seq, "took", time.Since(start))
	return Diff(live, rebuilt), rp.Seq, nil
}

// readState reads and deletes a state object written for a check.
func readState(ctx context.Context, store jetstream.ObjectStore, name string) (*Projection, error) {
	defer func() { _ = store.Delete(context.WithoutCancel(ctx), name) }()
	obj, err := store.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", name, err)
	}
	defer obj.Close()
	return DecodeProjection(obj)
}

// rebuild replays the log from its start into a fresh projection, up to seq upTo included.
func rebuild(ctx context.Context, stream jetstream.Stream, upTo uint64) (*Projection, error) {
	p := NewProjection()
	if upTo == 0 {
		return p, nil
	}
	cons, err := stream.OrderedConsumer(ctx, schemas.LiveConsumerConfig(1))
	if err != nil {
		return nil, fmt.Errorf("replay: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pullWindow))
	if err != nil {
		return nil, fmt.Errorf("replay: consume: %w", err)
	}
	defer it.Stop()
	for p.Seq() < upTo {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil, fmt.Errorf("replay: at seq %d of %d: %w", p.Seq(), upTo, err)
			}
			platform.Sleep(ctx, errorPause)
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("replay: metadata: %w", err)
		}
		if meta.Sequence.Stream > upTo {
			break
		}
		// An event that cannot be applied is skipped here as it was by the live projection.
		_ = p.Apply(meta.Sequence.Stream, msg.Subject(), msg.Data())
	}
	return p, nil
}
