package unread

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// snapshotVersion is the version of the encoding; a snapshot of another version is ignored and
// the projection rebuilt from the log. 2: the messages of a conversation are packed (msgRefs).
const snapshotVersion = 2

// Object metadata of a snapshot.
const (
	metaVersion  = "version"
	metaSeq      = "seq"
	metaInstance = "instance"
)

// snapshot is the encoded form of a projection: its conversations and the seq they are as of.
type snapshot struct {
	Version int
	Applied uint64
	Convs   []*convState
}

// Encode writes the projection (gob, versioned) to w and returns the seq it is as of. It holds
// the read lock meanwhile, so write to a buffer, not to the network.
func (p *Projection) Encode(w io.Writer) (uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := snapshot{Version: snapshotVersion, Applied: p.applied, Convs: make([]*convState, 0, len(p.convs))}
	for _, c := range p.convs {
		s.Convs = append(s.Convs, c)
	}
	return p.applied, gob.NewEncoder(w).Encode(&s)
}

// DecodeProjection reads a projection written by Encode.
func DecodeProjection(r io.Reader) (*Projection, error) {
	var s snapshot
	if err := gob.NewDecoder(r).Decode(&s); err != nil {
		return nil, fmt.Errorf("unread: decode projection: %w", err)
	}
	if s.Version != snapshotVersion {
		return nil, fmt.Errorf("unread: projection encoding version %d, want %d", s.Version, snapshotVersion)
	}
	p := NewProjection()
	p.applied = s.Applied
	for _, c := range s.Convs {
		if c == nil {
			continue
		}
		id := c.Conv.String()
		if id == "" {
			return nil, errors.New("unread: decode projection: a conversation without an id")
		}
		if c.Users == nil {
			c.Users = map[string]*userConv{}
		}
		if c.Group != nil && c.Group.Members == nil {
			c.Group.Members = map[string]*schemas.Membership{}
		}
		for i := range c.Msgs {
			c.Msgs[i].From, c.Msgs[i].Tid = p.intern(c.Msgs[i].From), p.intern(c.Msgs[i].Tid)
		}
		users := make(map[string]*userConv, len(c.Users))
		for u, uc := range c.Users {
			u = p.intern(u)
			users[u] = uc
			p.byUser[u] = append(p.byUser[u], c)
		}
		c.Users = users
		p.convs[id] = c
	}
	return p, nil
}

// loadSnapshot reads the saved projection; nil when there is none or it cannot be used (the
// projection is then rebuilt from the log).
func (s *Service) loadSnapshot(ctx context.Context) *Projection {
	obj, err := s.store.Get(ctx, schemas.UnreadSnapshotObject)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		s.log.Info("no snapshot: rebuilding from the log")
		return nil
	}
	if err != nil {
		s.log.Warn("snapshot unreadable: rebuilding from the log", "err", err)
		return nil
	}
	defer obj.Close()
	p, err := DecodeProjection(obj)
	if err != nil {
		s.log.Warn("snapshot unusable: rebuilding from the log", "err", err)
		return nil
	}
	s.m.snapshotSeq.WithLabelValues("load").Set(float64(p.Seq()))
	return p
}

// saveSnapshot writes the projection to the object store, unless the snapshot there is already
// as recent (another instance wrote it). Either instance's snapshot is a consistent state at its
// seq, so it does not matter which one wins a race.
func (s *Service) saveSnapshot(ctx context.Context) error {
	start := time.Now()
	if cur := s.proj.Seq(); s.storedSeq(ctx) >= cur {
		s.savedSeq = cur
		return nil
	}
	var buf bytes.Buffer
	seq, err := s.proj.Encode(&buf)
	if err != nil {
		return fmt.Errorf("unread: encode snapshot: %w", err)
	}
	encoded := time.Since(start)
	_, err = s.store.Put(ctx, jetstream.ObjectMeta{
		Name:        schemas.UnreadSnapshotObject,
		Description: "unread projection",
		Metadata: map[string]string{metaVersion: strconv.Itoa(snapshotVersion),
			metaSeq: strconv.FormatUint(seq, 10), metaInstance: s.cfg.ID},
	}, bytes.NewReader(buf.Bytes()))
	if err != nil {
		return fmt.Errorf("unread: put snapshot: %w", err)
	}
	s.savedSeq = seq
	s.m.snapshotSeconds.Observe(time.Since(start).Seconds())
	s.m.snapshotBytes.Set(float64(buf.Len()))
	s.m.snapshotSeq.WithLabelValues("write").Set(float64(seq))
	s.log.Debug("snapshot written", "seq", seq, "bytes", buf.Len(), "took", time.Since(start), "encoding", encoded)
	return nil
}

