package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go/jetstream"
)

// contacts sends a contacts frame (kv: add/remove) and returns the list it answers.
func (u *user) contacts(kv ...any) string {
	u.t.Helper()
	f := with(map[string]any{"cmd": "contacts"}, kv...)
	r := u.do(f)
	items, ok := r["items"].([]any)
	if r.Cmd() != "contacts" || !ok {
		u.t.Fatalf("%v answered %v", f, r)
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.(string)
	}
	return strings.Join(out, ",")
}

func TestContactsRoundTripAndErrors(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann := e.user("ann", 0)
	for _, u := range []string{"ben", "cat", "dan"} {
		if _, err := gt.Account(e.gws[0].URL, u); err != nil {
			t.Fatal(err)
		}
	}
	added := metricValue(t, e.gws[0], "chat_gateway_contact_changes_total", map[string]string{"action": "add"})
	if got := ann.contacts(); got != "" {
		t.Fatalf("new user's contacts %q", got)
	}
	if got := ann.contacts("add", "dan"); got != "dan" {
		t.Fatal(got)
	}
	if got := ann.contacts("add", "ben"); got != "ben,dan" {
		t.Fatal(got)
	}
	_, last := e.lastOn(schemas.ContactSubject("ann"))
	ev, _ := e.lastOn(schemas.ContactSubject("ann"))
	if ev.Type != schemas.TypeContact || ev.From != "ann" || ev.User != "ben" || ev.Action != schemas.ContactAdd {
		t.Fatalf("stored %+v", ev)
	}
	// Adding twice, removing a non-contact (even one who does not exist): nothing changes or is stored.
	if got := ann.contacts("add", "ben"); got != "ben,dan" {
		t.Fatal(got)
	}
	if got := ann.contacts("remove", "cat"); got != "ben,dan" {
		t.Fatal(got)
	}
	if got := ann.contacts("remove", "nobody"); got != "ben,dan" {
		t.Fatal(got)
	}
	if _, now := e.lastOn(schemas.ContactSubject("ann")); now != last {
		t.Fatalf("no-op changes appended: last seq %d, was %d", now, last)
	}
	if v := metricValue(t, e.gws[0], "chat_gateway_contact_changes_total", map[string]string{"action": "add"}); v != added+2 {
		t.Fatalf("contact adds counted %v, want %v", v, added+2)
	}
	if got := ann.contacts("remove", "ben"); got != "dan" {
		t.Fatal(got)
	}
	if got := ann.contacts(); got != "dan" {
		t.Fatal(got)
	}
	for _, tc := range []struct {
		kv   []any
		code string
	}{
		{[]any{"add", "ann"}, "bad_request"},
		{[]any{"add", "Not-Valid!"}, "bad_request"},
		{[]any{"add", "nobody"}, "not_found"},
		{[]any{"add", "ben", "remove", "dan"}, "bad_request"},
		{[]any{"remove", 5}, "bad_request"},
		{[]any{"remove", ""}, "bad_request"},
		{[]any{"remove", "Not-Valid!"}, "bad_request"},
		{[]any{"add", 5}, "bad_request"},
	} {
		ann.fails(tc.code, with(map[string]any{"cmd": "contacts"}, tc.kv...))
	}

	// Another session on another gateway sees the same list; so does a gateway started later.
	other := &user{t: t, name: "ann", token: ann.token, c: e.dial(ann.token, 1)}
	if got := other.contacts(); got != "dan" {
		t.Fatalf("other gateway: %q", got)
	}
	if err := e.gws[0].Stop(); err != nil {
		t.Fatal(err)
	}
	e.gws = append(e.gws, gt.StartGW(t, e.ns, nil))
	again := &user{t: t, name: "ann", token: ann.token, c: e.dial(ann.token, 2)}
	if got := again.contacts(); got != "dan" {
		t.Fatalf("after a restart: %q", got)
	}

	// Concurrent changes through two gateways: compare-and-swap on the log, none lost.
	var names []string
	for i := 0; i < 10; i++ {
		n := fmt.Sprint("c", i)
		if _, err := gt.Account(e.gws[1].URL, n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	var wg sync.WaitGroup
	for i, u := range []*user{other, again} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range names[i*5 : i*5+5] {
				id := "add-" + n
				if err := u.c.Send(map[string]any{"cmd": "contacts", "add": n, "id": id}); err != nil {
					t.Error(err)
					return
				}
				if r, err := u.c.Reply(id, wait); err != nil || r.Cmd() != "contacts" {
					t.Errorf("add %s: %v %v", n, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got, want := again.contacts(), strings.Join(append(names, "dan"), ","); got != want {
		t.Fatalf("after concurrent adds %q, want %q", got, want)
	}
}

// The contacts bucket is a projection: a reader folds in contact events it lacks (a gateway that
// died between appending and projecting).
func TestContactsProjectionIsRepairedFromTheLog(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann := e.user("ann", 0)
	e.user("ben", 0)
	if got := ann.contacts("add", "ben"); got != "ben" {
		t.Fatal(got)
	}
	// Append a change to the log behind the projection's back.
	js, err := jetstream.New(e.natsConn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	data, _ := json.Marshal(schemas.Event{Type: schemas.TypeContact, Ts: schemas.FormatTime(time.Now()), From: "ann", User: "zed", Action: schemas.ContactAdd})
	ack, err := js.Publish(ctx, schemas.ContactSubject("ann"), data)
	if err != nil {
		t.Fatal(err)
	}
	if got := ann.contacts(); got != "ben,zed" {
		t.Fatalf("contacts %q, want the log's change folded in", got)
	}
	kv, err := js.KeyValue(ctx, schemas.ContactsBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, schemas.ContactsKey("ann"))
	if err != nil {
		t.Fatal(err)
	}
	var c schemas.Contacts
	if err := json.Unmarshal(entry.Value(), &c); err != nil || c.Seq != ack.Sequence || strings.Join(c.Items, ",") != "ben,zed" {
		t.Fatalf("projection %s (%v), want seq %d", entry.Value(), err, ack.Sequence)
	}
	if got := ann.contacts("remove", "zed"); got != "ben" {
		t.Fatal(got)
	}
	if got := ann.contacts("remove", "ben"); got != "" {
		t.Fatal(got)
	}
	entry, err = kv.Get(ctx, schemas.ContactsKey("ann"))
	if err != nil || string(entry.Value()) != fmt.Sprintf(`{"seq":%d,"items":[]}`, c.Seq+2) {
		t.Fatalf("projection of an empty list: %s %v", entry.Value(), err)
	}
}

// presenceUpTo collects the presence frames on c up to the first one about marker.
func presenceUpTo(t *testing.T, c *gt.Client, marker string) []string {
	t.Helper()
	var out []string
	for {
		f, err := c.Await(wait, func(f gt.Frame) bool { return f.Cmd() == "presence" })
		if err != nil {
			t.Fatalf("no presence of %s after %v: %v", marker, out, err)
		}
		out = append(out, f.Str("user"))
		if f.Str("user") == marker {
			return out
		}
	}
}

// Contacts see presence one way: who added B gets B's presence changes (on every gateway where
// they have a session) and may ask for it, without sharing a conversation.
func TestContactsSeePresence(t *testing.T) {
	e := newEnv(t, 2, nil)
	ann, ben, cat, dan := e.user("ann", 0), e.user("ben", 0), e.user("cat", 1), e.user("dan", 0)
	ann2 := &user{t: t, name: "ann", token: ann.token, c: e.dial(ann.token, 1)}
	nc := e.natsConn()
	changed := func(u, status string) {
		t.Helper()
		data, _ := json.Marshal(schemas.PresenceChanged{Type: schemas.TypePresenceChanged, User: u, Status: status, LastSeen: "2026-11-22T07:13:36.123Z"})
		if err := nc.Publish(schemas.PresenceChangedSubject(u), data); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	ann.contacts("add", "ben")
	if got := ann.contacts("add", "dan"); got != "ben,dan" {
		t.Fatal(got)
	}
	if got := ann2.contacts(); got != "ben,dan" { // the other gateway has seen the changes
		t.Fatal(got)
	}
	cat.contacts("add", "dan")
	ben.contacts("add", "dan")

	changed("ben", schemas.StatusOnline)
	changed("ann", schemas.StatusOnline)
	changed("dan", schemas.StatusOnline) // everyone's marker: all added dan
	for _, c := range []*gt.Client{ann.c, ann2.c} {
		if got := strings.Join(presenceUpTo(t, c, "dan"), ","); got != "ben,dan" {
			t.Fatalf("ann got %s", got)
		}
	}
	// cat has nothing to do with ben; ben did not add ann (one way).
	if got := strings.Join(presenceUpTo(t, cat.c, "dan"), ","); got != "dan" {
		t.Fatalf("cat got %s", got)
	}
	if got := strings.Join(presenceUpTo(t, ben.c, "dan"), ","); got != "dan" {
		t.Fatalf("ben got %s", got)
	}

	// Queries: a contact's presence is visible, anyone else's is offline without lastSeen.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.PresenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "ben"} {
		data, _ := json.Marshal(schemas.PresenceState{User: u, Status: schemas.StatusOnline, LastSeen: "2026-11-22T07:13:36.123Z", Devices: 1})
		if _, err := kv.Put(ctx, schemas.PresenceKey(u), data); err != nil {
			t.Fatal(err)
		}
	}
	query := func(u *user, of string) string {
		t.Helper()
		r := u.do(map[string]any{"cmd": "presence", "users": []string{of}})
		if r.Cmd() != "presence" {
			t.Fatalf("presence answered %v", r)
		}
		it := r["items"].([]any)[0].(map[string]any)
		return fmt.Sprint(it["status"], " ", it["lastSeen"])
	}
	if got := query(ann, "ben"); got != "online 2026-11-22T07:13:36.123Z" {
		t.Fatalf("ann sees ben %s", got)
	}
	if got := query(ann2, "ben"); got != "online 2026-11-22T07:13:36.123Z" {
		t.Fatalf("ann (other gateway) sees ben %s", got)
	}
	for _, q := range []struct {
		u  *user
		of string
	}{{ben, "ann"}, {cat, "ben"}, {dan, "ben"}} {
		if got := query(q.u, q.of); got != "offline <nil>" {
			t.Fatalf("%s sees %s %s", q.u.name, q.of, got)
		}
	}

	// Removed: no more pushes, no more visibility.
	if got := ann.contacts("remove", "ben"); got != "dan" {
		t.Fatal(got)
	}
	if got := ann2.contacts(); got != "dan" {
		t.Fatal(got)
	}
	changed("ben", schemas.StatusAway)
	changed("dan", schemas.StatusAway)
	for _, c := range []*gt.Client{ann.c, ann2.c} {
		if got := strings.Join(presenceUpTo(t, c, "dan"), ","); got != "dan" {
			t.Fatalf("ann got %s after removing ben", got)
		}
	}
	if got := query(ann, "ben"); got != "offline <nil>" {
		t.Fatalf("ann sees ben %s after removing him", got)
	}
}
