// Package passwd is the password hash format of Propolis's file-auth
// extension: one function to hash a password and one to verify it, shared
// by the extension (compiled to wasip1) and `propolis passwd` (native), so
// that both read and write the same lines. It imports only the standard
// library.
//
// A hash is a PHC string (the Password Hashing Competition's string
// format) of PBKDF2 with HMAC-SHA-512 (RFC 8018):
//
//	$pbkdf2-sha512$i=ITERATIONS$SALT$HASH
//
// where SALT (16 random bytes) and HASH (64 bytes) are standard base64
// without padding. The iteration count is stored in each hash, so a file
// may mix counts and raising DefaultIterations never breaks old lines.
package passwd

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scheme is the PHC identifier of the one algorithm this package writes
// and reads.
const Scheme = "pbkdf2-sha512"

// DefaultIterations is the PBKDF2 iteration count New uses when given 0:
// NIST SP 800-63B's minimum for PBKDF2. One verification costs about 7 ms
// natively but 0.1 to 0.15 s inside the broker's Wasm runtime (Go's wasm
// code runs SHA-512 about 15 times slower), which keeps it well inside the
// default authenticate deadline (2 s) on a busy machine; RATIONALE.md
// ("Why PBKDF2-SHA-512 at 10,000 iterations for file-auth?") has the
// figures.
const DefaultIterations = 10_000

// Bounds on the iteration count of a hash this package reads or writes.
// Below MinIterations a hash is too cheap to slow an attacker; above
// MaxIterations one verification would outlast any authenticate deadline.
const (
	MinIterations = 1_000
	MaxIterations = 10_000_000
)

// Sizes of the salt and of the derived key, in bytes.
const (
	SaltSize = 16
	KeySize  = 64
)

// ErrFormat wraps every problem with a hash string that Parse finds.
var ErrFormat = errors.New("bad password hash")

// Hash is one parsed password hash.
type Hash struct {
	// Iterations is the PBKDF2 iteration count.
	Iterations int
	// Salt is the per-user random salt.
	Salt []byte
	// Key is the derived key.
	Key []byte
}

// New hashes password with a fresh random salt and iterations rounds of
// PBKDF2-HMAC-SHA-512 (DefaultIterations when 0) and returns the PHC
// string. It fails when iterations is out of MinIterations-MaxIterations
// or the system has no randomness.
func New(password []byte, iterations int) (string, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return "", fmt.Errorf("iterations %d out of range %d-%d", iterations, MinIterations, MaxIterations)
	}
	salt := make([]byte, SaltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read random salt: %w", err)
	}
	key, err := derive(password, salt, iterations, KeySize)
	if err != nil {
		return "", err
	}
	return Hash{Iterations: iterations, Salt: salt, Key: key}.String(), nil
}

// String returns h as a PHC string.
func (h Hash) String() string {
	enc := base64.RawStdEncoding
	return "$" + Scheme + "$i=" + strconv.Itoa(h.Iterations) + "$" + enc.EncodeToString(h.Salt) + "$" + enc.EncodeToString(h.Key)
}

// Parse reads a PHC string written by New. The error wraps ErrFormat and
// says which part is wrong; it never quotes the salt or key.
func Parse(s string) (Hash, error) {
	bad := func(format string, a ...any) (Hash, error) {
		return Hash{}, fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, a...))
	}
	if !strings.HasPrefix(s, "$") {
		return bad("want $%s$i=N$SALT$HASH, got no leading $", Scheme)
	}
	parts := strings.Split(s[1:], "$")
	if parts[0] != Scheme {
		return bad("unknown scheme %q (want %s)", parts[0], Scheme)
	}
	if len(parts) != 4 {
		return bad("want 4 fields $%s$i=N$SALT$HASH, got %d", Scheme, len(parts))
	}
	param, ok := strings.CutPrefix(parts[1], "i=")
	if !ok {
		return bad("parameters %q: want i=ITERATIONS", parts[1])
	}
	iter, err := strconv.Atoi(param)
	if err != nil || strconv.Itoa(iter) != param {
		return bad("iterations %q: not a decimal number", param)
	}
	if iter < MinIterations || iter > MaxIterations {
		return bad("iterations %d out of range %d-%d", iter, MinIterations, MaxIterations)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return bad("salt: not base64 without padding")
	}
	if len(salt) < 8 || len(salt) > 64 {
		return bad("salt of %d bytes, want 8-64", len(salt))
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[3])
	if err != nil {
		return bad("hash: not base64 without padding")
	}
	if len(key) < 16 || len(key) > 128 {
		return bad("hash of %d bytes, want 16-128", len(key))
	}
	return Hash{Iterations: iter, Salt: salt, Key: key}, nil
}

// Verify reports whether password hashes to h. It costs h.Iterations
// rounds of HMAC-SHA-512 whatever the answer, and compares in constant
// time.
func (h Hash) Verify(password []byte) bool {
	key, err := derive(password, h.Salt, h.Iterations, len(h.Key))
	if err != nil {
		return false
	}
	return hmac.Equal(key, h.Key)
}

// derive runs PBKDF2-HMAC-SHA-512, deriving size bytes (KeySize for a
// new hash, as many as the stored key holds for a verification).
func derive(password, salt []byte, iterations, size int) ([]byte, error) {
	key, err := pbkdf2.Key(sha512.New, string(password), salt, iterations, size)
	if err != nil {
		return nil, fmt.Errorf("pbkdf2: %w", err)
	}
	return key, nil
}
