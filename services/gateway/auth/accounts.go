// Package auth holds the gateway's accounts (users and their argon2id password hashes, stored in a
// JetStream key-value bucket) and its tokens (JWTs, HS256 with a configured or generated shared
// secret, or RS256/EdDSA with PEM keys, optionally of an external issuer).
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrTaken: the user id is already registered.
	ErrTaken = errors.New("user id already taken")
	// ErrBadCredentials: wrong user or password. Deliberately the same for both.
	ErrBadCredentials = errors.New("wrong user or password")
	// ErrInvalid is wrapped with a human-readable reason for input that fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no such user (also for a malformed user id).
	ErrNotFound = errors.New("user not found")
)

// Account is one user as stored in schemas.UsersBucket under schemas.UserKey(user).
type Account struct {
	User    string    `json:"user"`
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

// Accounts registers, authenticates and looks up users.
type Accounts struct {
	kv jetstream.KeyValue
	// known caches users seen to exist. Users are never deleted, so a positive answer stays true.
	known sync.Map // user id -> struct{}
}

// NewAccounts returns Accounts backed by the users bucket kv.
func NewAccounts(kv jetstream.KeyValue) *Accounts {
	return &Accounts{kv: kv}
}

// Register creates an account. An empty name defaults to the user id, so there is always something
// to show. Validation failures wrap ErrInvalid; a taken id is ErrTaken.
func (a *Accounts) Register(ctx context.Context, user, password, name string) error {
	switch {
	case !schemas.ValidUser(user):
		return fmt.Errorf("%w: user id must match ^[a-z0-9_-]{1,%d}$", ErrInvalid, schemas.MaxIDLen)
	case len(password) < schemas.MinPasswordLen:
		return fmt.Errorf("%w: password must be at least %d characters", ErrInvalid, schemas.MinPasswordLen)
	case len(password) > schemas.MaxPasswordLen:
		return fmt.Errorf("%w: password must be at most %d bytes", ErrInvalid, schemas.MaxPasswordLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name must be valid UTF-8", ErrInvalid)
	case utf8.RuneCountInString(name) > schemas.MaxNameLen:
		return fmt.Errorf("%w: name must be at most %d characters", ErrInvalid, schemas.MaxNameLen)
	}
	if name == "" {
		name = user
	}
	// Refuse a taken id before paying for a hash. kv.Create below still settles races.
	if ok, err := a.Exists(ctx, user); err != nil {
		return err
	} else if ok {
		return ErrTaken
	}
	hash, err := hashPassword(ctx, password)
	if err != nil {
		return err
	}
	acc := Account{User: user, Name: name, Hash: hash, Created: time.Now().UTC().Truncate(time.Millisecond)}
	val, err := json.Marshal(acc)
	if err != nil {
		return err
	}
	if _, err := a.kv.Create(ctx, schemas.UserKey(user), val); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrTaken
		}
		return fmt.Errorf("auth: register %s: %w", user, err)
	}
	a.known.Store(user, struct{}{})
	return nil
}

// Authenticate checks a user's password. Unknown users, malformed ids and wrong passwords all give
// ErrBadCredentials after the same amount of hashing work; other errors are operational (the store
// is unreachable, ctx ended).
func (a *Accounts) Authenticate(ctx context.Context, user, password string) error {
	acc, err := a.Get(ctx, user)
	found := err == nil
	switch {
	case errors.Is(err, ErrNotFound):
		acc.Hash = dummyHash
	case err != nil:
		return err
	}
	ok, err := checkPassword(ctx, acc.Hash, password)
	if err != nil {
		if errors.Is(err, errBadHash) {
			return fmt.Errorf("auth: account %s: %w", user, err)
		}
		return err
	}
	if !ok || !found {
		return ErrBadCredentials
	}
	return nil
}

// Get returns a user's account, or ErrNotFound when there is none or the id is malformed.
func (a *Accounts) Get(ctx context.Context, user string) (Account, error) {
	if !schemas.ValidUser(user) {
		return Account{}, ErrNotFound
	}
	e, err := a.kv.Get(ctx, schemas.UserKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("auth: get %s: %w", user, err)
	}
	var acc Account
	if err := json.Unmarshal(e.Value(), &acc); err != nil {
		return Account{}, fmt.Errorf("auth: account %s: %w", user, err)
	}
	a.known.Store(user, struct{}{})
	return acc, nil
}

// Exists reports whether a user is registered. Positive answers are cached in memory, so checking
// recipients and members is cheap; negative ones are not, since the user may register any time.
func (a *Accounts) Exists(ctx context.Context, user string) (bool, error) {
	if !schemas.ValidUser(user) {
		return false, nil
	}
	if _, ok := a.known.Load(user); ok {
		return true, nil
	}
	_, err := a.kv.Get(ctx, schemas.UserKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("auth: exists %s: %w", user, err)
	}
	a.known.Store(user, struct{}{})
	return true, nil
}