// storedSeq is the seq of the saved snapshot, 0 if there is none or it cannot be told.
func (s *Service) storedSeq(ctx context.Context) uint64 {
	info, err := s.store.GetInfo(ctx, schemas.UnreadSnapshotObject)
	if err != nil {
		return 0
	}
	seq, _ := strconv.ParseUint(info.Metadata[metaSeq], 10, 64)
	return seq
}

// msgRefs are a conversation's messages. In a snapshot they are packed, which gob's per-element
// encoding of a struct slice took most of the time of (60 ms for 600,000 messages; the lock that
// keeps the projection still is held meanwhile): the distinct user ids once, then per message the
// seq's increase and the indexes of its author and target (0: none), all as uvarints.
type msgRefs []msgRef

// GobEncode packs the messages.
func (ms msgRefs) GobEncode() ([]byte, error) {
	index := map[string]uint64{"": 0}
	var users []string
	// lookup finds u's index; a run of messages by the same author skips the map.
	var lastUser string
	var lastIndex uint64
	lookup := func(u string) uint64 {
		if u == lastUser {
			return lastIndex
		}
		i, ok := index[u]
		if !ok {
			users = append(users, u)
			i = uint64(len(users))
			index[u] = i
		}
		lastUser, lastIndex = u, i
		return i
	}
	packed := make([]uint64, 0, 2*len(ms))
	for _, m := range ms {
		packed = append(packed, lookup(m.From))
		if m.Tid == "" {
			packed = append(packed, 0)
		} else {
			packed = append(packed, lookup(m.Tid))
		}
	}
	out := binary.AppendUvarint(make([]byte, 0, 16+len(ms)*5), uint64(len(users)))
	for _, u := range users {
		out = binary.AppendUvarint(out, uint64(len(u)))
		out = append(out, u...)
	}
	out = binary.AppendUvarint(out, uint64(len(ms)))
	var prev uint64
	for i, m := range ms {
		if m.Seq < prev {
			return nil, fmt.Errorf("unread: messages out of seq order (%d after %d)", m.Seq, prev)
		}
		out = binary.AppendUvarint(out, m.Seq-prev)
		out = binary.AppendUvarint(out, packed[2*i])
		out = binary.AppendUvarint(out, packed[2*i+1])
		prev = m.Seq
	}
	return out, nil
}

// GobDecode unpacks messages packed by GobEncode; anything malformed is an error (the snapshot is
// then not used).
func (ms *msgRefs) GobDecode(data []byte) error {
	bad := errors.New("unread: malformed packed messages")
	next := func() (uint64, error) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, bad
		}
		data = data[n:]
		return v, nil
	}
	nUsers, err := next()
	if err != nil || nUsers > uint64(len(data)) {
		return bad
	}
	users := make([]string, 1, nUsers+1) // users[0] is "": no user
	for range nUsers {
		l, err := next()
		if err != nil || l > uint64(len(data)) {
			return bad
		}
		users = append(users, string(data[:l]))
		data = data[l:]
	}
	n, err := next()
	if err != nil || n > uint64(len(data)) { // at least one byte per message
		return bad
	}
	out := make(msgRefs, 0, n)
	var seq uint64
	for range n {
		d, err1 := next()
		from, err2 := next()
		tid, err3 := next()
		if err := errors.Join(err1, err2, err3); err != nil || from >= uint64(len(users)) || tid >= uint64(len(users)) ||
			seq+d < seq {
			return bad
		}
		seq += d
		out = append(out, msgRef{Seq: seq, From: users[from], Tid: users[tid]})
	}
	if len(data) != 0 {
		return bad
	}
	*ms = out
	return nil
}
