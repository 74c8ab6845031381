package weburl

import "testing"

func TestRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"https://idp.example.com/jwks":                      "https://idp.example.com/jwks",
		"https://user:pw@idp.example.com/jwks?token=s3cret": "https://xxxxx@idp.example.com/jwks?xxxxx",
		"http://idp:8080/certs#frag":                        "http://idp:8080/certs",
		"http://idp/certs?":                                 "http://idp/certs",
		"http://a b/%zz?k=v":                                "(unparsable URL)",
	} {
		if got := Redacted(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestPlainRemote(t *testing.T) {
	for u, want := range map[string]bool{
		"http://idp.example.com/jwks":  true,
		"http://10.0.0.5:8080/auth":    true,
		"HTTP://idp/jwks":              true,
		"https://idp.example.com/jwks": false,
		"http://127.0.0.1:9000/auth":   false,
		"http://[::1]:9000/auth":       false,
		"http://localhost/auth":        false,
		"http://auth.localhost/x":      false,
	} {
		if got := PlainRemote(u); got != want {
			t.Errorf("%q: %v, want %v", u, got, want)
		}
	}
}
