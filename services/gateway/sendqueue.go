package gateway

import (
	"context"
	"sync"
)

// keptQueueSlots is the ring a session keeps once its queue is empty again: enough for the few
// frames at a time of ordinary traffic without allocating per frame; a larger ring, grown by a
// burst, is released.
const keptQueueSlots = 8

// frameQueue is a session's queue of frames to write: bounded like a buffered channel of max
// frames, but its memory follows what is queued. A channel of 1024 frames held 32 KB per
// connection, idle or not (most of an idle connection's memory); the ring here grows with a
// backlog and shrinks once it is written.
type frameQueue struct {
	max int

	mu   sync.Mutex
	ring []outFrame    // its length is a power of two, or 0
	head int           // index of the oldest frame
	n    int           // frames queued
	room chan struct{} // closed when a full queue has room again; nil while nobody waits

	// The writer runs on a goroutine of its own only while it has work: an idle connection holds
	// no stack for it (about a fifth of an idle connection's memory).
	writer  func() // started by wake, once set by start
	running bool   // a writer goroutine runs (it alone sets this back, in park)
}

func newFrameQueue(max int) *frameQueue {
	return &frameQueue{max: max}
}

// push queues f unless max frames are queued already; it never blocks.
func (q *frameQueue) push(f outFrame) bool {
	q.mu.Lock()
	if q.n >= q.max {
		q.mu.Unlock()
		return false
	}
	q.pushLocked(f)
	q.mu.Unlock()
	q.wake()
	return true
}

// pushWait queues f, waiting for room while the queue is full, until stop is closed or ctx ends.
func (q *frameQueue) pushWait(ctx context.Context, stop <-chan struct{}, f outFrame) bool {
	for {
		q.mu.Lock()
		if q.n < q.max {
			q.pushLocked(f)
			q.mu.Unlock()
			q.wake()
			return true
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (q *frameQueue) pushLocked(f outFrame) {
	if q.n == len(q.ring) {
		// Full ring: double it, the frames in order from index 0.
		grown := make([]outFrame, max(2*len(q.ring), keptQueueSlots))
		q.copyOut(grown)
		q.ring, q.head = grown, 0
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = f
	q.n++
}

// copyOut copies the queued frames, oldest first, to dst.
func (q *frameQueue) copyOut(dst []outFrame) {
	if q.n == 0 {
		return
	}
	end := q.head + q.n
	if end <= len(q.ring) {
		copy(dst, q.ring[q.head:end])
		return
	}
	k := copy(dst, q.ring[q.head:])
	copy(dst[k:], q.ring[:end-len(q.ring)])
}

// start lets the writer run: from now on wake starts it on a goroutine of its own whenever none
// runs. Frames queued before are written at once.
func (q *frameQueue) start(writer func()) {
	q.mu.Lock()
	q.writer = writer
	q.mu.Unlock()
	q.wake()
}

// wake tells the writer there is work: it starts one if none runs (one that runs looks at the
// queue again before it returns: park).
func (q *frameQueue) wake() {
	q.mu.Lock()
	if q.writer == nil || q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	writer := q.writer
	q.mu.Unlock()
	go writer()
}

// park is the writer's last look before it returns: it reports true, and the writer is to
// return, unless a frame is queued or more reports other work. Whoever queues work after that
// look starts a new writer (wake).
func (q *frameQueue) park(more func() bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n > 0 || more() {
		return false
	}
	q.running = false
	return true
}

// pop takes the oldest frame; ok is false when the queue is empty.
func (q *frameQueue) pop() (f outFrame, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return outFrame{}, false
	}
	f = q.ring[q.head]
	q.ring[q.head] = outFrame{} // the frame's bytes are not kept alive by the ring
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
	if q.n == 0 {
		q.head = 0
		if len(q.ring) > keptQueueSlots {
			q.ring = nil // a burst's ring goes back to the heap
		}
	}
	return f, true
}

// len is the number of frames queued.
func (q *frameQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
