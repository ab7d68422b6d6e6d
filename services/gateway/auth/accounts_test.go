package auth

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/eventchat/chat/schemas"
)

func newAccounts(t *testing.T) (*Accounts, *Accounts) {
	js := startJetStream(t)
	kv := bucket(t, js, schemas.UsersBucket)
	// Two instances on one bucket stand for two gateways.
	return NewAccounts(kv), NewAccounts(kv)
}

func TestRegister(t *testing.T) {
	a, _ := newAccounts(t)
	ctx := testCtx(t)

	if err := a.Register(ctx, "alice", "password1", "Alice A."); err != nil {
		t.Fatalf("register: %v", err)
	}
	if err := a.Register(ctx, "alice", "otherpassword", ""); !errors.Is(err, ErrTaken) {
		t.Fatalf("duplicate: got %v, want ErrTaken", err)
	}

	acc, err := a.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if acc.User != "alice" || acc.Name != "Alice A." || !strings.HasPrefix(acc.Hash, "$argon2id$") || acc.Created.IsZero() {
		t.Fatalf("stored account: %+v", acc)
	}
	// The stored value is the documented JSON shape.
	e, err := a.kv.Get(ctx, schemas.UserKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"user", "name", "hash", "created"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stored JSON lacks %q: %s", k, e.Value())
		}
	}
	if strings.Contains(string(e.Value()), "password1") {
		t.Error("stored value contains the password")
	}

	// An empty name defaults to the user id.
	if err := a.Register(ctx, "bob", "password1", ""); err != nil {
		t.Fatal(err)
	}
	if acc, _ := a.Get(ctx, "bob"); acc.Name != "bob" {
		t.Errorf("default name = %q, want bob", acc.Name)
	}

	// Limits at their edges.
	if err := a.Register(ctx, "min-pw", strings.Repeat("p", schemas.MinPasswordLen), strings.Repeat("é", schemas.MaxNameLen)); err != nil {
		t.Errorf("8-byte password, 128-rune name: %v", err)
	}
	if err := a.Register(ctx, "max-pw", strings.Repeat("p", schemas.MaxPasswordLen), ""); err != nil {
		t.Errorf("1024-byte password: %v", err)
	}
	if err := a.Register(ctx, strings.Repeat("x", schemas.MaxIDLen), "password1", ""); err != nil {
		t.Errorf("64-char id: %v", err)
	}

	invalid := []struct{ name, user, password, display string }{
		{"empty id", "", "password1", ""},
		{"upper case", "Alice", "password1", ""},
		{"space", "a b", "password1", ""},
		{"dot", "a.b", "password1", ""},
		{"wildcard", "a*", "password1", ""},
		{"gt", "a>", "password1", ""},
		{"non-ascii", "ü", "password1", ""},
		{"65 chars", strings.Repeat("x", schemas.MaxIDLen+1), "password1", ""},
		{"short password", "carol", "1234567", ""},
		{"empty password", "carol", "", ""},
		{"long password", "carol", strings.Repeat("p", schemas.MaxPasswordLen+1), ""},
		{"long name", "carol", "password1", strings.Repeat("é", schemas.MaxNameLen+1)},
		{"invalid utf-8 name", "carol", "password1", "bad \xff name"},
	}
	for _, c := range invalid {
		err := a.Register(ctx, c.user, c.password, c.display)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.name, err)
		} else if err.Error() == ErrInvalid.Error() {
			t.Errorf("%s: error %q carries no reason", c.name, err)
		}
	}
	if ok, _ := a.Exists(ctx, "carol"); ok {
		t.Error("an invalid registration was stored")
	}
}

func TestRegisterRace(t *testing.T) {
	a, b := newAccounts(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		acc := a
		if i%2 == 1 {
			acc = b
		}
		wg.Go(func() { errs[i] = acc.Register(ctx, "dave", "password1", "") })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrTaken):
			t.Errorf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d registrations succeeded, want 1 (%v)", won, errs)
	}
}

func TestAuthenticate(t *testing.T) {
	a, other := newAccounts(t)
	ctx := testCtx(t)
	if err := a.Register(ctx, "alice", "correct horse", "Alice"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(ctx, "alice", "correct horse"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	// Another gateway's instance sees the same account.
	if err := other.Authenticate(ctx, "alice", "correct horse"); err != nil {
		t.Fatalf("right password, other instance: %v", err)
	}
	bad := []struct{ name, user, password string }{
		{"wrong password", "alice", "wrong horse"},
		{"password prefix", "alice", "correct hors"},
		{"empty password", "alice", ""},
		{"too long password", "alice", strings.Repeat("x", schemas.MaxPasswordLen+1)},
		{"unknown user", "nobody", "correct horse"},
		{"malformed user", "Alice", "correct horse"},
		{"empty user", "", "correct horse"},
		{"subject injection", "alice.>", "correct horse"},
	}
	for _, c := range bad {
		if err := a.Authenticate(ctx, c.user, c.password); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: got %v, want ErrBadCredentials", c.name, err)
		} else if err != ErrBadCredentials {
			// Identical error values, so nothing in the message tells the cases apart.
			t.Errorf("%s: got wrapped %q, want the bare ErrBadCredentials", c.name, err)
		}
	}
	// A cancelled context is an operational error, not bad credentials.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Authenticate(cctx, "alice", "correct horse"); err == nil || errors.Is(err, ErrBadCredentials) {
		t.Errorf("cancelled context: got %v", err)
	}
}

