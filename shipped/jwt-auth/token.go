package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"
)

// maxToken bounds the token jwt-auth parses, in bytes.
const maxToken = 16 << 10

// errUnknownKid reports a token whose kid names no key: the key set may
// have rotated, so a JWKS fetch may find it.
var errUnknownKid = errors.New("unknown key id")

// policy is what a valid token must satisfy, from the configuration.
type policy struct {
	algs      map[string]bool // the algorithms accepted
	issuers   []string        // iss must be one of them, if any
	audiences []string        // aud must hold one of them, if any
	leeway    time.Duration   // allowed clock skew for exp and nbf
	// requireExp refuses a token without exp.
	requireExp bool
}

// header is a JOSE header, as far as jwt-auth reads it.
type header struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

// parseHeader reads a JOSE header. Member names are case-sensitive (RFC
// 7515 section 4; encoding/json would match "ALG" to alg), and a name
// given twice is refused (section 5.2 lets a parser reject it; taking one
// of two algs or kids is how parsers get confused).
func parseHeader(raw []byte) (header, error) {
	var h header
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return h, errors.New("header is not a JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.Token() // {
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		name, ok := t.(string)
		if err != nil || !ok {
			return h, errors.New("header is not a JSON object")
		}
		if seen[name] {
			return h, fmt.Errorf("header member %q given twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return h, errors.New("header is not a JSON object")
		}
	}
	for name, v := range members {
		var dst any
		switch name {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		case "crit":
			dst = &h.Crit
		default:
			for _, known := range []string{"alg", "kid", "typ", "crit"} {
				if strings.EqualFold(name, known) {
					return h, fmt.Errorf("header member %q: member names are case-sensitive (want %q)", name, known)
				}
			}
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return h, fmt.Errorf("header member %q: %v", name, err)
		}
	}
	return h, nil
}

// claims is a verified token's claims set, numbers as json.Number.
type claims map[string]any

// looksLikeJWT reports whether a password has the shape of a compact JWS:
// three base64url parts.
func looksLikeJWT(p []byte) bool {
	if len(p) == 0 || len(p) > maxToken || bytes.Count(p, []byte{'.'}) != 2 {
		return false
	}
	for _, c := range p {
		if !(c == '.' || c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// verify checks token's signature with keys and its claims with p at
// now, and returns its claims. The error says what was wrong, for the
// broker log; errUnknownKid is returned (wrapped) when the token's kid
// names none of keys.
func verify(token string, keys []*key, p *policy, now time.Time) (claims, error) {
	if len(token) > maxToken {
		return nil, fmt.Errorf("token of %d bytes, more than %d", len(token), maxToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT (want three dot-separated parts)")
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("header is not base64url")
	}
	h, err := parseHeader(rawHeader)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(h.Alg, "none") || h.Alg == "" {
		return nil, errors.New(`unsigned token (alg "none") refused`)
	}
	alg, known := algorithms[h.Alg]
	if !known || !p.algs[h.Alg] {
		return nil, fmt.Errorf("alg %q not accepted (accepted: %s)", h.Alg, strings.Join(sortedKeys(p.algs), ", "))
	}
	if len(h.Crit) > 0 {
		return nil, fmt.Errorf("critical header extensions %q not understood", h.Crit)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("signature is not base64url")
	}
	signed := token[:len(parts[0])+1+len(parts[1])]
	// Keys named by the token's kid first, then the keys without a kid
	// (configured ones), which verify a token whatever its kid says.
	var named, unnamed []*key
	for _, k := range keys {
		switch {
		case !k.fits(h.Alg, alg):
		case h.Kid != "" && k.kid == h.Kid:
			named = append(named, k)
		case h.Kid == "" || k.kid == "":
			unnamed = append(unnamed, k)
		}
	}
	verified := false
	for _, k := range append(named, unnamed...) {
		if checkSignature(k, alg, []byte(signed), sig) {
			verified = true
			break
		}
	}
	switch {
	case verified:
	case h.Kid != "" && len(named) == 0 && alg.kty != ktyHMAC:
		// Maybe a key the cached JWK set does not have yet (a JWK set
		// never brings an HMAC secret, so not for HS*).
		return nil, fmt.Errorf("%w %q for alg %s", errUnknownKid, h.Kid, h.Alg)
	case len(named)+len(unnamed) == 0:
		return nil, fmt.Errorf("no key for alg %s", h.Alg)
	default:
		return nil, errors.New("bad signature")
	}
	rawClaims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("payload is not base64url")
	}
	d := json.NewDecoder(bytes.NewReader(rawClaims))
	d.UseNumber()
	var c claims
	if err := d.Decode(&c); err != nil || c == nil {
		return nil, errors.New("payload is not a JSON object")
	}
	if err := c.check(p, now); err != nil {
		return nil, err
	}
	return c, nil
}

// checkSignature reports whether sig is alg's signature of signed by k.
func checkSignature(k *key, alg algorithm, signed, sig []byte) bool {
	switch alg.kty {
	case ktyHMAC:
		m := hmac.New(alg.hash.New, k.hmac)
		m.Write(signed)
		return hmac.Equal(m.Sum(nil), sig)
	case ktyRSA:
		d := alg.hash.New()
		d.Write(signed)
		return rsa.VerifyPKCS1v15(k.rsa, alg.hash, d.Sum(nil), sig) == nil
	case ktyEC:
		// JWS ECDSA signatures are R || S, each the curve's size
		// (RFC 7518 section 3.4), not ASN.1.
		size := (alg.curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		d := alg.hash.New()
		d.Write(signed)
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k.ec, d.Sum(nil), r, s)
	}
	return false
}

// check checks the registered claims exp, nbf, iss and aud against p at
// now.
func (c claims) check(p *policy, now time.Time) error {
	exp, hasExp, err := c.numericDate("exp")
	if err != nil {
		return err
	}
	switch {
	case !hasExp && p.requireExp:
		return errors.New(`no "exp" claim (config.require_exp is true)`)
	case hasExp && !now.Before(exp.Add(p.leeway)):
		return fmt.Errorf("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	nbf, hasNbf, err := c.numericDate("nbf")
	if err != nil {
		return err
	}
	if hasNbf && now.Add(p.leeway).Before(nbf) {
		return fmt.Errorf("not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if len(p.issuers) > 0 {
		iss, _ := c["iss"].(string)
		if !slices.Contains(p.issuers, iss) {
			return fmt.Errorf("issuer %q not accepted", iss)
		}
	}
	if len(p.audiences) > 0 {
		var aud []string
		switch a := c["aud"].(type) {
		case string:
			aud = []string{a}
		case []any:
			for _, v := range a {
				if s, ok := v.(string); ok {
					aud = append(aud, s)
				}
			}
		}
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(p.audiences, a) }) {
			return fmt.Errorf("audience %q not accepted", aud)
		}
	}
	return nil
}

// numericDate returns the NumericDate claim name (seconds since the
// epoch, maybe with a fraction), whether the token has it, and an error
// when it is not a number.
func (c claims) numericDate(name string) (time.Time, bool, error) {
	v, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, fmt.Errorf("claim %q is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e12 {
		return time.Time{}, false, fmt.Errorf("claim %q is not a date", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// lookup returns the claim named name: the top-level claim of that exact
// name (which may hold dots, as in "https://example.com/acl"), or else
// the dotted path through nested objects ("realm_access.mqtt").
func (c claims) lookup(name string) (any, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	var cur any = map[string]any(c)
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// str returns the claim name as a string: a JSON string, or a number as
// written; false when absent or of another type.
func (c claims) str(name string) (string, bool) {
	switch v, _ := c.lookup(name); v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// algNames lists every algorithm jwt-auth verifies.
func algNames() string {
	all := map[string]bool{}
	for name := range algorithms {
		all[name] = true
	}
	return strings.Join(sortedKeys(all), ", ")
}
