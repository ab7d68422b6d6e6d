package unread

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/eventchat/chat/schemas"
)

// recount computes user's conversation list from the whole log by brute force, straight from the
// semantics and sharing no code with the projection:
//
//   - conversations: a direct conversation of the user's once it has any ordinary message; a
//     group while the user is a member (the first member event of a group makes all its Members
//     members; joined or invited makes a non-member a member; left ends it);
//   - since: the seq of the member event that last made the user a member (0 for a direct one);
//   - read: the greatest min(asked seq, the read event's seq) of the user's reads of it (events
//     on chat.read.<user> from the user);
//   - unread: the ordinary messages after max(read, since), from others, public or to the user,
//     not deleted (a delete by the message's author, later in the same conversation);
//   - lastMessage: the last ordinary message after since the user may see, not deleted;
//   - lastSeq, lastTs: the last event from since on that is an ordinary message the user may see,
//     deleted or not, or a member event;
//   - name: the group's name from its first event (or its id); the other user's display name in
//     names (or their id);
//   - ordered by lastSeq, newest first.
func recount(log []logEntry, names map[string]string, user string) []schemas.ConversationItem {
	type event struct {
		seq     uint64
		subject string
		e       schemas.Event
	}
	var evs []event
	convs := map[string]bool{}
	for _, le := range log {
		if !strings.HasPrefix(le.subject, "chat.msg.") && !strings.HasPrefix(le.subject, "chat.mem.") &&
			!strings.HasPrefix(le.subject, "chat.read.") {
			continue
		}
		e, err := schemas.DecodeEvent(le.data)
		if err != nil {
			continue
		}
		evs = append(evs, event{le.seq, le.subject, e})
		convs[e.Conv] = true
	}
	ordinary := func(x event) bool { return x.e.Type == schemas.TypeMessage && x.e.Kind == "" }
	deleted := map[uint64]bool{}
	for _, m := range evs {
		for _, d := range evs {
			if ordinary(m) && d.e.Type == schemas.TypeMessage && d.e.Kind == schemas.KindDelete && d.e.Conv == m.e.Conv &&
				d.e.Ref == m.seq && d.e.From == m.e.From && d.seq > m.seq {
				deleted[m.seq] = true
			}
		}
	}

	items := []schemas.ConversationItem{}
	for conv := range convs {
		var member bool
		var since uint64
		var name string
		if group, ok := strings.CutPrefix(conv, "g:"); ok {
			members, sinces, first := map[string]bool{}, map[string]uint64{}, true
			for _, x := range evs {
				if x.e.Type != schemas.TypeMember || x.e.Conv != conv {
					continue
				}
				if first {
					first, name = false, x.e.Name
					for _, u := range x.e.Members {
						members[u], sinces[u] = true, x.seq
					}
				}
				switch x.e.Action {
				case schemas.ActionJoined, schemas.ActionInvited:
					if !members[x.e.User] {
						members[x.e.User], sinces[x.e.User] = true, x.seq
					}
				case schemas.ActionLeft:
					members[x.e.User] = false
				}
			}
			member, since = members[user], sinces[user]
			if name == "" {
				name = group
			}
		} else {
			c, _ := schemas.ParseConv(conv)
			hasMessage := slices.ContainsFunc(evs, func(x event) bool { return ordinary(x) && x.e.Conv == conv })
			member = c.Has(user) && hasMessage
			other := c.Other(user)
			if name = names[other]; name == "" {
				name = other
			}
		}
		if !member {
			continue
		}
		var read uint64
		for _, x := range evs {
			if x.e.Type == schemas.TypeRead && x.e.From == user && x.e.Conv == conv && x.subject == "chat.read."+user {
				read = max(read, min(x.e.Seq, x.seq))
			}
		}
		floor := max(read, since)
		it := schemas.ConversationItem{Conv: conv, Name: name}
		for _, x := range evs {
			if x.e.Conv != conv {
				continue
			}
			visible := x.e.Tid == "" || x.e.From == user || x.e.Tid == user
			if ordinary(x) && x.seq > floor && x.e.From != user && (x.e.Tid == "" || x.e.Tid == user) && !deleted[x.seq] {
				it.Unread++
			}
			if ordinary(x) && x.seq > since && visible && !deleted[x.seq] {
				f := schemas.EventFrame(&x.e, x.seq).(schemas.MessageFrame)
				it.LastMessage = &f
			}
			if x.seq >= since && (ordinary(x) && visible || x.e.Type == schemas.TypeMember) {
				it.LastSeq, it.LastTs = x.seq, x.e.Ts
			}
		}
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].LastSeq > items[j].LastSeq })
	return items
}

// displayName is a user's name as the service derives it from names.
func displayName(names map[string]string) func(string) string {
	return func(u string) string {
		if n := names[u]; n != "" {
			return n
		}
		return u
	}
}

// logFrames fetches frames from a log, as the service does from the stream.
func logFrames(log []logEntry) func(uint64) (*schemas.MessageFrame, error) {
	return func(seq uint64) (*schemas.MessageFrame, error) {
		for _, le := range log {
			if le.seq == seq {
				e, err := schemas.DecodeEvent(le.data)
				if err != nil {
					return nil, err
				}
				return messageFrame(&e, seq), nil
			}
		}
		return nil, nil
	}
}

// compareWithRecount checks every user's list in p against the recount of the log.
func compareWithRecount(t *testing.T, p *Projection, log []logEntry, names map[string]string) {
	t.Helper()
	for _, u := range testUsers {
		got, _, err := list(p, u, displayName(names), logFrames(log))
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mustJSON(t, got), mustJSON(t, recount(log, names, u)); g != w {
			t.Fatalf("%s's conversations:\n got %s\nwant %s", u, g, w)
		}
	}
}
