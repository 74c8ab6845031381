package passwd

import (
	"errors"
	"strings"
	"testing"
)

func TestNewVerify(t *testing.T) {
	s, err := New([]byte("s3cret"), MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "$pbkdf2-sha512$i=1000$") {
		t.Fatalf("hash %q", s)
	}
	h, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if h.String() != s {
		t.Fatalf("round trip: %q != %q", h.String(), s)
	}
	if !h.Verify([]byte("s3cret")) {
		t.Error("right password refused")
	}
	for _, wrong := range []string{"", "s3cre", "s3cret ", "S3cret", "\xff\xfe"} {
		if h.Verify([]byte(wrong)) {
			t.Errorf("wrong password %q accepted", wrong)
		}
	}
	again, err := New([]byte("s3cret"), MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	if again == s {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

// TestVector checks the derivation against an independent implementation:
// Python's hashlib.pbkdf2_hmac("sha512", b"password", b"saltsaltsaltsalt",
// 1000), base64 without padding.
func TestVector(t *testing.T) {
	const s = "$pbkdf2-sha512$i=1000$c2FsdHNhbHRzYWx0c2FsdA$" + vectorKey
	h, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Verify([]byte("password")) || h.Verify([]byte("Password")) {
		t.Fatal("vector does not verify")
	}
}

func TestNewIterations(t *testing.T) {
	for _, n := range []int{-1, 1, MinIterations - 1, MaxIterations + 1} {
		if _, err := New([]byte("x"), n); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("iterations %d: err %v", n, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const salt, key = "c2FsdHNhbHRzYWx0c2FsdA", vectorKey
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "want $pbkdf2-sha512$i=N$SALT$HASH, got no leading $"},
		{"plain text", "secret", "want $pbkdf2-sha512$i=N$SALT$HASH, got no leading $"},
		{"mosquitto", "$7$101$abc$def", `unknown scheme "7" (want pbkdf2-sha512)`},
		{"fields", "$pbkdf2-sha512$i=1000$" + salt, "want 4 fields $pbkdf2-sha512$i=N$SALT$HASH, got 3"},
		{"param", "$pbkdf2-sha512$rounds=1000$" + salt + "$" + key, `parameters "rounds=1000": want i=ITERATIONS`},
		{"not number", "$pbkdf2-sha512$i=1e4$" + salt + "$" + key, `iterations "1e4": not a decimal number`},
		{"leading zero", "$pbkdf2-sha512$i=01000$" + salt + "$" + key, `iterations "01000": not a decimal number`},
		{"low", "$pbkdf2-sha512$i=999$" + salt + "$" + key, "iterations 999 out of range 1000-10000000"},
		{"salt b64", "$pbkdf2-sha512$i=1000$c2Fsd*$" + key, "salt: not base64 without padding"},
		{"salt padded", "$pbkdf2-sha512$i=1000$" + salt + "==$" + key, "salt: not base64 without padding"},
		{"salt short", "$pbkdf2-sha512$i=1000$c2FsdA$" + key, "salt of 4 bytes, want 8-64"},
		{"key b64", "$pbkdf2-sha512$i=1000$" + salt + "$%%", "hash: not base64 without padding"},
		{"key short", "$pbkdf2-sha512$i=1000$" + salt + "$c2FsdA", "hash of 4 bytes, want 16-128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !errors.Is(err, ErrFormat) || err.Error() != "bad password hash: "+tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkVerify measures one verification at DefaultIterations, natively
// (see the file-auth extension's benchmark for the figure inside Wasm).
func BenchmarkVerify(b *testing.B) {
	s, err := New([]byte("s3cret"), 0)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := Parse(s)
	for b.Loop() {
		if !h.Verify([]byte("s3cret")) {
			b.Fatal("refused")
		}
	}
}

// vectorKey is the key of TestVector's hash.
const vectorKey = "715rqIr5dXOVPpBhqqsugl037zT5bWJTWYmZtIcK8hBnisKpwfY7kokvwjDrNHqHhF50Pb7MD6HvkJwiDQw4ww"

func TestParseFile(t *testing.T) {
	good, err := New([]byte("pw"), MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	data := "# users\n\nalice:" + good + "\r\n  # indented comment\nbob: " + good + "\n"
	lines, users, err := ParseFile("passwd", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 5 || lines[2].User != "alice" || lines[4].User != "bob" || lines[4].Hash != good || lines[3].Text != "  # indented comment" {
		t.Fatalf("lines %+v", lines)
	}
	if len(users) != 2 || users["alice"].Line != 3 || users["bob"].Line != 5 || !users["bob"].Hash.Verify([]byte("pw")) {
		t.Fatalf("users %+v", users)
	}
	if _, users, err := ParseFile("passwd", []byte("\ufeffalice:"+good+"\n")); err != nil || users["alice"].Line != 1 {
		t.Fatalf("a byte-order mark went into the first user's name: %v %v", users, err)
	}
	if lines, users, err := ParseFile("passwd", nil); err != nil || len(lines) != 0 || len(users) != 0 {
		t.Fatalf("empty file: %v %v %v", lines, users, err)
	}

	bad := "alice:" + good + "\nno colon here\n:" + good + "\nbob:$7$101$x$y\nalice:" + good + "\n c :" + good + "\nok:" + good
	_, _, err = ParseFile("extensions/file-auth/passwd", []byte(bad))
	want := `extensions/file-auth/passwd:2: want USER:HASH, found no ":"
extensions/file-auth/passwd:3: empty user name
extensions/file-auth/passwd:4: user "bob": bad password hash: unknown scheme "7" (want pbkdf2-sha512)
extensions/file-auth/passwd:5: user "alice" is already on line 1
extensions/file-auth/passwd:6: user name " c " starts or ends with a blank`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestCheckUser(t *testing.T) {
	for _, tt := range []struct{ user, want string }{
		{"alice", ""},
		{"dev/1+#", ""},
		{"Zoë", ""},
		{"", "empty user name"},
		{strings.Repeat("x", MaxUser+1), "user name of 257 bytes, longer than 256"},
		{"a\xffb", "user name is not UTF-8"},
		{"a:b", `user name "a:b" contains ":"`},
		{"a\tb", `user name "a\tb" contains a control character`},
		{" a", `user name " a" starts or ends with a blank`},
		{"#a", `user name "#a" starts with "#", which makes its line a comment`},
	} {
		err := CheckUser(tt.user)
		if (err == nil) != (tt.want == "") || (err != nil && err.Error() != tt.want) {
			t.Errorf("%q: got %v, want %q", tt.user, err, tt.want)
		}
	}
}
