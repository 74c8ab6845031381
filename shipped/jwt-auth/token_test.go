package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// Test keys, made once.
var (
	rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret    = []byte("0123456789abcdef0123456789abcdef")
	now       = time.Unix(1_800_000_000, 0)
)

// sign returns a compact JWS of claims with header hdr, signed by priv
// (an HMAC secret, *rsa.PrivateKey or *ecdsa.PrivateKey) for hdr's alg.
func sign(t testing.TB, hdr map[string]any, claims map[string]any, priv any) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := priv.(type) {
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case nil:
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// rawHeader returns an HS256 token of claims with the header hdr as
// written (for headers json.Marshal cannot make), signed with secret.
func rawHeader(t testing.TB, hdr string, claims map[string]any, secret []byte) string {
	t.Helper()
	c, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// good returns valid claims at now.
func good() map[string]any {
	return map[string]any{"sub": "alice", "iss": "https://idp", "aud": []string{"mqtt"}, "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix()}
}

// with returns good claims with changes (nil deletes).
func with(changes map[string]any) map[string]any {
	c := good()
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func pemOf(t testing.TB, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func testPolicy() *policy {
	return &policy{algs: map[string]bool{"HS256": true, "RS256": true, "ES256": true}, issuers: []string{"https://idp"}, audiences: []string{"mqtt"}, leeway: 30 * time.Second, requireExp: true}
}

func TestVerify(t *testing.T) {
	hk, _ := hmacKey(secret)
	rk, _ := publicKey(&rsaKey.PublicKey)
	ek, _ := publicKey(&ecKey.PublicKey)
	rk.kid, ek.kid = "r1", "e1"
	keys := []*key{hk, rk, ek}
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	rs := map[string]any{"alg": "RS256", "kid": "r1"}
	es := map[string]any{"alg": "ES256", "kid": "e1"}
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name, token, err string
	}{
		{name: "HS256", token: sign(t, hs, good(), secret)},
		{name: "RS256", token: sign(t, rs, good(), rsaKey)},
		{name: "ES256", token: sign(t, es, good(), ecKey)},
		{name: "RS256 without kid", token: sign(t, map[string]any{"alg": "RS256"}, good(), rsaKey)},
		{name: "HS256 with a kid, configured secret without one", token: sign(t, map[string]any{"alg": "HS256", "kid": "2024-01"}, good(), secret)},
		{name: "HS256 with a kid, bad signature", token: sign(t, map[string]any{"alg": "HS256", "kid": "2024-01"}, good(), []byte("another secret of thirty-two bytes!")), err: "bad signature"}, // not an unknown kid: a JWK set brings no HMAC secret to fetch
		{name: "RS256 with a kid of the EC key", token: sign(t, map[string]any{"alg": "RS256", "kid": "e1"}, good(), rsaKey), err: `unknown key id "e1" for alg RS256`},
		{name: "aud as a string", token: sign(t, hs, with(map[string]any{"aud": "mqtt"}), secret)},
		{name: "expired within leeway", token: sign(t, hs, with(map[string]any{"exp": now.Add(-10 * time.Second).Unix()}), secret)},
		{name: "expired", token: sign(t, hs, with(map[string]any{"exp": now.Add(-time.Minute).Unix()}), secret), err: "expired at 2027-01-15T07:59:00Z"},
		{name: "expired exactly at leeway", token: sign(t, hs, with(map[string]any{"exp": now.Add(-30 * time.Second).Unix()}), secret), err: "expired at 2027-01-15T07:59:30Z"},
		{name: "not yet valid", token: sign(t, hs, with(map[string]any{"nbf": now.Add(time.Minute).Unix()}), secret), err: "not valid before 2027-01-15T08:01:00Z"},
		{name: "nbf within leeway", token: sign(t, hs, with(map[string]any{"nbf": now.Add(20 * time.Second).Unix()}), secret)},
		{name: "no exp", token: sign(t, hs, with(map[string]any{"exp": nil}), secret), err: `no "exp" claim (config.require_exp is true)`},
		{name: "exp not a number", token: sign(t, hs, with(map[string]any{"exp": "tomorrow"}), secret), err: `claim "exp" is not a number`},
		{name: "wrong issuer", token: sign(t, hs, with(map[string]any{"iss": "https://evil"}), secret), err: `issuer "https://evil" not accepted`},
		{name: "no issuer", token: sign(t, hs, with(map[string]any{"iss": nil}), secret), err: `issuer "" not accepted`},
		{name: "wrong audience", token: sign(t, hs, with(map[string]any{"aud": []string{"web", "api"}}), secret), err: `audience ["web" "api"] not accepted`},
		{name: "no audience", token: sign(t, hs, with(map[string]any{"aud": nil}), secret), err: `audience [] not accepted`},
		{name: "bad HMAC", token: sign(t, hs, good(), []byte("another secret of thirty-two bytes!")), err: "bad signature"},
		{name: "bad RSA", token: sign(t, rs, good(), otherRSA), err: "bad signature"},
		{name: "tampered claims", token: tamper(sign(t, es, good(), ecKey)), err: "bad signature"},
		{name: "alg none", token: sign(t, map[string]any{"alg": "none"}, good(), nil), err: `unsigned token (alg "none") refused`},
		{name: "alg NONE", token: sign(t, map[string]any{"alg": "NONE"}, good(), nil), err: `unsigned token (alg "none") refused`},
		{name: "no alg", token: sign(t, map[string]any{}, good(), nil), err: `unsigned token (alg "none") refused`},
		{name: "alg not accepted", token: sign(t, map[string]any{"alg": "HS512"}, good(), secret), err: `alg "HS512" not accepted (accepted: ES256, HS256, RS256)`},
		// Key confusion: an HS256 token "signed" with the RSA public key's
		// PEM as the HMAC secret must not verify against the RSA key.
		{name: "HS256 with the RSA public key as secret", token: sign(t, map[string]any{"alg": "HS256", "kid": "r1"}, good(), []byte(pemOf(t, &rsaKey.PublicKey))), err: "bad signature"},
		{name: "ES256 alg with an RSA kid", token: sign(t, map[string]any{"alg": "ES256", "kid": "r1"}, good(), ecKey), err: `unknown key id "r1" for alg ES256`},
		{name: "unknown kid", token: sign(t, map[string]any{"alg": "RS256", "kid": "r9"}, good(), rsaKey), err: `unknown key id "r9" for alg RS256`},
		{name: "crit", token: sign(t, map[string]any{"alg": "HS256", "crit": []string{"exp"}}, good(), secret), err: `critical header extensions ["exp"] not understood`},
		// JOSE header member names are case-sensitive; none given twice.
		{name: "ALG", token: sign(t, map[string]any{"ALG": "HS256"}, good(), secret), err: `header member "ALG": member names are case-sensitive (want "alg")`},
		{name: "Kid", token: sign(t, map[string]any{"alg": "HS256", "Kid": "x"}, good(), secret), err: `header member "Kid": member names are case-sensitive (want "kid")`},
		{name: "alg twice", token: rawHeader(t, `{"alg":"none","alg":"HS256"}`, good(), secret), err: `header member "alg" given twice`},
		{name: "alg not a string", token: rawHeader(t, `{"alg":5}`, good(), secret), err: `header member "alg": json: cannot unmarshal number into Go value of type string`},
		{name: "unknown member", token: sign(t, map[string]any{"alg": "HS256", "x-extra": 1}, good(), secret)},
		{name: "two parts", token: "a.b", err: "not a JWT (want three dot-separated parts)"},
		{name: "header not base64", token: "*.b.c", err: "header is not base64url"},
		{name: "claims not an object", token: sign(t, hs, nil, secret), err: "payload is not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(tc.token, keys, testPolicy(), now)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("got error %q, want %q", got, tc.err)
			}
		})
	}
}

// tamper changes the claims of a token, keeping its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	c, _ := json.Marshal(with(map[string]any{"sub": "mallory"}))
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + parts[2]
}

func TestUnknownKidIsSentinel(t *testing.T) {
	rk, _ := publicKey(&rsaKey.PublicKey)
	rk.kid = "r1"
	_, err := verify(sign(t, map[string]any{"alg": "RS256", "kid": "r2"}, good(), rsaKey), []*key{rk}, testPolicy(), now)
	if !errors.Is(err, errUnknownKid) {
		t.Fatalf("got %v", err)
	}
}

func TestECSignatureOfWrongLength(t *testing.T) {
	ek, _ := publicKey(&ecKey.PublicKey)
	tok := sign(t, map[string]any{"alg": "ES256"}, good(), ecKey)
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	asn1Like := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(append(sig, 0))
	if _, err := verify(asn1Like, []*key{ek}, testPolicy(), now); err == nil || err.Error() != "bad signature" {
		t.Fatalf("got %v", err)
	}
}

func jwkOf(pub any, kid string) map[string]any {
	b := func(n *big.Int, size int) string {
		buf := make([]byte, size)
		n.FillBytes(buf)
		return base64.RawURLEncoding.EncodeToString(buf)
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b(p.N, (p.N.BitLen()+7)/8), "e": b(big.NewInt(int64(p.E)), 3)}
	case *ecdsa.PublicKey:
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b(p.X, 32), "y": b(p.Y, 32)}
	}
	panic(fmt.Sprintf("%T", pub))
}

