package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func newTokens(t *testing.T, cfg TokenConfig) *Tokens {
	t.Helper()
	tk, err := NewTokens(testCtx(t), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// sign makes a token with arbitrary claims and method, bypassing Issue.
func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims(user string) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
}

func expectBad(t *testing.T, tk *Tokens, name, token string) {
	t.Helper()
	if u, _, err := tk.Verify(token); !errors.Is(err, ErrBadToken) {
		t.Errorf("%s: Verify = %q, %v; want ErrBadToken", name, u, err)
	}
}

func TestHS256RoundTrip(t *testing.T) {
	tk := newTokens(t, TokenConfig{Secret: testSecret})
	before := time.Now()
	tok, exp, err := tk.Issue("alice")
	if err != nil {
		t.Fatal(err)
	}
	if d := exp.Sub(before); d < 24*time.Hour-2*time.Second || d > 24*time.Hour+time.Second {
		t.Errorf("default TTL: expires in %v, want 24h", d)
	}
	user, exp2, err := tk.Verify(tok)
	if err != nil || user != "alice" || !exp2.Equal(exp) {
		t.Fatalf("Verify = %q, %v, %v; want alice, %v", user, exp2, err, exp)
	}
	// The header says HS256.
	if h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0]); !strings.Contains(string(h), `"HS256"`) {
		t.Errorf("header %s", h)
	}

	// Same secret elsewhere verifies; another secret does not.
	if u, _, err := newTokens(t, TokenConfig{Secret: testSecret}).Verify(tok); err != nil || u != "alice" {
		t.Errorf("same secret: %q, %v", u, err)
	}
	expectBad(t, newTokens(t, TokenConfig{Secret: strings.Repeat("z", 32)}), "other secret", tok)

	// Custom TTL.
	short := newTokens(t, TokenConfig{Secret: testSecret, TTL: time.Minute})
	_, exp, _ = short.Issue("alice")
	if d := time.Until(exp); d > time.Minute || d < 58*time.Second {
		t.Errorf("TTL 1m: expires in %v", d)
	}

	if _, _, err := tk.Issue("Not Valid"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Issue for an invalid user id: %v", err)
	}
}

func TestHS256Rejections(t *testing.T) {
	tk := newTokens(t, TokenConfig{Secret: testSecret})
	key := []byte(testSecret)

	expired := validClaims("alice")
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	tok := sign(t, jwt.SigningMethodHS256, key, expired)
	expectBad(t, tk, "expired", tok)
	if _, _, err := tk.Verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired token error %v does not wrap jwt.ErrTokenExpired", err)
	}

	notYet := validClaims("alice")
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	expectBad(t, tk, "not yet valid", sign(t, jwt.SigningMethodHS256, key, notYet))

	expectBad(t, tk, "no exp", sign(t, jwt.SigningMethodHS256, key, jwt.RegisteredClaims{Subject: "alice"}))
	expectBad(t, tk, "alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims("alice")))
	expectBad(t, tk, "HS384 same secret", sign(t, jwt.SigningMethodHS384, key, validClaims("alice")))
	expectBad(t, tk, "HS512 same secret", sign(t, jwt.SigningMethodHS512, key, validClaims("alice")))
	expectBad(t, tk, "invalid subject", sign(t, jwt.SigningMethodHS256, key, validClaims("Alice.>")))
	expectBad(t, tk, "no subject", sign(t, jwt.SigningMethodHS256, key, validClaims("")))

	good, _, _ := tk.Issue("alice")
	parts := strings.Split(good, ".")
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":9999999999}`))
	expectBad(t, tk, "tampered payload", parts[0]+"."+payload+"."+parts[2])
	sig := []byte(parts[2])
	sig[3] ^= 1
	expectBad(t, tk, "tampered signature", parts[0]+"."+parts[1]+"."+string(sig))
	expectBad(t, tk, "no signature", parts[0]+"."+parts[1]+".")
	for _, s := range []string{"", "garbage", "a.b.c", good + ".x", strings.Repeat("a", 10000)} {
		expectBad(t, tk, "malformed "+s[:min(len(s), 12)], s)
	}
}

