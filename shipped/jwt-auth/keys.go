package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// keyType is the kind of a verification key, as a JWK's kty names it.
type keyType string

// Key types.
const (
	ktyHMAC keyType = "oct"
	ktyRSA  keyType = "RSA"
	ktyEC   keyType = "EC"
)

// minRSABits is the smallest RSA modulus accepted (NIST SP 800-131A);
// maxRSABits the largest: every verification with a larger key costs more
// (a JWKS could otherwise make each CONNECT slow).
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// minHMACBytes is the shortest HMAC secret accepted: 256 bits, the
// length RFC 7518 section 3.2 asks for HS256.
const minHMACBytes = 32

// algorithm is one JWS algorithm jwt-auth verifies.
type algorithm struct {
	kty   keyType
	hash  crypto.Hash
	curve elliptic.Curve // EC only
}

// algorithms are the JWS algorithms jwt-auth verifies, by name. "none"
// is not one, and never will be.
var algorithms = map[string]algorithm{
	"HS256": {kty: ktyHMAC, hash: crypto.SHA256},
	"HS384": {kty: ktyHMAC, hash: crypto.SHA384},
	"HS512": {kty: ktyHMAC, hash: crypto.SHA512},
	"RS256": {kty: ktyRSA, hash: crypto.SHA256},
	"RS384": {kty: ktyRSA, hash: crypto.SHA384},
	"RS512": {kty: ktyRSA, hash: crypto.SHA512},
	"ES256": {kty: ktyEC, hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {kty: ktyEC, hash: crypto.SHA384, curve: elliptic.P384()},
}

// key is a verification key: an HMAC secret, or an RSA or EC public key,
// with the key id and algorithm its JWK named, if any.
type key struct {
	kid  string
	alg  string // "" when the key does not restrict it
	kty  keyType
	hmac []byte
	rsa  *rsa.PublicKey
	ec   *ecdsa.PublicKey
}

// fits reports whether k may verify a token signed with alg (named name):
// the key's type must be the algorithm's (no HMAC with a public key, no
// RSA key for ES256), an EC key must be on the algorithm's curve, and a
// key bound to an algorithm only verifies that one.
func (k *key) fits(name string, a algorithm) bool {
	if k.kty != a.kty || (k.alg != "" && k.alg != name) {
		return false
	}
	return a.kty != ktyEC || k.ec.Curve == a.curve
}

// hmacKey returns an HMAC secret as a key, refusing a short one.
func hmacKey(secret []byte) (*key, error) {
	if len(secret) < minHMACBytes {
		return nil, fmt.Errorf("the secret is %d bytes, want at least %d", len(secret), minHMACBytes)
	}
	return &key{kty: ktyHMAC, hmac: secret}, nil
}

// publicKey wraps a parsed public key, checking its size or curve.
func publicKey(pub any) (*key, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if n := p.N.BitLen(); n < minRSABits || n > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want %d to %d", n, minRSABits, maxRSABits)
		}
		return &key{kty: ktyRSA, rsa: p}, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return nil, fmt.Errorf("EC key on curve %s, want P-256 or P-384", p.Curve.Params().Name)
		}
		return &key{kty: ktyEC, ec: p}, nil
	}
	return nil, fmt.Errorf("a %T key, want RSA or EC", pub)
}

// parsePEM returns the public keys of a PEM text: PUBLIC KEY (PKIX), RSA
// PUBLIC KEY (PKCS #1) or CERTIFICATE blocks. A private key is refused:
// it does not belong in a broker's configuration.
func parsePEM(text string) ([]*key, error) {
	var keys []*key
	rest := []byte(text)
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var pub any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				pub = c.PublicKey
			}
		default:
			if strings.Contains(b.Type, "PRIVATE") {
				return nil, fmt.Errorf("block %d is a %s: give the public key only", n, b.Type)
			}
			return nil, fmt.Errorf("block %d is a %s, want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", n, b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("block %d (%s): %v", n, b.Type, err)
		}
		k, err := publicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("block %d (%s): %v", n, b.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block")
	}
	return keys, nil
}

// jwk is a JSON Web Key (RFC 7517) as far as jwt-auth reads it.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	K   string `json:"k"`   // oct
	N   string `json:"n"`   // RSA
	E   string `json:"e"`   // RSA
	Crv string `json:"crv"` // EC
	X   string `json:"x"`   // EC
	Y   string `json:"y"`   // EC
	D   string `json:"d"`   // a private key's; refused
}

// parseJWK returns the key a JWK holds.
func parseJWK(j *jwk) (*key, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q, want sig", j.Use)
	}
	if j.Alg != "" {
		a, ok := algorithms[j.Alg]
		if !ok {
			return nil, fmt.Errorf("alg %q is not one of %s", j.Alg, algNames())
		}
		if string(a.kty) != j.Kty {
			return nil, fmt.Errorf("alg %q does not go with kty %q", j.Alg, j.Kty)
		}
	}
	if j.D != "" {
		return nil, errors.New("a private key (it has \"d\"): give the public key only")
	}
	var k *key
	var err error
	switch keyType(j.Kty) {
	case ktyHMAC:
		var secret []byte
		if secret, err = b64(j.K, "k"); err == nil {
			k, err = hmacKey(secret)
		}
	case ktyRSA:
		var n, e []byte
		if n, err = b64(j.N, "n"); err != nil {
			break
		}
		if e, err = b64(j.E, "e"); err != nil {
			break
		}
		exp := new(big.Int).SetBytes(e)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 || exp.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent \"e\"")
		}
		k, err = publicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())})
	case ktyEC:
		k, err = ecJWK(j)
	default:
		return nil, fmt.Errorf("kty %q, want oct, RSA or EC", j.Kty)
	}
	if err != nil {
		return nil, err
	}
	k.kid, k.alg = j.Kid, j.Alg
	return k, nil
}

// ecJWK returns the EC public key of j, checking it is on its curve.
func ecJWK(j *jwk) (*key, error) {
	var curve elliptic.Curve
	switch j.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("crv %q, want P-256 or P-384", j.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64(j.X, "x")
	if err != nil {
		return nil, err
	}
	y, err := b64(j.Y, "y")
	if err != nil {
		return nil, err
	}
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("coordinates of %d and %d bytes, want %d for %s", len(x), len(y), size, j.Crv)
	}
	pub := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	if _, err := pub.ECDH(); err != nil { // checks the point is on the curve
		return nil, fmt.Errorf("(x, y) is not a point on %s", j.Crv)
	}
	return publicKey(pub)
}

// b64 decodes a JWK member, base64url without padding (RFC 7515).
func b64(s, member string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%q missing", member)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url: %v", member, err)
	}
	return b, nil
}

// parseJWKS returns the usable keys of a JWK set ({"keys": [...]}) and a
// note per key it skipped (an encryption key, an unknown type). A key
// set in which no key is usable is an error.
func parseJWKS(b []byte) (keys []*key, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWK set: %v", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`not a JWK set: no "keys" list`)
	}
	for i, raw := range set.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		k, err := parseJWK(&j)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d] (kid %q): %v", i, j.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("no usable key among %d (%s)", len(set.Keys), strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}
