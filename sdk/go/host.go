package propolis

// hostAPI is the host functions of ABI.md section 5. On wasip1 it calls
// the imports of module propolis_v1; elsewhere (native unit tests) a
// stand-in logs to standard error. Tests of the SDK replace it with a
// recorder.
type hostAPI interface {
	log(level Level, msg string) int32
	setReason(reason string) int32
	declareCallbacks(mask uint32) int32
	addPublishFilter(filter string) int32
	setSessionExpiry(seconds uint32) int32
	setReceiveMaximum(n uint16) int32
	setKeepalive(seconds uint16) int32
	setMaxQueued(n uint16) int32
	setOverloadThrottling(enabled bool) int32
	addConnackUserProperty(key, value string) int32
	addPermission(perm []byte) int32
	// The interceptor functions (ABI 1.2): value is passed as it is, as a
	// view (a payload is not copied on the guest side).
	packetSet(field uint32, value string) int32
	packetSetInt(field uint32, value int64) int32
	addInterceptFilter(callbacks uint32, filter string) int32
	addInterceptClient(pattern string) int32
}

// statusName returns the ABI.md name of a host function's status code.
func statusName(code int32) string {
	if code > 0 {
		return "OK"
	}
	for _, s := range statusNames {
		if s.code == code {
			return s.name
		}
	}
	return "unknown status " + itoa(int64(code))
}

// itoa formats n in decimal without fmt.
func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	u := uint64(n)
	if n < 0 {
		u = uint64(-n)
	}
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	if n < 0 {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
