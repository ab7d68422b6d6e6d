package unread

import (
	"cmp"
	"fmt"
	"slices"
)

// userConvKey names one user's state in one conversation.
type userConvKey struct{ user, conv string }

// summary is what a user sees of a conversation, and what two projections must agree on.
type summary struct {
	listed      bool
	read        uint64
	since       uint64
	unread      int
	lastSeq     uint64
	lastTs      string
	lastMessage uint64
	name        string
}

// summaries sums up every user's state in every conversation, and the seq it is as of.
func (p *Projection) summaries() (map[userConvKey]summary, uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[userConvKey]summary{}
	for id, c := range p.convs {
		for u, uc := range c.Users {
			last := c.Last
			if uc.LastPriv.Seq > last.Seq {
				last = uc.LastPriv
			}
			lm, _ := c.lastMessage(u, uc)
			s := summary{listed: c.lists(u), read: uc.Read, since: c.since(u), unread: c.unread(u, uc),
				lastSeq: last.Seq, lastTs: last.Ts, lastMessage: lm}
			if c.Group != nil {
				s.name = c.Group.Name
			}
			out[userConvKey{u, id}] = s
		}
	}
	return out, p.applied
}

// Diff lists the differences between two projections: one line per field that differs in a
// user's state of a conversation (listed, i.e. membership; read; since; unread; lastSeq; lastTs;
// lastMessage, by seq; a group's name), a's value first, and one if their seqs differ. No lines
// means every user sees the same in both.
func Diff(a, b *Projection) []string {
	sa, seqA := a.summaries()
	sb, seqB := b.summaries()
	var out []string
	if seqA != seqB {
		out = append(out, fmt.Sprintf("seq: %d != %d", seqA, seqB))
	}
	keys := make([]userConvKey, 0, len(sa))
	for k := range sa {
		keys = append(keys, k)
	}
	for k := range sb {
		if _, ok := sa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y userConvKey) int {
		return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.conv, y.conv))
	})
	for _, k := range keys {
		x, y := sa[k], sb[k]
		for _, f := range []struct {
			name string
			x, y any
		}{
			{"listed", x.listed, y.listed},
			{"read", x.read, y.read},
			{"since", x.since, y.since},
			{"unread", x.unread, y.unread},
			{"lastSeq", x.lastSeq, y.lastSeq},
			{"lastTs", x.lastTs, y.lastTs},
			{"lastMessage", x.lastMessage, y.lastMessage},
			{"name", x.name, y.name},
		} {
			if f.x != f.y {
				out = append(out, fmt.Sprintf("%s %s %s: %v != %v", k.user, k.conv, f.name, f.x, f.y))
			}
		}
	}
	return out
}
