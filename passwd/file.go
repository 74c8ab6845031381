package passwd

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The password file: one user a line, as
//
//	USER:HASH
//
// where HASH is a string Parse reads. Blank lines and lines whose first
// non-blank character is "#" are ignored (kept as they are by `propolis
// passwd`). A user name is 1 to 256 bytes of UTF-8 without ":", control
// characters, blanks at either end or a leading "#"; each user appears
// once.

// MaxUser is the longest user name, in bytes.
const MaxUser = 256

// Line is one line of a password file: a user, or (User == "") a blank or
// comment line kept as Text.
type Line struct {
	// User is the user name; "" for a blank or comment line.
	User string
	// Hash is the user's hash as written (valid: Parse accepted it).
	Hash string
	// Text is the line without its line ending.
	Text string
}

// Entry is a user's parsed hash.
type Entry struct {
	// Hash is the user's parsed hash.
	Hash Hash
	// Line is the 1-based line number of the user in the file.
	Line int
}

// CheckUser reports what is wrong with a user name, or nil.
func CheckUser(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("empty user name")
	case len(user) > MaxUser:
		return fmt.Errorf("user name of %d bytes, longer than %d", len(user), MaxUser)
	case !utf8.ValidString(user):
		return fmt.Errorf("user name is not UTF-8")
	case strings.Contains(user, ":"):
		return fmt.Errorf("user name %q contains \":\"", user)
	case strings.IndexFunc(user, unicode.IsControl) >= 0:
		return fmt.Errorf("user name %q contains a control character", user)
	case strings.TrimSpace(user) != user:
		return fmt.Errorf("user name %q starts or ends with a blank", user)
	case strings.HasPrefix(user, "#"):
		return fmt.Errorf("user name %q starts with \"#\", which makes its line a comment", user)
	}
	return nil
}

// ParseFile reads a password file's bytes. name (the file's name, for
// errors) prefixes every problem as NAME:LINE: problem; all problems are
// returned, one a line, in one error. The lines come back in file order,
// comments included, and users maps each user to its entry. A leading
// UTF-8 byte-order mark is skipped (and so not written back).
func ParseFile(name string, data []byte) (lines []Line, users map[string]Entry, err error) {
	users = map[string]Entry{}
	var probs []string
	// A byte-order mark (some Windows editors save one) is not part of
	// the first user's name.
	text := strings.TrimSuffix(strings.TrimPrefix(string(data), "\ufeff"), "\n")
	if text == "" {
		return nil, users, nil
	}
	n := 0
	for raw := range strings.SplitSeq(text, "\n") {
		n++
		l := strings.TrimSuffix(raw, "\r")
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			lines = append(lines, Line{Text: l})
			continue
		}
		user, hash, ok := strings.Cut(l, ":")
		bad := func(format string, a ...any) {
			probs = append(probs, fmt.Sprintf("%s:%d: %s", name, n, fmt.Sprintf(format, a...)))
		}
		if !ok {
			bad("want USER:HASH, found no \":\"")
			lines = append(lines, Line{Text: l})
			continue
		}
		if err := CheckUser(user); err != nil {
			bad("%v", err)
			lines = append(lines, Line{Text: l})
			continue
		}
		hash = strings.TrimSpace(hash)
		h, err := Parse(hash)
		if err != nil {
			bad("user %q: %v", user, err)
		} else if prev, dup := users[user]; dup {
			bad("user %q is already on line %d", user, prev.Line)
		} else {
			users[user] = Entry{Hash: h, Line: n}
		}
		lines = append(lines, Line{User: user, Hash: hash, Text: l})
	}
	if len(probs) > 0 {
		return nil, nil, fmt.Errorf("%s", strings.Join(probs, "\n"))
	}
	return lines, users, nil
}