func TestIssuerAudience(t *testing.T) {
	cfg := TokenConfig{Secret: testSecret, Issuer: "https://chat.example", Audience: "chat"}
	tk := newTokens(t, cfg)
	tok, _, err := tk.Issue("alice")
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := tk.Verify(tok); err != nil || u != "alice" {
		t.Fatalf("Verify = %q, %v", u, err)
	}
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.Issuer != cfg.Issuer || len(c.Audience) != 1 || c.Audience[0] != cfg.Audience {
		t.Errorf("issued claims %+v, %v", c, err)
	}

	key := []byte(testSecret)
	plain := validClaims("alice")
	expectBad(t, tk, "no iss/aud", sign(t, jwt.SigningMethodHS256, key, plain))
	wrongIss := validClaims("alice")
	wrongIss.Issuer, wrongIss.Audience = "https://evil.example", jwt.ClaimStrings{"chat"}
	expectBad(t, tk, "wrong iss", sign(t, jwt.SigningMethodHS256, key, wrongIss))
	wrongAud := validClaims("alice")
	wrongAud.Issuer, wrongAud.Audience = cfg.Issuer, jwt.ClaimStrings{"other"}
	expectBad(t, tk, "wrong aud", sign(t, jwt.SigningMethodHS256, key, wrongAud))
}