func TestGetAndExists(t *testing.T) {
	a, b := newAccounts(t)
	ctx := testCtx(t)

	for _, u := range []string{"nobody", "Bad!", ""} {
		if _, err := a.Get(ctx, u); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): got %v, want ErrNotFound", u, err)
		}
		if ok, err := a.Exists(ctx, u); ok || err != nil {
			t.Errorf("Exists(%q) = %v, %v; want false, nil", u, ok, err)
		}
	}

	// Negative answers are not cached: a user registered through another gateway shows up.
	if err := b.Register(ctx, "erin", "password1", ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Exists(ctx, "erin"); !ok || err != nil {
		t.Fatalf("Exists after registration elsewhere = %v, %v", ok, err)
	}

	// Positive answers are cached: with the key gone from the store, a still answers from memory,
	// while a fresh instance (no cache) asks the store.
	if err := a.kv.Purge(ctx, schemas.UserKey("erin")); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Exists(ctx, "erin"); !ok || err != nil {
		t.Errorf("cached Exists = %v, %v; want true", ok, err)
	}
	if ok, err := NewAccounts(a.kv).Exists(ctx, "erin"); ok || err != nil {
		t.Errorf("uncached Exists = %v, %v; want false", ok, err)
	}
	// Register caches too.
	if err := a.Register(ctx, "frank", "password1", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.known.Load("frank"); !ok {
		t.Error("Register did not cache the new user")
	}
}

var phcRe = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$`)

func TestHashFormat(t *testing.T) {
	ctx := testCtx(t)
	h1, err := hashPassword(ctx, "password1")
	if err != nil {
		t.Fatal(err)
	}
	if !phcRe.MatchString(h1) {
		t.Fatalf("hash %q does not match %s", h1, phcRe)
	}
	p, err := parseHash(h1)
	if err != nil {
		t.Fatal(err)
	}
	if p.memory != 19*1024 || p.time != 2 || p.threads != 1 || len(p.salt) != 16 || len(p.key) != 32 {
		t.Fatalf("parameters: m=%d t=%d p=%d salt=%d key=%d", p.memory, p.time, p.threads, len(p.salt), len(p.key))
	}
	h2, _ := hashPassword(ctx, "password1")
	if h1 == h2 {
		t.Error("two hashes of one password are equal: salt is not random")
	}
	if ok, err := checkPassword(ctx, h1, "password1"); !ok || err != nil {
		t.Errorf("check right password = %v, %v", ok, err)
	}
	if ok, err := checkPassword(ctx, h1, "password2"); ok || err != nil {
		t.Errorf("check wrong password = %v, %v", ok, err)
	}

	// A hash made with other parameters still verifies: they are read from the hash itself.
	old := argonParams{memory: 8 * 1024, time: 1, threads: 2, salt: []byte("0123456789abcdef")}
	key, _ := old.derive(ctx, "password1", 24)
	enc := "$argon2id$v=19$m=8192,t=1,p=2$" + b64.EncodeToString(old.salt) + "$" + b64.EncodeToString(key)
	if ok, err := checkPassword(ctx, enc, "password1"); !ok || err != nil {
		t.Errorf("check with other parameters = %v, %v", ok, err)
	}

	if _, err := parseHash(dummyHash); err != nil {
		t.Errorf("dummy hash: %v", err)
	}
	salt, sum := b64.EncodeToString(make([]byte, 16)), b64.EncodeToString(make([]byte, 32))
	for _, bad := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + sum,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + sum,
		"$argon2id$v=19$m=0,t=2,p=1$" + salt + "$" + sum,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + sum,
		"$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + sum,
		"$argon2id$v=19$m=19456,t=2,p=300$" + salt + "$" + sum,
		"$argon2id$v=19$m=99999999,t=2,p=1$" + salt + "$" + sum,
		"$argon2id$v=19$m=19456,t=2,p=1$!!$" + sum,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt,
	} {
		if _, err := parseHash(bad); err == nil {
			t.Errorf("parseHash(%q) accepted", bad)
		}
	}
}

func TestHashSemaphore(t *testing.T) {
	if cap(hashSem) < 1 {
		t.Fatal("hash semaphore has no capacity")
	}
	// With every slot taken, a hash waits, and gives up when its context ends.
	for range cap(hashSem) {
		hashSem <- struct{}{}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := hashPassword(ctx, "password1"); done <- err }()
	cancel()
	err := <-done
	for range cap(hashSem) {
		<-hashSem
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("hash with full semaphore and cancelled context: %v", err)
	}
}
