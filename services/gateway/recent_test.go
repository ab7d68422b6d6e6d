package gateway

import (
	"slices"
	"testing"

	"github.com/eventchat/chat/schemas"
)

func seqsOf(evs []logEvent) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.seq)
	}
	return out
}

// The recent log holds every conversation event after its floor, answers a read only when it
// reaches back to the read's start, merges subjects in seq order, and leaves the part after the
// feed's position to the stream.
func TestRecentLogWindow(t *testing.T) {
	r := newRecentLog(4)
	r.reset(10)
	ev := func(msg string) *schemas.Event { return &schemas.Event{Type: schemas.TypeMessage, Msg: msg} }
	r.add("a", 11, ev("a11"))
	r.add("read", 12, nil) // not a conversation event: only the position moves
	r.add("b", 13, ev("b13"))
	r.add("a", 14, ev("a14"))
	r.add("a", 12, ev("again")) // read again after a resume: ignored

	if _, _, ok := r.read([]string{"a"}, 10, 20); ok {
		t.Fatal("a read from 10 answered, but the log holds only what came after 10")
	}
	evs, next, ok := r.read([]string{"a", "b"}, 11, 20)
	if !ok || !slices.Equal(seqsOf(evs), []uint64{11, 13, 14}) || next != 15 {
		t.Fatalf("read [11, 20]: %v next %d ok %v; want [11 13 14] next 15", seqsOf(evs), next, ok)
	}
	if evs[0].e.Msg != "a11" {
		t.Fatalf("event 11 is %q", evs[0].e.Msg)
	}
	if evs, next, _ := r.read([]string{"a"}, 12, 13); !slices.Equal(seqsOf(evs), nil) || next != 14 {
		t.Fatalf("read [12, 13] of a: %v next %d; want none, next 14", seqsOf(evs), next)
	}
	if !r.holds(11, 14) || r.holds(11, 15) || r.holds(10, 14) {
		t.Fatal("holds: want (10, 14] exactly")
	}

	// Two more events: the oldest two (11 on a, 13 on b) go, and the floor with them.
	r.add("c", 15, ev("c15"))
	r.add("a", 16, ev("a16"))
	r.add("c", 17, ev("c17"))
	if _, _, ok := r.read([]string{"a"}, 13, 20); ok {
		t.Fatal("a read from 13 answered after 13 was dropped")
	}
	evs, next, ok = r.read([]string{"a", "b", "c"}, 14, 20)
	if !ok || !slices.Equal(seqsOf(evs), []uint64{14, 15, 16, 17}) || next != 18 {
		t.Fatalf("read [14, 20] after eviction: %v next %d ok %v", seqsOf(evs), next, ok)
	}
	if _, held := r.bySubject["b"]; held {
		t.Fatal("subject b has no events left but is still indexed")
	}

	r.reset(30)
	if _, _, ok := r.read([]string{"a"}, 14, 20); ok {
		t.Fatal("a read answered from a log reset past it")
	}
	if evs, next, ok := r.read([]string{"a"}, 31, 40); !ok || len(evs) != 0 || next != 31 {
		t.Fatalf("read after reset: %v next %d ok %v; want nothing held, the stream from 31", seqsOf(evs), next, ok)
	}
}

// An event the feed could not place empties the log: it holds again from the next event on.
func TestRecentLogAfterASkip(t *testing.T) {
	r := newRecentLog(8)
	r.reset(0)
	r.add("a", 1, &schemas.Event{Type: schemas.TypeMessage})
	r.skipped() // seq 2, unknown
	r.add("a", 3, &schemas.Event{Type: schemas.TypeMessage})
	if _, _, ok := r.read([]string{"a"}, 1, 3); ok {
		t.Fatal("a read across the skipped event answered from memory")
	}
	if evs, next, ok := r.read([]string{"a"}, 3, 3); !ok || !slices.Equal(seqsOf(evs), []uint64{3}) || next != 4 {
		t.Fatalf("read [3, 3]: %v next %d ok %v", seqsOf(evs), next, ok)
	}
}

// With no room (recent-events 0) the log holds nothing and answers no read.
func TestRecentLogOff(t *testing.T) {
	r := newRecentLog(0)
	r.reset(5)
	r.add("a", 6, &schemas.Event{Type: schemas.TypeMessage})
	if _, _, ok := r.read([]string{"a"}, 6, 6); ok {
		t.Fatal("a log without room answered a read")
	}
}
