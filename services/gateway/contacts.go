package gateway

import (
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

// Contacts are one-way: an address book per user. The log is the authority (chat.contact.<owner>,
// one chat.contact.v1 event per change), the contacts bucket a projection of it, as for groups: a
// change is decided against the projection at sequence S and appended with
// Nats-Expected-Last-Subject-Sequence S on the owner's subject, so two gateways changing one list
// cannot both win; the loser re-reads and decides again. The bucket is then brought up to date by
// folding the log after S (refresh), which also repairs a projection left behind by a gateway that
// died between appending and projecting.
//
// For presence, each gateway keeps the lists of the users with sessions on it, and the reverse
// (who among them added a given user): a user who added B gets B's presence changes and may ask
// for B's presence.

type contactStore struct {
	nc     *nats.Conn
	stream jetstream.Stream
	kv     jetstream.KeyValue
}

// refresh reads owner's list from the bucket and folds in any contact events the log has after
// it, writing the result back (compare-and-swap) when it changed.
func (cs *contactStore) refresh(ctx context.Context, owner string) (*schemas.Contacts, error) {
	key := schemas.ContactsKey(owner)
	subj := schemas.ContactSubject(owner)
	for attempt := 0; attempt < 10; attempt++ {
		c := &schemas.Contacts{}
		var rev uint64
		entry, err := cs.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("contacts: get %s: %w", owner, err)
		default:
			if err := json.Unmarshal(entry.Value(), c); err != nil {
				return nil, fmt.Errorf("contacts: decode %s: %w", owner, err)
			}
			rev = entry.Revision()
		}
		last, err := lastSeqOf(ctx, cs.stream, subj)
		if err != nil {
			return nil, fmt.Errorf("contacts: %w", err)
		}
		if last <= c.Seq {
			return c, nil
		}
		// The projection is behind the log: fold the missing events.
		for next := c.Seq + 1; next <= last; {
			m, err := cs.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subj))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("contacts: read %s at %d: %w", subj, next, err)
			}
			e, err := schemas.DecodeEvent(m.Data)
			if err != nil {
				return nil, err
			}
			if e.From == owner {
				c.Apply(&e, m.Sequence)
			}
			next = m.Sequence + 1
		}
		if c.Items == nil {
			c.Items = []string{} // the bucket holds an array, never null
		}
		data, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			_, err = cs.kv.Create(ctx, key, data)
		} else {
			_, err = cs.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) && !isKVConflict(err) {
			return nil, fmt.Errorf("contacts: write %s: %w", owner, err)
		}
		// Someone else projected meanwhile: start over from what they wrote.
	}
	return nil, fmt.Errorf("contacts: refresh %s: too much contention", owner)
}

// change adds or removes user in owner's list and returns the list after it. Adding a contact
// already there, or removing one who is not, appends nothing.
func (cs *contactStore) change(ctx context.Context, owner, user, action string, maxContacts int) (*schemas.Contacts, bool, error) {
	for attempt := 0; attempt < 8; attempt++ {
		c, err := cs.refresh(ctx, owner)
		if err != nil {
			return nil, false, err
		}
		_, has := slices.BinarySearch(c.Items, user)
		if has == (action == schemas.ContactAdd) {
			return c, false, nil
		}
		if action == schemas.ContactAdd && len(c.Items) >= maxContacts {
			return nil, false, badRequest(fmt.Sprintf("at most %d contacts", maxContacts))
		}
		data, err := json.Marshal(&schemas.Event{Type: schemas.TypeContact, Ts: schemas.FormatTime(time.Now()),
			From: owner, User: user, Action: action})
		if err != nil {
			return nil, false, err
		}
		// After c.Seq the owner's subject holds nothing (refresh folded all of it).
		expect := c.Seq
		_, err = publishSync(ctx, cs.nc, outMsg{subject: schemas.ContactSubject(owner), data: data, expectLast: &expect})
		if isWrongLastSeq(err) {
			continue // another change got in first (or a lost answer was stored): re-read, decide again
		}
		if err != nil {
			return nil, false, fmt.Errorf("contacts: append for %s: %w", owner, err)
		}
		// Project (folds exactly the event just appended, plus any a crashed writer left).
		c, err = cs.refresh(ctx, owner)
		return c, err == nil, err
	}
	return nil, false, fmt.Errorf("contacts: change %s: too much contention", owner)
}

