package unread

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// onConversations answers a ConversationsRequest.
func (s *Service) onConversations(m *nats.Msg) {
	s.answer(func() {
		rp := s.conversationsReply(m.Data)
		result := resultOK
		if rp.ErrCode != "" {
			result = string(rp.ErrCode)
		}
		s.m.queries.WithLabelValues(result).Inc()
		s.respond(m, rp)
	})
}

func (s *Service) conversationsReply(data []byte) schemas.ConversationsReply {
	fail := func(code schemas.ErrCode, msg string) schemas.ConversationsReply {
		return schemas.ConversationsReply{Items: []schemas.ConversationItem{}, ErrCode: code, ErrMsg: msg}
	}
	var rq schemas.ConversationsRequest
	if err := json.Unmarshal(data, &rq); err != nil || !schemas.ValidUser(rq.User) {
		return fail(schemas.CodeBadRequest, "invalid conversations request")
	}
	start := time.Now()
	caughtUp := s.progress.wait(rq.MinSeq, s.cfg.QueryWait)
	s.m.queryWait.Observe(time.Since(start).Seconds())
	if !caughtUp {
		return fail(schemas.CodeUnavailable, "unread projection is catching up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	items, seq, err := s.conversations(ctx, rq.User)
	if err != nil {
		s.log.Error("conversations", "user", rq.User, "err", err)
		return fail(schemas.CodeInternal, "internal error")
	}
	return schemas.ConversationsReply{Items: items, Seq: seq}
}

// conversations is user's list, most recent activity first, and the seq it is as of.
func (s *Service) conversations(ctx context.Context, user string) ([]schemas.ConversationItem, uint64, error) {
	return list(s.proj, user, func(u string) string { return s.names.get(ctx, u) },
		func(seq uint64) (*schemas.MessageFrame, error) { return s.fetchFrame(ctx, seq) })
}

// list is user's conversation list in p, most recent activity first, and the seq it is as of.
// The projection's part is read under its lock; the names of direct conversations (name) and the
// last messages not cached (frame) are looked up after.
func list(p *Projection, user string, name func(user string) string,
	frame func(seq uint64) (*schemas.MessageFrame, error)) ([]schemas.ConversationItem, uint64, error) {
	entries, seq := p.conversations(user)
	items := make([]schemas.ConversationItem, 0, len(entries))
	for _, en := range entries {
		it := en.item
		if en.other != "" {
			it.Name = name(en.other)
		}
		if it.LastMessage == nil && en.lastMsg != 0 {
			f, err := frame(en.lastMsg)
			if err != nil {
				return nil, 0, err
			}
			if f != nil {
				p.cacheFrame(user, f)
			}
			it.LastMessage = f
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b schemas.ConversationItem) int { return cmp.Compare(b.LastSeq, a.LastSeq) })
	return items, seq, nil
}

// fetchFrame reads message seq back from the log; nil if the log no longer has it (retention).
func (s *Service) fetchFrame(ctx context.Context, seq uint64) (*schemas.MessageFrame, error) {
	raw, err := s.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get message %d: %w", seq, err)
	}
	e, err := schemas.DecodeEvent(raw.Data)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", seq, err)
	}
	return messageFrame(&e, seq), nil
}

// respond answers a request with v as JSON, naming the instance that answered.
func (s *Service) respond(m *nats.Msg, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode answer", "err", err)
		return
	}
	rp := nats.NewMsg(m.Reply)
	rp.Data = data
	rp.Header.Set(instanceHeader, s.cfg.ID)
	if err := m.RespondMsg(rp); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		s.log.Warn("answer", "subject", m.Subject, "err", err)
	}
}

// nameCache holds users' display names (UserProfile.Name in the users bucket; the user id when
// empty or missing) for a while.
type nameCache struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cachedName
}

type cachedName struct {
	name string
	at   time.Time
}

func newNameCache(kv jetstream.KeyValue, ttl time.Duration) *nameCache {
	return &nameCache{kv: kv, ttl: ttl, m: map[string]cachedName{}}
}

// get is user's display name. When the bucket cannot be read, it is the user id, not cached.
func (c *nameCache) get(ctx context.Context, user string) string {
	c.mu.Lock()
	n, ok := c.m[user]
	c.mu.Unlock()
	if ok && time.Since(n.at) < c.ttl {
		return n.name
	}
	name := user
	en, err := c.kv.Get(ctx, schemas.UserKey(user))
	switch {
	case err == nil:
		var p schemas.UserProfile
		if json.Unmarshal(en.Value(), &p) == nil && p.Name != "" {
			name = p.Name
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return user
	}
	c.mu.Lock()
	c.m[user] = cachedName{name: name, at: time.Now()}
	c.mu.Unlock()
	return name
}
