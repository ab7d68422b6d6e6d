package gateway

import (
	"context"
	"strconv"
	"sync/atomic"
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

// A push starts the writer once it may run and none runs; a writer that parks with nothing queued
// leaves the next push to start another: frames are never stranded, and at most one writer runs.
func TestFrameQueueStartsWriter(t *testing.T) {
	q := newFrameQueue(16)
	var starts atomic.Int32
	writer := func() { starts.Add(1) } // counts; the test plays the writer's part itself
	q.push(frameN(0))
	if n := starts.Load(); n != 0 {
		t.Fatalf("%d writers started before start", n)
	}
	q.start(writer)
	waitStarts := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for starts.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("writers started: %d, want %d", starts.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitStarts(1) // the frame queued before start
	q.push(frameN(1))
	if q.park(func() bool { return false }) {
		t.Fatal("the writer parked with frames queued")
	}
	q.pop()
	q.pop()
	if q.park(func() bool { return true }) {
		t.Fatal("the writer parked with other work")
	}
	if !q.park(func() bool { return false }) {
		t.Fatal("the writer did not park with nothing to do")
	}
	q.push(frameN(2))
	q.push(frameN(3))
	waitStarts(2) // one more, not one per push
	if n := starts.Load(); n != 2 {
		t.Fatalf("writers started: %d, want 2", n)
	}
}
