package gateway

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func frameN(i int) outFrame { return outFrame{data: []byte(strconv.Itoa(i))} }

// The queue hands frames out in order across growth and wrap-around, refuses past max, and lets
// go of a burst's ring once it is empty.
func TestFrameQueueOrderBoundAndRelease(t *testing.T) {
	q := newFrameQueue(1000)
	next, popped := 0, 0
	// Interleave pushes and pops so that the ring wraps while it grows.
	for round := range 20 {
		for range round % 7 * 5 {
			if !q.push(frameN(next)) {
				t.Fatalf("push %d refused with %d queued", next, q.len())
			}
			next++
		}
		for range round % 3 * 4 {
			f, ok := q.pop()
			if !ok {
				break
			}
			if string(f.data) != strconv.Itoa(popped) {
				t.Fatalf("popped %s, want %d", f.data, popped)
			}
			popped++
		}
	}
	for {
		f, ok := q.pop()
		if !ok {
			break
		}
		if string(f.data) != strconv.Itoa(popped) {
			t.Fatalf("popped %s, want %d", f.data, popped)
		}
		popped++
	}
	if popped != next {
		t.Fatalf("popped %d of %d", popped, next)
	}
	if q.ring != nil {
		t.Fatalf("an emptied queue keeps a ring of %d", len(q.ring))
	}
	for i := range 1000 {
		if !q.push(frameN(i)) {
			t.Fatalf("push %d refused", i)
		}
	}
	if q.push(frameN(1000)) {
		t.Fatal("push past max accepted")
	}
	if q.len() != 1000 {
		t.Fatalf("len %d", q.len())
	}
}

// A small backlog keeps its ring: ordinary traffic does not allocate per frame.
func TestFrameQueueKeepsSmallRing(t *testing.T) {
	q := newFrameQueue(1024)
	q.push(frameN(1))
	q.pop()
	if len(q.ring) != keptQueueSlots {
		t.Fatalf("ring of %d after one frame, want %d kept", len(q.ring), keptQueueSlots)
	}
}

// pushWait waits for room, and gives up when stopped or when its context ends.
func TestFrameQueuePushWait(t *testing.T) {
	q := newFrameQueue(2)
	q.push(frameN(0))
	q.push(frameN(1))
	done := make(chan bool)
	go func() { done <- q.pushWait(context.Background(), nil, frameN(2)) }()
	select {
	case <-done:
		t.Fatal("pushWait returned on a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	q.pop()
	if ok := <-done; !ok {
		t.Fatal("pushWait failed once there was room")
	}
	for _, want := range []string{"1", "2"} {
		if f, _ := q.pop(); string(f.data) != want {
			t.Fatalf("popped %s, want %s", f.data, want)
		}
	}

	q.push(frameN(3))
	q.push(frameN(4))
	stop := make(chan struct{})
	go func() { done <- q.pushWait(context.Background(), stop, frameN(5)) }()
	close(stop)
	if <-done {
		t.Fatal("pushWait succeeded after stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if q.pushWait(ctx, nil, frameN(6)) {
		t.Fatal("pushWait succeeded on a full queue past its context")
	}
}

// Every push leaves a wake-up for the writer: frames are never stranded.
func TestFrameQueueSignals(t *testing.T) {
	q := newFrameQueue(16)
	q.push(frameN(0))
	q.push(frameN(1))
	select {
	case <-q.ready:
	default:
		t.Fatal("no wake-up after a push")
	}
	q.pop()
	q.pop()
	q.push(frameN(2))
	select {
	case <-q.ready:
	default:
		t.Fatal("no wake-up after a push to an emptied queue")
	}
}