// cmdContacts lists the user's contacts, after adding or removing one.
func (gw *Gateway) cmdContacts(ctx context.Context, s *session, f *schemas.ClientFrame) error {
	var remove string
	hasRemove := len(f.Remove) > 0 && string(f.Remove) != "null"
	if hasRemove {
		if err := json.Unmarshal(f.Remove, &remove); err != nil || !schemas.ValidUser(remove) {
			return badRequest("remove must be a user id")
		}
	}
	var (
		c   *schemas.Contacts
		err error
	)
	switch {
	case f.Add != "" && hasRemove:
		return badRequest("give add or remove, not both")
	case f.Add != "":
		switch {
		case !schemas.ValidUser(f.Add):
			return badRequest("add must be a user id")
		case f.Add == s.user:
			return badRequest("one cannot add oneself as a contact")
		}
		ok, err := gw.accounts.Exists(ctx, f.Add)
		if err != nil {
			return err
		}
		if !ok {
			return schemas.Errorf(schemas.CodeNotFound, "no such user")
		}
		c, err = gw.changeContacts(ctx, s, f.Add, schemas.ContactAdd)
		if err != nil {
			return err
		}
	case hasRemove:
		if c, err = gw.changeContacts(ctx, s, remove, schemas.ContactRemove); err != nil {
			return err
		}
	default:
		if c, err = gw.contacts.refresh(ctx, s.user); err != nil {
			return err
		}
		gw.book.set(s.user, c)
	}
	items := slices.Clone(c.Items)
	if items == nil {
		items = []string{}
	}
	s.reply(schemas.ContactsFrame{Cmd: schemas.CmdContacts, ID: f.ID, Items: items})
	return nil
}

func (gw *Gateway) changeContacts(ctx context.Context, s *session, user, action string) (*schemas.Contacts, error) {
	c, changed, err := gw.contacts.change(ctx, s.user, user, action, gw.cfg.MaxContacts)
	if err != nil {
		return nil, err
	}
	if changed {
		gw.metrics.contactChanges.WithLabelValues(action).Inc()
		s.noteSeq(c.Seq)
	}
	gw.book.set(s.user, c)
	return c, nil
}

// contactBook keeps the contact lists of the users with sessions on this gateway, exact: loaded
// when a user's first session arrives, then kept current by the contact events of the live feed
// (idempotent by seq). watchers is the reverse: for each contact, the local users who added them.
type contactBook struct {
	gw       *Gateway
	mu       sync.Mutex
	owners   map[string]*bookEntry
	watchers map[string]map[string]struct{}
}

type bookEntry struct {
	refs    int  // local sessions of the owner
	loaded  bool // c holds the list as of c.Seq
	loading bool
	c       schemas.Contacts
	// pending holds the contact events the live feed saw while the list was loading.
	pending  []pendingContact
	overflow bool // too many to hold: load again
}

type pendingContact struct {
	e   schemas.Event
	seq uint64
}

// maxPendingContacts bounds the events held for one list while it loads.
const maxPendingContacts = 256

func newContactBook(gw *Gateway) *contactBook {
	return &contactBook{gw: gw, owners: map[string]*bookEntry{}, watchers: map[string]map[string]struct{}{}}
}

// track counts a session of owner on this gateway; the first one loads owner's list.
func (b *contactBook) track(owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.owners[owner]
	if e == nil {
		e = &bookEntry{}
		b.owners[owner] = e
	}
	e.refs++
	b.loadLocked(owner, e)
}

// untrack forgets owner's list when their last session here has gone.
func (b *contactBook) untrack(owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.owners[owner]
	if e == nil {
		return
	}
	if e.refs--; e.refs > 0 {
		return
	}
	for _, u := range e.c.Items {
		b.unwatchLocked(u, owner)
	}
	delete(b.owners, owner)
}

