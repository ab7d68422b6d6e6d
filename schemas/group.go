package schemas

import "encoding/json"

// Group is the state of a group, a projection of its membership events (subject chat.mem.g.<group>),
// stored in the groups bucket under GroupKey. Seq is the stream sequence of the last membership event
// applied: applying is idempotent by sequence, so a projection can be rebuilt from the log and equal
// the live one.
type Group struct {
	Group   string                 `json:"group"`
	Name    string                 `json:"name,omitempty"`
	Public  bool                   `json:"public,omitempty"`
	Creator string                 `json:"creator,omitempty"`
	Created string                 `json:"created,omitempty"`
	Members map[string]*Membership `json:"members"`
	Seq     uint64                 `json:"seq"`
}

// Membership records when a user last became a member (Since) and, if they are no longer one, when
// they left (Left). Former members are kept so that membership at an earlier seq stays answerable.
type Membership struct {
	Since uint64 `json:"since"`
	Left  uint64 `json:"left,omitempty"`
}

// Exists reports whether the group has been created.
func (g *Group) Exists() bool { return g != nil && g.Seq > 0 }

// IsMember reports whether user is a member now.
func (g *Group) IsMember(user string) bool {
	if g == nil {
		return false
	}
	m := g.Members[user]
	return m != nil && m.Left == 0
}

// MemberAt reports whether user was a member when the event at seq was appended. It is exact for any
// seq after the user's previous membership change.
func (g *Group) MemberAt(user string, seq uint64) bool {
	if g == nil {
		return false
	}
	m := g.Members[user]
	return m != nil && m.Since <= seq && (m.Left == 0 || m.Left > seq)
}

// CurrentMembers lists the members now.
func (g *Group) CurrentMembers() []string {
	out := make([]string, 0, len(g.Members))
	for u, m := range g.Members {
		if m.Left == 0 {
			out = append(out, u)
		}
	}
	return out
}

// Apply folds the membership event e at stream sequence seq into the state. Events at or below Seq
// are ignored, so redeliveries are harmless. It reports whether the state changed.
func (g *Group) Apply(e *Event, seq uint64) bool {
	if e.Type != TypeMember || seq <= g.Seq {
		return false
	}
	if g.Members == nil {
		g.Members = map[string]*Membership{}
	}
	if g.Seq == 0 {
		// The first event of a group carries its attributes and initial members.
		g.Name, g.Public, g.Creator, g.Created = e.Name, e.Public, e.User, e.Ts
		for _, u := range e.Members {
			if ValidUser(u) {
				g.Members[u] = &Membership{Since: seq}
			}
		}
	}
	switch e.Action {
	case ActionJoined, ActionInvited:
		if m := g.Members[e.User]; m == nil || m.Left != 0 {
			g.Members[e.User] = &Membership{Since: seq}
		}
	case ActionLeft:
		if m := g.Members[e.User]; m != nil && m.Left == 0 {
			m.Left = seq
		}
	}
	g.Seq = seq
	return true
}

// Clone returns a deep copy, so a cached state can be changed without touching the original.
func (g *Group) Clone() *Group {
	c := *g
	c.Members = make(map[string]*Membership, len(g.Members))
	for u, m := range g.Members {
		mm := *m
		c.Members[u] = &mm
	}
	return &c
}

// MarshalGroup and UnmarshalGroup are the bucket encoding.
func MarshalGroup(g *Group) ([]byte, error) { return json.Marshal(g) }

// UnmarshalGroup decodes a group state from the bucket.
func UnmarshalGroup(data []byte) (*Group, error) {
	var g Group
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, err
	}
	if g.Members == nil {
		g.Members = map[string]*Membership{}
	}
	return &g, nil
}
