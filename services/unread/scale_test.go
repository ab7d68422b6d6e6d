package unread

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/eventchat/chat/schemas"
)

// group builds a projection with a group of n members created in one batch, as gateways do: the
// creator's event with every member, then one joined event per other member.
func group(t testing.TB, n int) (*Projection, []string, uint64) {
	t.Helper()
	p := NewProjection()
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("u%04d", i)
	}
	var seq uint64
	for i, u := range members {
		e := schemas.Event{Type: schemas.TypeMember, Conv: "g:big", Ts: "2026-01-01T00:00:00.000Z", User: u,
			Action: schemas.ActionJoined, By: members[0]}
		if i == 0 {
			e.Members = members
		}
		seq++
		apply(t, p, seq, schemas.MemberSubject("big"), e)
	}
	return p, members, seq
}

func apply(t testing.TB, p *Projection, seq uint64, subject string, e schemas.Event) {
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(seq, subject, data); err != nil {
		t.Fatal(err)
	}
}

func message(from string) schemas.Event {
	return schemas.Event{Type: schemas.TypeMessage, Conv: "g:big", Ts: "2026-01-01T00:00:01.000Z", From: from,
		Mid: "m", MsgType: "text", Msg: "hello"}
}

// A 1000-member group: counts are exact for every member, after messages, reads and a delete.
func TestThousandMemberGroup(t *testing.T) {
	p, members, seq := group(t, 1000)
	rnd := rand.New(rand.NewPCG(1, 2))
	type sent struct {
		seq  uint64
		from string
	}
	var msgs []sent
	read := map[string]uint64{}
	for range 300 {
		seq++
		if rnd.IntN(10) == 0 {
			u := members[rnd.IntN(len(members))]
			r := uint64(rnd.IntN(int(seq)))
			apply(t, p, seq, schemas.ReadSubject(u), schemas.Event{Type: schemas.TypeRead, Conv: "g:big", Ts: "x", From: u, Seq: r})
			read[u] = max(read[u], r)
			continue
		}
		from := members[rnd.IntN(len(members))]
		apply(t, p, seq, subjectOf("g:big"), message(from))
		msgs = append(msgs, sent{seq, from})
	}
	gone := msgs[len(msgs)/2]
	seq++
	apply(t, p, seq, subjectOf("g:big"), schemas.Event{Type: schemas.TypeMessage, Conv: "g:big", Ts: "x",
		From: gone.from, Kind: schemas.KindDelete, Ref: gone.seq, RefFrom: gone.from})

	for _, u := range members {
		want := 0
		for _, m := range msgs {
			if m.seq > read[u] && m.from != u && m != gone {
				want++
			}
		}
		entries, _ := p.conversations(u)
		if len(entries) != 1 || entries[0].item.Unread != want {
			t.Fatalf("%s: %+v, want %d unread", u, entries, want)
		}
	}
}

// A message costs the same whatever the size of the group: nothing is written per member.
func TestMessageCostIndependentOfMembers(t *testing.T) {
	const runs = 500
	cost := func(n int) float64 {
		p, members, seq := group(t, n)
		data, err := json.Marshal(message(members[1]))
		if err != nil {
			t.Fatal(err)
		}
		subject := subjectOf("g:big")
		return testing.AllocsPerRun(runs, func() {
			seq++
			if err := p.Apply(seq, subject, data); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, big := cost(10), cost(1000)
	t.Logf("allocations per message: %v with 10 members, %v with 1000", small, big)
	if big > small {
		t.Fatalf("a message allocates %v times with 1000 members, %v with 10", big, small)
	}
}

// BenchmarkApplyMessage is the cost of one message in a 1000-member group, decoding included.
func BenchmarkApplyMessage(b *testing.B) {
	p, members, seq := group(b, 1000)
	data, _ := json.Marshal(message(members[1]))
	subject := subjectOf("g:big")
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if err := p.Apply(seq, subject, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSnapshot is the cost of one snapshot of a projection holding 600,000 messages in
// 50 direct conversations (the benchmark suite's state after its closed loop).
func BenchmarkEncodeSnapshot(b *testing.B) {
	p := NewProjection()
	var seq uint64
	for i := range 600_000 {
		from, to := fmt.Sprintf("s%02d", i%50), fmt.Sprintf("r%02d", i%50)
		conv, err := schemas.DirectConv(from, to)
		if err != nil {
			b.Fatal(err)
		}
		e := schemas.Event{Type: schemas.TypeMessage, Conv: conv.String(), Ts: "2026-01-01T00:00:01.000Z", From: from,
			Mid: fmt.Sprintf("m%d", i), MsgType: "text", Msg: "hello"}
		seq++
		apply(b, p, seq, subjectOf(conv.String()), e)
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if _, err := p.Encode(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes")
	b.StopTimer()
	if _, err := DecodeProjection(&buf); err != nil {
		b.Fatal(err)
	}
}
