package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
)

// Supported token algorithms.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgEdDSA = "EdDSA"
)

const (
	defaultTTL = 24 * time.Hour
	// minSecretLen: RFC 7518 §3.2 requires an HS256 key of at least 256 bits.
	minSecretLen = 32
	minRSABits   = 2048
	// maxTokenLen bounds the work spent on a token before it is even parsed.
	maxTokenLen = 8 * 1024
)

var (
	// ErrCannotIssue: only a public key is configured, so this gateway verifies tokens but cannot
	// issue them (login answers unavailable).
	ErrCannotIssue = errors.New("token issuing is not configured")
	// ErrBadToken wraps every reason a token is refused: malformed, bad signature, wrong algorithm,
	// expired, missing exp, wrong issuer or audience, or a subject that is not a valid user id.
	ErrBadToken = errors.New("invalid token")
)

// TokenConfig configures how tokens are issued and verified.
type TokenConfig struct {
	// Alg is HS256 (default), RS256 or EdDSA. Only this algorithm is accepted when verifying.
	Alg string
	// TTL of issued tokens; 0 means 24h.
	TTL time.Duration
	// Secret is the HS256 secret (at least 32 bytes). Empty: read SecretFile (surrounding
	// whitespace trimmed); if that is empty too, the secret is generated and kept in the secrets
	// bucket, shared by every gateway on the same NATS.
	Secret     string
	SecretFile string
	// PublicKeyFile: PEM public key (PKIX, RS256 or EdDSA) of an external issuer; tokens signed by
	// it are accepted.
	PublicKeyFile string
	// PrivateKeyFile: PEM private key (PKCS#8, or PKCS#1 for RSA) to issue tokens with. Tokens it
	// signs are accepted too. With only PublicKeyFile, Issue returns ErrCannotIssue.
	PrivateKeyFile string
	// Issuer, if set, is put in issued tokens and required in verified ones ("iss"). Audience
	// likewise ("aud").
	Issuer, Audience string
}

// Validate checks that the settings are consistent, without reading any file.
func (c *TokenConfig) Validate() error {
	if c.TTL < 0 {
		return errors.New("auth: token TTL must not be negative")
	}
	switch c.Alg {
	case "", AlgHS256:
		if c.PublicKeyFile != "" || c.PrivateKeyFile != "" {
			return errors.New("auth: key files need alg RS256 or EdDSA; HS256 uses a secret")
		}
		if c.Secret != "" && c.SecretFile != "" {
			return errors.New("auth: set either a secret or a secret file, not both")
		}
		if c.Secret != "" && len(c.Secret) < minSecretLen {
			return fmt.Errorf("auth: HS256 secret must be at least %d bytes", minSecretLen)
		}
	case AlgRS256, AlgEdDSA:
		if c.Secret != "" || c.SecretFile != "" {
			return fmt.Errorf("auth: alg %s uses key files, not a secret", c.Alg)
		}
		if c.PublicKeyFile == "" && c.PrivateKeyFile == "" {
			return fmt.Errorf("auth: alg %s needs a public or private key file", c.Alg)
		}
	default:
		return fmt.Errorf("auth: unsupported token alg %q (HS256, RS256 or EdDSA)", c.Alg)
	}
	return nil
}

// Tokens issues and verifies JWTs. It is safe for concurrent use.
type Tokens struct {
	method  jwt.SigningMethod
	signKey any // nil when this gateway cannot issue
	keys    jwt.VerificationKeySet
	ttl     time.Duration
	iss     string
	aud     string
	parser  *jwt.Parser
}

// NewTokens builds Tokens from cfg, reading key and secret files. secrets (the schemas.SecretsBucket
// bucket) is only used, and may only be nil otherwise, when HS256 has no configured secret.
func NewTokens(ctx context.Context, cfg TokenConfig, secrets jetstream.KeyValue) (*Tokens, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tokens{ttl: cfg.TTL, iss: cfg.Issuer, aud: cfg.Audience}
	if t.ttl == 0 {
		t.ttl = defaultTTL
	}
	var err error
	switch cfg.Alg {
	case "", AlgHS256:
		t.method = jwt.SigningMethodHS256
		var secret []byte
		secret, err = hmacSecret(ctx, cfg, secrets)
		t.signKey = secret
		t.keys.Keys = []jwt.VerificationKey{secret}
	case AlgRS256:
		t.method = jwt.SigningMethodRS256
		err = t.loadKeys(cfg, parseRSAPrivate, parseRSAPublic)
	case AlgEdDSA:
		t.method = jwt.SigningMethodEdDSA
		err = t.loadKeys(cfg, parseEdPrivate, parseEdPublic)
	}
	if err != nil {
		return nil, err
	}

	opts := []jwt.ParserOption{
		// Pinning the algorithm is what stops "none" and HS256-signed-with-the-public-key tokens.
		jwt.WithValidMethods([]string{t.method.Alg()}),
		jwt.WithExpirationRequired(),
	}
	if t.iss != "" {
		opts = append(opts, jwt.WithIssuer(t.iss))
	}
	if t.aud != "" {
		opts = append(opts, jwt.WithAudience(t.aud))
	}
	t.parser = jwt.NewParser(opts...)
	return t, nil
}