func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, _ := newTokens(t, TokenConfig{SecretFile: path}).Issue("alice")
	// The file's trailing newline is not part of the secret.
	if _, _, err := newTokens(t, TokenConfig{Secret: testSecret}).Verify(tok); err != nil {
		t.Errorf("secret file: %v", err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokens(testCtx(t), TokenConfig{SecretFile: path}, nil); err == nil {
		t.Error("short secret file accepted")
	}
	if _, err := NewTokens(testCtx(t), TokenConfig{SecretFile: path + ".missing"}, nil); err == nil {
		t.Error("missing secret file accepted")
	}
	if _, err := NewTokens(testCtx(t), TokenConfig{}, nil); err == nil {
		t.Error("no secret and no bucket accepted")
	}
}

func TestSharedGeneratedSecret(t *testing.T) {
	js := startJetStream(t)
	kv := bucket(t, js, schemas.SecretsBucket)
	ctx := testCtx(t)

	// Several gateways start at once with no secret configured: they race to create it and must
	// all end up with the same one.
	const n = 5
	tks := make([]*Tokens, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { tks[i], errs[i] = NewTokens(ctx, TokenConfig{}, kv) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("gateway %d: %v", i, err)
		}
	}
	e, err := kv.Get(ctx, schemas.SecretKeyHS256)
	if err != nil {
		t.Fatalf("secret not stored: %v", err)
	}
	if len(e.Value()) < minSecretLen {
		t.Fatalf("stored secret is %d bytes", len(e.Value()))
	}
	for i, a := range tks {
		tok, _, err := a.Issue("alice")
		if err != nil {
			t.Fatal(err)
		}
		for j, b := range tks {
			if u, _, err := b.Verify(tok); err != nil || u != "alice" {
				t.Errorf("token from gateway %d on gateway %d: %q, %v", i, j, u, err)
			}
		}
	}
	// A later gateway reads the stored secret; a configured secret is independent of it.
	later, err := NewTokens(ctx, TokenConfig{}, kv)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := tks[0].Issue("bob")
	if _, _, err := later.Verify(tok); err != nil {
		t.Errorf("later gateway: %v", err)
	}
	expectBad(t, newTokens(t, TokenConfig{Secret: testSecret}), "configured secret vs generated", tok)
}

// writeKeys writes priv as PKCS#8 and its public key as PKIX PEM files and returns their paths.
func writeKeys(t *testing.T, priv crypto.Signer) (privFile, pubFile string) {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	privFile, pubFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return privFile, pubFile
}

func TestAsymmetric(t *testing.T) {
	rsaKey := func() crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	edKey := func() crypto.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, c := range []struct {
		alg    string
		method jwt.SigningMethod
		newKey func() crypto.Signer
	}{
		{AlgRS256, jwt.SigningMethodRS256, rsaKey},
		{AlgEdDSA, jwt.SigningMethodEdDSA, edKey},
	} {
		t.Run(c.alg, func(t *testing.T) {
			own, ext, stranger := c.newKey(), c.newKey(), c.newKey()
			ownPriv, ownPub := writeKeys(t, own)
			_, extPub := writeKeys(t, ext)

			// Issuing gateway: private key only.
			issuer := newTokens(t, TokenConfig{Alg: c.alg, PrivateKeyFile: ownPriv})
			tok, exp, err := issuer.Issue("alice")
			if err != nil {
				t.Fatal(err)
			}
			if u, e, err := issuer.Verify(tok); err != nil || u != "alice" || !e.Equal(exp) {
				t.Fatalf("own token: %q, %v, %v", u, e, err)
			}

			// Verify-only gateway with the issuer's public key: accepts its tokens, cannot issue.
			verifier := newTokens(t, TokenConfig{Alg: c.alg, PublicKeyFile: ownPub})
			if u, _, err := verifier.Verify(tok); err != nil || u != "alice" {
				t.Errorf("public-key verifier: %q, %v", u, err)
			}
			if _, _, err := verifier.Issue("alice"); !errors.Is(err, ErrCannotIssue) {
				t.Errorf("Issue without a private key: %v, want ErrCannotIssue", err)
			}

			// External issuer: a token the test signs with ext's private key.
			extTok := sign(t, c.method, ext, validClaims("bob"))
			external := newTokens(t, TokenConfig{Alg: c.alg, PublicKeyFile: extPub})
			if u, _, err := external.Verify(extTok); err != nil || u != "bob" {
				t.Errorf("external token: %q, %v", u, err)
			}
			expectBad(t, external, "own token on external-only gateway", tok)

			// Both: issues with its own key and accepts the external issuer's tokens too.
			both := newTokens(t, TokenConfig{Alg: c.alg, PrivateKeyFile: ownPriv, PublicKeyFile: extPub})
			for _, tk := range []string{tok, extTok} {
				if _, _, err := both.Verify(tk); err != nil {
					t.Errorf("own+external gateway: %v", err)
				}
			}

			expectBad(t, both, "unknown key", sign(t, c.method, stranger, validClaims("alice")))
			noExp := sign(t, c.method, ext, jwt.RegisteredClaims{Subject: "bob"})
			expectBad(t, both, "no exp", noExp)
			expired := validClaims("bob")
			expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Second))
			expectBad(t, both, "expired", sign(t, c.method, ext, expired))
			expectBad(t, both, "alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims("alice")))
			// Algorithm confusion: HS256 "signed" with the public key file as the secret.
			pubPEM, _ := os.ReadFile(extPub)
			expectBad(t, both, "HS256 with public key as secret", sign(t, jwt.SigningMethodHS256, pubPEM, validClaims("alice")))
		})
	}

	// A key of the wrong kind for the algorithm is refused at start.
	_, edPub := writeKeys(t, edKey())
	if _, err := NewTokens(testCtx(t), TokenConfig{Alg: AlgRS256, PublicKeyFile: edPub}, nil); err == nil {
		t.Error("RS256 with an Ed25519 key accepted")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallPriv, smallPub := writeKeys(t, small)
	if _, err := NewTokens(testCtx(t), TokenConfig{Alg: AlgRS256, PrivateKeyFile: smallPriv}, nil); err == nil {
		t.Error("1024-bit RSA private key accepted")
	}
	if _, err := NewTokens(testCtx(t), TokenConfig{Alg: AlgRS256, PublicKeyFile: smallPub}, nil); err == nil {
		t.Error("1024-bit RSA public key accepted")
	}
}

func TestValidate(t *testing.T) {
	ok := []TokenConfig{
		{},
		{Alg: AlgHS256, Secret: testSecret, TTL: time.Hour},
		{SecretFile: "/x"},
		{Alg: AlgRS256, PublicKeyFile: "/x"},
		{Alg: AlgEdDSA, PrivateKeyFile: "/x", PublicKeyFile: "/y", Issuer: "i", Audience: "a"},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []TokenConfig{
		{Alg: "HS384"},
		{Alg: "none"},
		{Alg: "rs256", PublicKeyFile: "/x"},
		{TTL: -time.Second},
		{Secret: "short"},
		{Secret: testSecret, SecretFile: "/x"},
		{PublicKeyFile: "/x"},
		{Alg: AlgRS256},
		{Alg: AlgEdDSA, Secret: testSecret},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
