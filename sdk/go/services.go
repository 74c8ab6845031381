package propolis

import "errors"

// Host services (ABI.md section 5, "Host services"): functions that act on
// the broker. Each needs its service granted in the manifest's services
// list, and every call passes the extension's rate limit. They may be
// called from Start, Authenticate, AuthorizePublish, AuthorizeSubscribe,
// OnEvent and Tick; elsewhere (Stop, package init) they return ErrNotAvailable.
//
// They fail with one of the errors below; test with errors.Is:
//
//	if errors.Is(err, propolis.ErrRateLimited) { /* back off */ }

// The errors of host services, one per ABI.md status code.
var (
	// ErrInvalidArgument: a parameter is out of range or malformed.
	ErrInvalidArgument = errors.New("propolis: INVALID_ARGUMENT")
	// ErrNotAvailable: not callable from the running handler.
	ErrNotAvailable = errors.New("propolis: NOT_AVAILABLE")
	// ErrNotPermitted: the manifest does not grant the service.
	ErrNotPermitted = errors.New("propolis: NOT_PERMITTED")
	// ErrRateLimited: the extension is over its service-call rate; the
	// call did nothing. Back off or drop the work.
	ErrRateLimited = errors.New("propolis: RATE_LIMITED")
	// ErrNotFound: no such client, session, key or message.
	ErrNotFound = errors.New("propolis: NOT_FOUND")
	// ErrInternal: the broker failed; its log says why.
	ErrInternal = errors.New("propolis: INTERNAL")
	// ErrTooLarge: a size limit was exceeded.
	ErrTooLarge = errors.New("propolis: TOO_LARGE")
)

// statusErr returns the error of a negative status code, nil for OK.
func statusErr(code int32) error {
	switch code {
	case statusInvalidArgument:
		return ErrInvalidArgument
	case statusNotAvailable:
		return ErrNotAvailable
	case statusNotPermitted:
		return ErrNotPermitted
	case statusRateLimited:
		return ErrRateLimited
	case statusNotFound:
		return ErrNotFound
	case statusInternal:
		return ErrInternal
	case statusTooLarge:
		return ErrTooLarge
	}
	if code >= 0 {
		return nil
	}
	return errors.New("propolis: unknown status " + itoa(int64(code)))
}

// resultBuf receives the results of host services. Handlers run one at a
// time per instance, so one buffer serves every call; it grows to the
// largest result seen.
var resultBuf = make([]byte, 4096)

// withResult makes a host service call that answers data: call gets the
// buffer to write into and returns the result's length or a status. A
// result larger than the buffer is fetched with take_result into a larger
// one. The result is a copy the caller owns.
func withResult(call func(out []byte) int32) ([]byte, error) {
	n := call(resultBuf)
	if n < 0 {
		return nil, statusErr(n)
	}
	if int(n) > len(resultBuf) {
		resultBuf = make([]byte, n)
		if m := svcTakeResult(resultBuf); m < 0 {
			return nil, statusErr(m)
		} else if m != n {
			return nil, ErrInternal
		}
	}
	return append([]byte(nil), resultBuf[:n]...), nil
}

// resultReader reads a host service's result: fields as in records,
// without the header.
func resultReader(res []byte) reader { return reader{b: res} }

// appendU32 appends v as a little-endian u32 field.
func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// appendStr appends s as a str (or bytes) field: its length, then it.
func appendStr(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}
