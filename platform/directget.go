package platform

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// DirectGets sends JetStream direct-get requests (which may answer with many messages: batch and
// multi-last gets) and hands each caller its replies: one subscription on a wildcard inbox serves
// every request, told apart by the inbox's last token. Safe for concurrent use. A subscription per
// request cost the server a subscription added and removed per listing, and this client a channel
// of 64k messages per listing (the library's default for a synchronous subscription: 512 KB,
// zeroed): a connect storm allocated gigabytes.
type DirectGets struct {
	nc *nats.Conn

	once   sync.Once
	err    error
	sub    *nats.Subscription
	prefix string // the inbox of the requests, up to and including the dot before the token

	mu    sync.Mutex
	next  uint64
	calls map[string]*directCall // by token
}

// directCall is one request's replies not yet taken by its caller.
type directCall struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	wake chan struct{} // capacity 1: msgs has news
}

// NewDirectGets prepares the requests on nc; the subscription is made on first use.
func NewDirectGets(nc *nats.Conn) *DirectGets {
	return &DirectGets{nc: nc, calls: map[string]*directCall{}}
}

// start subscribes on first use.
func (d *DirectGets) start() error {
	d.once.Do(func() {
		d.prefix = d.nc.NewInbox() + "."
		d.sub, d.err = d.nc.Subscribe(d.prefix+"*", d.route)
	})
	return d.err
}

// Stop drops the subscription: the service is stopping, nothing asks any more (a request after
// it fails).
func (d *DirectGets) Stop() {
	// Once more: waits for a start under way, or keeps one from happening.
	d.once.Do(func() { d.err = errors.New("direct gets: stopped") })
	if d.sub != nil {
		_ = d.sub.Unsubscribe()
	}
}

// route takes a reply off the subscription (one goroutine, in the order the server sent them).
func (d *DirectGets) route(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, d.prefix)
	d.mu.Lock()
	c := d.calls[token]
	d.mu.Unlock()
	if c == nil {
		return // its caller has given up
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Request publishes req on subject and calls each reply with fn, in order, until fn reports the
// last one (done) or an error, or ctx ends.
func (d *DirectGets) Request(ctx context.Context, subject string, req []byte, fn func(m *nats.Msg) (done bool, err error)) error {
	if err := d.start(); err != nil {
		return err
	}
	c := &directCall{wake: make(chan struct{}, 1)}
	d.mu.Lock()
	d.next++
	token := strconv.FormatUint(d.next, 10)
	d.calls[token] = c
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.calls, token)
		d.mu.Unlock()
	}()
	if err := d.nc.PublishRequest(subject, d.prefix+token, req); err != nil {
		return err
	}
	for {
		select {
		case <-c.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
		msgs := c.msgs
		c.msgs = nil
		c.mu.Unlock()
		for _, m := range msgs {
			if done, err := fn(m); done || err != nil {
				return err
			}
		}
	}
}