func TestParseJWKS(t *testing.T) {
	set, _ := json.Marshal(map[string]any{"keys": []any{
		jwkOf(&rsaKey.PublicKey, "r1"),
		jwkOf(&ecKey.PublicKey, "e1"),
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"},
		map[string]any{"kty": "EC", "kid": "off", "crv": "P-256", "x": base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "y": base64.RawURLEncoding.EncodeToString(make([]byte, 32))},
	}})
	keys, skipped, err := parseJWKS(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].kid != "r1" || keys[0].alg != "RS256" || keys[1].kid != "e1" {
		t.Fatalf("keys %+v", keys)
	}
	want := []string{
		`keys[2] (kid "enc"): use "enc", want sig`,
		`keys[3] (kid "ed"): kty "OKP", want oct, RSA or EC`,
		`keys[4] (kid "off"): (x, y) is not a point on P-256`,
	}
	if strings.Join(skipped, "\n") != strings.Join(want, "\n") {
		t.Fatalf("skipped:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(want, "\n"))
	}
	// The RSA key bound to RS256 does not verify RS512.
	if keys[0].fits("RS512", algorithms["RS512"]) || !keys[0].fits("RS256", algorithms["RS256"]) {
		t.Fatal("alg binding of a JWK ignored")
	}
	if _, _, err := parseJWKS([]byte(`{"keys":[]}`)); err == nil || err.Error() != "no usable key among 0 ()" {
		t.Fatalf("empty set: %v", err)
	}
	if _, _, err := parseJWKS([]byte(`{"kty":"RSA"}`)); err == nil || err.Error() != `not a JWK set: no "keys" list` {
		t.Fatalf("a JWK, not a set: %v", err)
	}
}

func TestParsePEM(t *testing.T) {
	keys, err := parsePEM(pemOf(t, &rsaKey.PublicKey) + pemOf(t, &ecKey.PublicKey))
	if err != nil || len(keys) != 2 || keys[0].kty != ktyRSA || keys[1].kty != ktyEC {
		t.Fatalf("%+v, %v", keys, err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if _, err := parsePEM(priv); err == nil || err.Error() != "block 1 is a PRIVATE KEY: give the public key only" {
		t.Fatalf("private key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := parsePEM(pemOf(t, &small.PublicKey)); err == nil || err.Error() != "block 1 (PUBLIC KEY): RSA key of 1024 bits, want 2048 to 8192" {
		t.Fatalf("small key: %v", err)
	}
	if _, err := parsePEM("hello"); err == nil || err.Error() != "no PEM block" {
		t.Fatalf("not PEM: %v", err)
	}
}

func TestKeySetRefetchFloor(t *testing.T) {
	set, _ := json.Marshal(map[string]any{"keys": []any{jwkOf(&rsaKey.PublicKey, "r1")}})
	fetches := 0
	ks := keySet{url: "https://idp/jwks", refresh: time.Hour, minRefetch: 30 * time.Second, fetch: func(string) ([]byte, error) {
		fetches++
		return set, nil
	}}
	if len(ks.keys(now, nil)) != 1 || fetches != 1 {
		t.Fatalf("first use: %d fetches", fetches)
	}
	// Unknown kids in a flood: one forced fetch per floor at most.
	for i := 0; i < 100; i++ {
		ks.update(now.Add(time.Duration(i)*100*time.Millisecond), true)
	}
	if fetches != 1 {
		t.Fatalf("%d fetches within the floor, want 1", fetches)
	}
	if !ks.update(now.Add(31*time.Second), true) || fetches != 2 {
		t.Fatalf("forced fetch after the floor: %d fetches", fetches)
	}
	// Refresh when old; a failed fetch keeps the keys.
	ks.fetch = func(string) ([]byte, error) { fetches++; return nil, errors.New("down") }
	if got := ks.keys(now.Add(2*time.Hour), nil); len(got) != 1 || fetches != 3 {
		t.Fatalf("stale keys after a failed refresh: %d keys, %d fetches", len(got), fetches)
	}
	if got := ks.keys(now.Add(2*time.Hour+time.Second), nil); len(got) != 1 || fetches != 3 {
		t.Fatalf("retry within the floor: %d keys, %d fetches", len(got), fetches)
	}
}

// TestKeyLimits: RSA moduli of 2048 to 8192 bits.
func TestKeyLimits(t *testing.T) {
	big8200 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 8200), big.NewInt(1))
	if _, err := publicKey(&rsa.PublicKey{N: big8200, E: 65537}); err == nil || err.Error() != "RSA key of 8200 bits, want 2048 to 8192" {
		t.Fatalf("8200-bit key: %v", err)
	}
	if _, err := publicKey(&rsaKey.PublicKey); err != nil {
		t.Fatal(err)
	}
}

// TestHMACKidNoRefetch: an HS token with a kid, when only an HMAC secret
// is configured, is not an unknown key id (no JWKS fetch, no such log):
// a JWK set never brings an HMAC secret.
func TestHMACKidNoRefetch(t *testing.T) {
	hk, _ := hmacKey(secret)
	_, err := verify(sign(t, map[string]any{"alg": "HS256", "kid": "k9"}, good(), []byte("another secret of thirty-two bytes!")), []*key{hk}, testPolicy(), now)
	if err == nil || errors.Is(err, errUnknownKid) {
		t.Fatalf("got %v", err)
	}
	rk, _ := publicKey(&rsaKey.PublicKey)
	if _, err := verify(sign(t, map[string]any{"alg": "HS256", "kid": "k9"}, good(), secret), []*key{rk}, testPolicy(), now); err == nil || err.Error() != "no key for alg HS256" {
		t.Fatalf("no HMAC key: %v", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{name: "hmac", in: `{"hmac_secret":"0123456789abcdef0123456789abcdef"}`},
		{name: "jwks url", in: `{"jwks_url":"https://idp/jwks","algorithms":["RS256"]}`},
		{name: "no key", in: `{}`, err: "config: no key: set hmac_secret, hmac_secret_base64, public_keys, jwks or jwks_url"},
		{name: "short secret", in: `{"hmac_secret":"short"}`, err: "config.hmac_secret: the secret is 5 bytes, want at least 32"},
		{name: "alg none", in: `{"jwks_url":"https://idp/jwks","algorithms":["none"]}`, err: `config.algorithms[0]: "none" is not one of ES256, ES384, HS256, HS384, HS512, RS256, RS384, RS512 ("none" is never accepted)`},
		{name: "bad url", in: `{"jwks_url":"ftp://idp/jwks"}`, err: `config.jwks_url: "ftp://idp/jwks" is not an http:// or https:// URL`},
		{name: "typo", in: `{"jwks_ulr":"https://idp"}`, err: `config: unknown key "jwks_ulr" (known: algorithms, hmac_secret, hmac_secret_base64, public_keys, jwks, jwks_url, jwks_refresh, jwks_min_refetch, issuer, audience, leeway, require_exp, username_claim, clientid_claim, permissions_claim, default_permissions, not_a_token, disconnect_on_expiry)`},
		{name: "leeway", in: `{"jwks_url":"https://idp/jwks","leeway":"1h"}`, err: "config.leeway: 1h0m0s out of range 0s-10m0s"},
		{name: "bad default filter", in: `{"jwks_url":"https://idp/jwks","default_permissions":{"publish":["a/#/b"]}}`, err: `config.default_permissions: publish[0] "a/#/b": "#" must be the last level`},
		{name: "bad pem", in: `{"public_keys":["nope"]}`, err: "config.public_keys[0]: no PEM block"},
		{name: "bad jwks", in: `{"jwks":{"keys":[{"kty":"RSA","n":"AQAB"}]}}`, err: `config.jwks: no usable key among 1 (keys[0] (kid ""): "e" missing)`},
		{name: "not_a_token", in: `{"jwks_url":"https://idp/jwks","not_a_token":"allow"}`, err: `config.not_a_token: "allow", want deny or next`},
		{name: "unbound clientid", in: `{"jwks_url":"https://idp/jwks","username_claim":"sub","default_permissions":{"publish":["devices/{clientid}/up"]}}`, err: `config.default_permissions: publish[0] "devices/{clientid}/up" grants by {clientid}, but config.clientid_claim is not set: any token holder could connect under another client's name and get its topics; set clientid_claim to the claim the name must equal`},
		{name: "unbound username", in: `{"jwks_url":"https://idp/jwks","default_permissions":{"all":["users/{username}/#"]}}`, err: `config.default_permissions: all[0] "users/{username}/#" grants by {username}, but config.username_claim is not set: any token holder could connect under another client's name and get its topics; set username_claim to the claim the name must equal`},
		{name: "bound", in: `{"jwks_url":"https://idp/jwks","clientid_claim":"sub","default_permissions":{"publish":["devices/{clientid}/up"],"deny":["x/{username}"]}}`},
		{name: "empty audience list", in: `{"jwks_url":"https://idp/jwks","audience":[]}`, err: "config.audience: an empty list would check nothing: list the accepted audiences, or leave the key out"},
		{name: "empty issuer list", in: `{"jwks_url":"https://idp/jwks","issuer":[]}`, err: "config.issuer: an empty list would check nothing: list the accepted issuers, or leave the key out"},
		{name: "issuer type", in: `{"jwks_url":"https://idp/jwks","issuer":5}`, err: `config.issuer: want a string or a list of strings`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("got %q, want %q", got, tc.err)
			}
		})
	}
	s, _ := parseConfig([]byte(`{"jwks_url":"https://idp/jwks"}`))
	if s.algs["HS256"] || !s.algs["RS256"] || !s.algs["ES256"] {
		t.Fatalf("default algorithms without an HMAC secret: %v", s.algs)
	}
}

func TestDecide(t *testing.T) {
	var err error
	cfg, err = parseConfig([]byte(`{"hmac_secret":"0123456789abcdef0123456789abcdef","issuer":"https://idp","audience":"mqtt",
		"username_claim":"sub","default_permissions":{"subscribe":["public/#"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	jwks = keySet{}
	hs := map[string]any{"alg": "HS256"}
	conn := func(user, pass string) *propolis.Connect {
		return &propolis.Connect{ClientID: "c1", Username: user, Password: []byte(pass)}
	}
	res, why, end := decide(conn("alice", sign(t, hs, with(map[string]any{"acl": map[string]any{"publish": []string{"users/{username}/up"}, "deny": []string{"devices/{clientid}"}}}), secret)), now)
	want := []propolis.Permission{propolis.DenyTopic("devices/{clientid}"), propolis.AllowPublish("users/{username}/up")}
	if res.Decision != propolis.DecisionAllow || why != "" || fmt.Sprint(res.Permissions) != fmt.Sprint(want) {
		t.Fatalf("with acl claim: %+v %q", res, why)
	}
	if !end.Equal(now.Add(time.Hour + 30*time.Second)) {
		t.Fatalf("end %v, want exp plus the leeway", end)
	}
	res, _, _ = decide(conn("alice", sign(t, hs, good(), secret)), now)
	if fmt.Sprint(res.Permissions) != fmt.Sprint([]propolis.Permission{propolis.AllowSubscribe("public/#")}) {
		t.Fatalf("default permissions: %+v", res.Permissions)
	}
	for _, tc := range []struct{ name, user, pass, why string }{
		{"other user", "bob", sign(t, hs, good(), secret), `user name "bob", claim "sub" is "alice"`},
		{"not a token", "alice", "hunter2", "the password is not a JWT"},
		{"bad acl", "alice", sign(t, hs, with(map[string]any{"acl": map[string]any{"pub": []string{"x"}}}), secret), `claim "acl": want {"publish": [...], "subscribe": [...], "all": [...], "deny": [...]}: json: unknown field "pub"`},
		{"bad acl filter", "alice", sign(t, hs, with(map[string]any{"acl": map[string]any{"all": []string{"a/b#"}}}), secret), `claim "acl": all[0] "a/b#": level 2 ("b#"): a wildcard must be the whole level`},
		{"expired", "alice", sign(t, hs, with(map[string]any{"exp": now.Add(-time.Hour).Unix()}), secret), "expired at 2027-01-15T07:00:00Z"},
	} {
		res, why, end := decide(conn(tc.user, tc.pass), now)
		if !end.IsZero() {
			t.Errorf("%s: an end for a refused token", tc.name)
		}
		if res.Decision != propolis.DecisionDeny || why != tc.why {
			t.Errorf("%s: %+v, %q; want deny, %q", tc.name, res.Decision, why, tc.why)
		}
	}
	// A claim granting by {clientid} while the token does not bind the
	// client id (no clientid_claim): any holder could pick another
	// client's id and get its topics.
	res, why, _ = decide(conn("alice", sign(t, hs, with(map[string]any{"acl": map[string]any{"subscribe": []string{"devices/{clientid}/down"}}}), secret)), now)
	if res.Decision != propolis.DecisionDeny || !strings.Contains(why, `claim "acl": subscribe[0] "devices/{clientid}/down" grants by {clientid}, but config.clientid_claim is not set`) {
		t.Errorf("unbound {clientid}: %+v %q", res.Decision, why)
	}
	// An empty claim binds no name: refused even to a client sending none.
	res, why, _ = decide(conn("", sign(t, hs, with(map[string]any{"sub": ""}), secret)), now)
	if res.Decision != propolis.DecisionDeny || why != `claim "sub" (to match the user name) is empty` {
		t.Errorf("empty sub: %+v %q", res.Decision, why)
	}
	cfg.nextOnNotAToken = true
	if res, _, _ := decide(conn("alice", "hunter2"), now); res.Decision != propolis.DecisionNext {
		t.Errorf("not_a_token next: %+v", res)
	}
}

func TestExpiryKey(t *testing.T) {
	k := expiryKey(time.Unix(1_800_000_000, 0), "dev/1")
	// SHA-256("dev/1")
	if want := "exp/00000000001800000000/" + fmt.Sprintf("%x", sha256.Sum256([]byte("dev/1"))); k != want {
		t.Fatalf("key %q, want %q", k, want)
	}
	end, ok := parseExpiryKey(k)
	if !ok || end.Unix() != 1_800_000_000 {
		t.Fatalf("parsed %v %v", end, ok)
	}
	// Keys sort by end, whatever the client ids, and have one size
	// whatever the client id's (the storage's keys are at most 1,024
	// bytes, a client id may be 65,535).
	if !(expiryKey(time.Unix(999, 0), "zzz") < expiryKey(time.Unix(1000, 0), "aaa")) {
		t.Fatal("keys do not sort by end")
	}
	if long := expiryKey(time.Unix(999, 0), strings.Repeat("x", 65535)); len(long) != len(k) {
		t.Fatalf("key of %d bytes for a long client id", len(long))
	}
	for _, bad := range []string{"exp/123/x", "cur/00000000001800000000/x", "exp/0000000000180000000x/x"} {
		if _, ok := parseExpiryKey(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	// The record keeps the client id, spaces and all; records of the
	// former format (client id in the key) are still read.
	r := expiryRecord{authNs: 42, remoteAddr: "[::1]:5000", clientID: "a b/c"}
	if got, ok := parseExpiryRecord(k, r.encode()); !ok || got != r {
		t.Fatalf("record %+v %v, want %+v", got, ok, r)
	}
	old := "exp/00000000001800000000/dev/1"
	if got, ok := parseExpiryRecord(old, []byte("42 10.0.0.1:9")); !ok || got != (expiryRecord{42, "10.0.0.1:9", "dev/1"}) {
		t.Fatalf("old record %+v %v", got, ok)
	}
	for _, bad := range []string{"", "x 1.2.3.4:5 id", "42"} {
		if _, ok := parseExpiryRecord(k, []byte(bad)); ok {
			t.Errorf("record %q parsed", bad)
		}
	}
}

// TestRefusedWhenExpiryUnrecorded: with disconnect_on_expiry, a client
// whose token's expiry cannot be stored is refused (0x88), not let in to
// outlive its token. Natively every storage call fails (no broker).
func TestRefusedWhenExpiryUnrecorded(t *testing.T) {
	var err error
	if cfg, err = parseConfig([]byte(`{"hmac_secret":"0123456789abcdef0123456789abcdef","default_permissions":{"all":["#"]}}`)); err != nil {
		t.Fatal(err)
	}
	jwks = keySet{}
	tok := sign(t, map[string]any{"alg": "HS256"}, map[string]any{"sub": "a", "exp": time.Now().Add(time.Hour).Unix()}, secret)
	res := authenticate(&propolis.Connect{ClientID: "c1", Password: []byte(tok)})
	if res.Decision != propolis.DecisionDeny || res.Code != propolis.CodeServerUnavailable || res.Reason != "cannot record the token's expiry" {
		t.Fatalf("%+v, want deny 0x88", res)
	}
	cfg.disconnectOnExpiry = false
	if res := authenticate(&propolis.Connect{ClientID: "c1", Password: []byte(tok)}); res.Decision != propolis.DecisionAllow {
		t.Fatalf("without disconnect_on_expiry: %+v", res)
	}
}

// BenchmarkVerify measures a token's check per algorithm (natively; the
// broker runs it in Wasm, several times slower).
func BenchmarkVerify(b *testing.B) {
	hk, _ := hmacKey(secret)
	rk, _ := publicKey(&rsaKey.PublicKey)
	ek, _ := publicKey(&ecKey.PublicKey)
	for _, tc := range []struct {
		alg  string
		priv any
	}{{"HS256", secret}, {"RS256", rsaKey}, {"ES256", ecKey}} {
		b.Run(tc.alg, func(b *testing.B) {
			tok := sign(b, map[string]any{"alg": tc.alg}, good(), tc.priv)
			p := testPolicy()
			for i := 0; i < b.N; i++ {
				if _, err := verify(tok, []*key{hk, rk, ek}, p, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
