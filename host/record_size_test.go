package host

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// Records larger than an extension's buffer (ABI.md section 4, "Record
// size"): the guest's propolis_buffer answers 0, the host fails that one
// call closed (PUBACK 0x80) and keeps the instance, and the extension is
// not stopped however often it happens.

// publishSized publishes size bytes of 'x' at QoS 1 on topic and returns
// the PUBACK's reason code and reason string.
func publishSized(t *testing.T, c *paho.Client, topic string, size int) (byte, string) {
	t.Helper()
	resp, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: bytes.Repeat([]byte{'x'}, size)})
	if resp == nil {
		t.Fatalf("publish %d bytes to %s: no PUBACK: %v", size, topic, err)
	}
	return resp.ReasonCode, resp.Properties.ReasonString
}

// TestRecordTooLargeForFixedBuffer: wat_auth, built for ABI 1.0 with the
// fixed 60 KiB buffer of ABI.md's example, meets a 70 KiB PUBLISH more
// times than the crash-loop limit.
func TestRecordTooLargeForFixedBuffer(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	addr, h := startBroker(t, ext)
	c, _, err := v5(t, addr, "big", "wat", "secret", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2 * crashLoopFailures
	for i := 0; i < n; i++ {
		code, reason := publishSized(t, c, "free/big", 70<<10)
		if code != 0x80 || reason != "extension wat-auth cannot take a record this large" {
			t.Fatalf("publish %d of 70 KiB: %#x %q, want 0x80 (fail closed) and the reason", i, code, reason)
		}
	}
	st := statusOf(t, h, "wat-auth")
	if st.State != StateRunning || st.TooLarge != n || st.Errors != 0 {
		t.Fatalf("after %d records too large: %+v; want running, TooLarge %d, no errors", n, st, n)
	}
	// The same instances keep deciding what fits.
	if code, reason := publishSized(t, c, "readonly/x", 100); code != 0x87 || reason != "topic is read-only" {
		t.Fatalf("small publish to readonly/: %#x %q", code, reason)
	}
	if code, _ := publishSized(t, c, "free/small", 60<<10-200); code != 0 {
		t.Fatalf("publish that fits the 60 KiB buffer: %#x", code)
	}
	if st := statusOf(t, h, "wat-auth"); st.Errors != 0 {
		t.Fatalf("errors counted: %+v", st)
	}
}

// TestRecordSizeGoSDK: the Go SDK grows its buffer on request up to its
// MaxRecordSize (here 128 KiB) and refuses beyond it; publish-guard, with
// the default limit, sees a 100 KiB payload whole and decides on it.
func TestRecordSizeGoSDK(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		ext := t.TempDir()
		// A generous deadline: growing the buffer allocates in the guest,
		// slowly under the race detector.
		installExtension(t, ext, "bigrecord", buildGuest(t, "testdata/guests", "bigrecord"), 0, "limits:\n  call_deadline: 5s\n")
		addr, h := startBroker(t, ext)
		c, _, err := v5(t, addr, "big", "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{100, 70 << 10, 120 << 10} {
			if code, reason := publishSized(t, c, "t", size); code != 0 {
				t.Fatalf("publish of %d bytes: %#x %q, want allowed", size, code, reason)
			}
		}
		for i := 0; i < 2*crashLoopFailures; i++ {
			if code, reason := publishSized(t, c, "t", 200<<10); code != 0x80 || reason != "extension bigrecord cannot take a record this large" {
				t.Fatalf("publish %d of 200 KiB: %#x %q, want 0x80", i, code, reason)
			}
		}
		if code, _ := publishSized(t, c, "t", 120<<10); code != 0 {
			t.Fatalf("publish of 120 KiB after the refusals: %#x", code)
		}
		if st := statusOf(t, h, "bigrecord"); st.State != StateRunning || st.TooLarge != 2*crashLoopFailures || st.Errors != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("publish-guard", func(t *testing.T) {
		ext := t.TempDir()
		installExtension(t, ext, "allow-all", example(t, "allow-all"), 10, "")
		installExtension(t, ext, "publish-guard", example(t, "publish-guard"), 0, "config:\n  max_payload: 98304\nlimits:\n  call_deadline: 5s\n")
		addr, h := startBroker(t, ext)
		c, _, err := v5(t, addr, "big", "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if code, reason := publishSized(t, c, "a/b", 96<<10); code != 0 {
			t.Fatalf("96 KiB (the configured maximum): %#x %q", code, reason)
		}
		if code, reason := publishSized(t, c, "a/b", 100<<10); code != 0x97 || reason != "payload too large" {
			t.Fatalf("100 KiB: %#x %q, want the extension's own 0x97", code, reason)
		}
		if st := statusOf(t, h, "publish-guard"); st.TooLarge != 0 || st.Errors != 0 {
			t.Fatalf("status %+v", st)
		}
	})
}
