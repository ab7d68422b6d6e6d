package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// Reads of a few conversations go through JetStream's batched direct get rather than a consumer:
// the server answers each subject from its per-subject index, with no consumer to create (a
// JetStream API request, whose queue a reconnect storm saturates, and which for several filter
// subjects makes the server scan the stream) and none to delete. A read of many conversations
// keeps the consumer: one filtered consumer beats dozens of requests per batch.

// directReadMaxSubjects is the most filter subjects read by direct get (a user's sync lists two
// per group and one per direct conversation); a variable for the tests, which run the reads both
// ways.
var directReadMaxSubjects atomic.Int64

func init() { directReadMaxSubjects.Store(16) }

// directReadBatch is the most messages one direct-get request asks for.
const directReadBatch = 256

// directReadTimeout bounds one direct-get request: a read fails rather than waits for ever.
const directReadTimeout = 10 * time.Second

// subjectCursor reads one subject's events in [next, to] a batch at a time.
type subjectCursor struct {
	subject string
	next    uint64
	buf     []logEvent
	done    bool // nothing more in [next, to]
}

// fill reads the subject's next batch if its buffer is empty and it is not done.
func (gw *Gateway) fill(ctx context.Context, c *subjectCursor, to uint64) error {
	for len(c.buf) == 0 && !c.done {
		req, _ := json.Marshal(map[string]any{"seq": c.next, "next_by_subj": c.subject, "batch": directReadBatch})
		got := 0
		var pending uint64
		rctx, cancel := context.WithTimeout(ctx, directReadTimeout)
		err := gw.gets.Request(rctx, "$JS.API.DIRECT.GET."+schemas.EventsStream, req, func(m *nats.Msg) (bool, error) {
			switch status := m.Header.Get("Status"); status {
			case "":
			case "204": // end of the batch: how many are left after it
				pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return true, nil
			case "404": // nothing at or after next
				c.done = true
				return true, nil
			default:
				return true, fmt.Errorf("direct get answered %s %s", status, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if err != nil || seq < c.next {
				return true, fmt.Errorf("direct get: bad sequence %q", m.Header.Get("Nats-Sequence"))
			}
			got++
			c.next = seq + 1
			if seq > to {
				c.done = true
				return false, nil // drain the rest of the batch
			}
			if c.done {
				return false, nil
			}
			e, err := schemas.DecodeEvent(m.Data)
			if err != nil {
				gw.log.Error("read log: undecodable event", "seq", seq, "err", err)
				return false, nil
			}
			c.buf = append(c.buf, logEvent{seq, e})
			return false, nil
		})
		cancel()
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if got == 0 || pending == 0 || c.next > to {
			c.done = true // the subject has nothing more in the range
		}
	}
	return nil
}

// readDirect is readBatches by direct get: the subjects' events merged in seq order, handed to fn
// in batches of up to directReadBatch.
func (gw *Gateway) readDirect(ctx context.Context, filters []string, from, to uint64, fn func(batch []logEvent) bool) error {
	cursors := make([]*subjectCursor, len(filters))
	for i, f := range filters {
		cursors[i] = &subjectCursor{subject: f, next: max(from, 1)}
	}
	for {
		// Every cursor with more to read has a batch in hand: the lowest head is the next event.
		var out []logEvent
		for len(out) < directReadBatch {
			var best *subjectCursor
			for _, c := range cursors {
				if err := gw.fill(ctx, c, to); err != nil {
					return err
				}
				if len(c.buf) > 0 && (best == nil || c.buf[0].seq < best.buf[0].seq) {
					best = c
				}
			}
			if best == nil {
				break
			}
			out = append(out, best.buf[0])
			best.buf = best.buf[1:]
		}
		if len(out) == 0 {
			return nil
		}
		if !fn(out) {
			return nil
		}
	}
}
