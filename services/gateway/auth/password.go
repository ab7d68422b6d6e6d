package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// argon2id parameters for new hashes (OWASP: m=19 MiB, t=2, p=1). Stored hashes carry their own
// parameters, so these can be raised later without invalidating existing accounts.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// Bounds on the parameters accepted from a stored hash, so that a corrupt or hostile entry cannot
// make one login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory = 1024 * 1024 // KiB (1 GiB)
	maxArgonTime   = 64
	maxArgonKeyLen = 1024
)

// hashSem bounds the number of argon2 computations running at once in this process: each one holds
// argonMemory KiB, so a login flood queues here instead of exhausting memory.
var hashSem = make(chan struct{}, runtime.NumCPU())

var b64 = base64.RawStdEncoding // PHC strings use unpadded standard base64

// dummyHash is compared against when the user does not exist, so an unknown user costs the same
// hashing time as a wrong password. No password can match its all-zero digest in practice, and the
// caller rejects the attempt regardless.
var dummyHash = fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
	argonMemory, argonTime, argonThreads,
	b64.EncodeToString(make([]byte, argonSaltLen)), b64.EncodeToString(make([]byte, argonKeyLen)))

// argonParams are the parameters and material of one encoded hash.
type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// hashPassword returns the PHC-encoded argon2id hash of password with a fresh random salt.
func hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := argonParams{memory: argonMemory, time: argonTime, threads: argonThreads, salt: salt}
	key, err := p.derive(ctx, password, argonKeyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkPassword reports whether password matches the encoded hash. An error means the hash could
// not be used (malformed) or ctx ended while waiting for a hashing slot.
func checkPassword(ctx context.Context, encoded, password string) (bool, error) {
	p, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	key, err := p.derive(ctx, password, uint32(len(p.key)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// derive runs argon2id under the process-wide semaphore.
func (p argonParams) derive(ctx context.Context, password string, keyLen uint32) ([]byte, error) {
	select {
	case hashSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-hashSem }()
	return argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, keyLen), nil
}

var errBadHash = errors.New("auth: malformed password hash")

// parseHash decodes "$argon2id$v=19$m=<KiB>,t=<n>,p=<n>$<salt>$<key>".
func parseHash(encoded string) (argonParams, error) {
	var p argonParams
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return p, errBadHash
	}
	var err1, err2 error
	p.salt, err1 = b64.DecodeString(parts[4])
	p.key, err2 = b64.DecodeString(parts[5])
	switch {
	case err1 != nil, err2 != nil,
		p.memory == 0 || p.memory > maxArgonMemory,
		p.time == 0 || p.time > maxArgonTime,
		p.threads == 0,
		len(p.salt) < 8,
		len(p.key) < 16 || len(p.key) > maxArgonKeyLen:
		return p, errBadHash
	}
	return p, nil
}