// Issue returns a signed token for user and when it expires (whole seconds, as in the token).
func (t *Tokens) Issue(user string) (token string, expiresAt time.Time, err error) {
	if t.signKey == nil {
		return "", time.Time{}, ErrCannotIssue
	}
	if !schemas.ValidUser(user) {
		return "", time.Time{}, fmt.Errorf("%w: user id", ErrInvalid)
	}
	// JWT dates are whole seconds; truncate so expiresAt is exactly what the token says.
	now := time.Now().UTC().Truncate(time.Second)
	exp := now.Add(t.ttl)
	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    t.iss,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	if t.aud != "" {
		claims.Audience = jwt.ClaimStrings{t.aud}
	}
	token, err = jwt.NewWithClaims(t.method, claims).SignedString(t.signKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, exp, nil
}

// Verify checks a token and returns its user and expiry. Every refusal wraps ErrBadToken (and the
// jwt error, so errors.Is(err, jwt.ErrTokenExpired) tells an expired token apart).
func (t *Tokens) Verify(token string) (user string, expiresAt time.Time, err error) {
	if len(token) > maxTokenLen {
		return "", time.Time{}, fmt.Errorf("%w: too long", ErrBadToken)
	}
	var claims jwt.RegisteredClaims
	_, err = t.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.keys, nil })
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if !schemas.ValidUser(claims.Subject) {
		return "", time.Time{}, fmt.Errorf("%w: subject is not a valid user id", ErrBadToken)
	}
	return claims.Subject, claims.ExpiresAt.UTC(), nil
}

// loadKeys reads the configured key files: the private key signs (and its public half verifies),
// the public key verifies tokens of an external issuer.
func (t *Tokens) loadKeys(cfg TokenConfig,
	parsePriv func([]byte) (priv, pub any, err error), parsePub func([]byte) (any, error)) error {
	if cfg.PrivateKeyFile != "" {
		pem, err := os.ReadFile(cfg.PrivateKeyFile)
		if err != nil {
			return fmt.Errorf("auth: private key: %w", err)
		}
		priv, pub, err := parsePriv(pem)
		if err != nil {
			return fmt.Errorf("auth: private key %s: %w", cfg.PrivateKeyFile, err)
		}
		t.signKey = priv
		t.keys.Keys = append(t.keys.Keys, pub)
	}
	if cfg.PublicKeyFile != "" {
		pem, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("auth: public key: %w", err)
		}
		pub, err := parsePub(pem)
		if err != nil {
			return fmt.Errorf("auth: public key %s: %w", cfg.PublicKeyFile, err)
		}
		if k, ok := pub.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
			return fmt.Errorf("auth: public key %s: RSA keys must have at least %d bits", cfg.PublicKeyFile, minRSABits)
		}
		t.keys.Keys = append(t.keys.Keys, pub)
	}
	return nil
}

func parseRSAPrivate(pem []byte) (priv, pub any, err error) {
	k, err := jwt.ParseRSAPrivateKeyFromPEM(pem)
	if err != nil {
		return nil, nil, err
	}
	if k.N.BitLen() < minRSABits {
		return nil, nil, fmt.Errorf("RSA keys must have at least %d bits", minRSABits)
	}
	return k, &k.PublicKey, nil
}

func parseRSAPublic(pem []byte) (any, error) { return jwt.ParseRSAPublicKeyFromPEM(pem) }

func parseEdPrivate(pem []byte) (priv, pub any, err error) {
	k, err := jwt.ParseEdPrivateKeyFromPEM(pem)
	if err != nil {
		return nil, nil, err
	}
	return k, k.(ed25519.PrivateKey).Public(), nil
}

func parseEdPublic(pem []byte) (any, error) { return jwt.ParseEdPublicKeyFromPEM(pem) }

// hmacSecret returns the configured HS256 secret, or the one shared through the secrets bucket.
func hmacSecret(ctx context.Context, cfg TokenConfig, secrets jetstream.KeyValue) ([]byte, error) {
	if cfg.Secret != "" {
		return []byte(cfg.Secret), nil
	}
	if cfg.SecretFile != "" {
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth: secret file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if len(s) < minSecretLen {
			return nil, fmt.Errorf("auth: secret file %s: HS256 secret must be at least %d bytes", cfg.SecretFile, minSecretLen)
		}
		return []byte(s), nil
	}
	if secrets == nil {
		return nil, errors.New("auth: no HS256 secret configured and no secrets bucket to keep a generated one")
	}
	return sharedSecret(ctx, secrets)
}

// sharedSecret reads the generated HS256 secret from the secrets bucket, creating it if absent.
// kv.Create makes the first gateway win a race; the others read what it stored. The secret is kept
// as base64 text and that text is the key, so an operator can copy it into the Secret setting.
func sharedSecret(ctx context.Context, kv jetstream.KeyValue) ([]byte, error) {
	for range 3 {
		e, err := kv.Get(ctx, schemas.SecretKeyHS256)
		if err == nil {
			if len(e.Value()) < minSecretLen {
				return nil, fmt.Errorf("auth: stored secret %s is too short", schemas.SecretKeyHS256)
			}
			return e.Value(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("auth: read secret: %w", err)
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		secret := []byte(base64.RawURLEncoding.EncodeToString(raw))
		_, err = kv.Create(ctx, schemas.SecretKeyHS256, secret)
		if err == nil {
			return secret, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("auth: store secret: %w", err)
		}
		// Another gateway created it first: loop to read theirs.
	}
	return nil, errors.New("auth: could not read or create the shared secret")
}