// loadLocked starts loading owner's list unless it is loaded or loading.
func (b *contactBook) loadLocked(owner string, e *bookEntry) {
	if e.loaded || e.loading {
		return
	}
	e.loading = true
	go func() {
		var c *schemas.Contacts
		var err error
		for attempt, backoff := 0, 100*time.Millisecond; attempt < 5; attempt, backoff = attempt+1, 2*backoff {
			ctx, cancel := context.WithTimeout(b.gw.baseCtx, commandTimeout)
			c, err = b.gw.contacts.refresh(ctx, owner)
			cancel()
			if err == nil || b.gw.baseCtx.Err() != nil || !b.tracked(owner) {
				break
			}
			time.Sleep(backoff)
		}
		if err != nil {
			b.gw.log.Warn("contacts: load", "user", owner, "err", err)
			b.mu.Lock()
			if e := b.owners[owner]; e != nil {
				e.loading = false // the next session or query tries again
			}
			b.mu.Unlock()
			return
		}
		b.set(owner, c)
	}()
}

func (b *contactBook) tracked(owner string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owners[owner] != nil
}

// set installs a list read from the store, unless the book already holds a newer one, then applies
// the events held back while it loaded.
func (b *contactBook) set(owner string, c *schemas.Contacts) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.owners[owner]
	if e == nil {
		return
	}
	if e.loaded && c.Seq <= e.c.Seq {
		return
	}
	for _, u := range e.c.Items {
		b.unwatchLocked(u, owner)
	}
	e.c = schemas.Contacts{Seq: c.Seq, Items: slices.Clone(c.Items)}
	for _, p := range e.pending {
		e.c.Apply(&p.e, p.seq)
	}
	for _, u := range e.c.Items {
		b.watchLocked(u, owner)
	}
	e.pending, e.loaded, e.loading = nil, true, false
	if e.overflow {
		e.overflow, e.loaded = false, false
		b.loadLocked(owner, e)
	}
}

// apply folds a contact event read by the live feed into its owner's list, if the owner is local.
func (b *contactBook) apply(ev *schemas.Event, seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.owners[ev.From]
	if e == nil {
		return
	}
	if !e.loaded {
		if len(e.pending) >= maxPendingContacts {
			e.overflow = true
		} else {
			e.pending = append(e.pending, pendingContact{*ev, seq})
		}
		return
	}
	_, before := slices.BinarySearch(e.c.Items, ev.User)
	e.c.Apply(ev, seq)
	_, after := slices.BinarySearch(e.c.Items, ev.User)
	switch {
	case after && !before:
		b.watchLocked(ev.User, ev.From)
	case before && !after:
		b.unwatchLocked(ev.User, ev.From)
	}
}

func (b *contactBook) watchLocked(contact, owner string) {
	set := b.watchers[contact]
	if set == nil {
		set = map[string]struct{}{}
		b.watchers[contact] = set
	}
	set[owner] = struct{}{}
}

func (b *contactBook) unwatchLocked(contact, owner string) {
	if set := b.watchers[contact]; set != nil {
		delete(set, owner)
		if len(set) == 0 {
			delete(b.watchers, contact)
		}
	}
}

// watchersOf adds to dst the local users who have contact in their list.
func (b *contactBook) watchersOf(contact string, dst map[string]struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for u := range b.watchers[contact] {
		dst[u] = struct{}{}
	}
}

// contactsOf returns owner's contacts: from the book when loaded, else from the store.
func (b *contactBook) contactsOf(ctx context.Context, owner string) ([]string, error) {
	b.mu.Lock()
	if e := b.owners[owner]; e != nil && e.loaded {
		items := slices.Clone(e.c.Items)
		b.mu.Unlock()
		return items, nil
	}
	b.mu.Unlock()
	c, err := b.gw.contacts.refresh(ctx, owner)
	if err != nil {
		return nil, err
	}
	b.set(owner, c)
	return c.Items, nil
}
