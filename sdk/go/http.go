package propolis

import "strings"

// Outbound HTTP (ABI.md section 5, http_request; service "http"): lets an
// authenticator ask its identity service. The manifest lists the hosts the
// extension may call (http.hosts) and grants the service; anything else is
// ErrNotPermitted. Callable from Start, Authenticate and OnEvent; from
// AuthorizePublish and AuthorizeSubscribe it is ErrNotAvailable (a round
// trip per message would hold up the client).

// HTTPHeader is one header of a request or a response.
type HTTPHeader struct {
	Name, Value string
}

// HTTPRequest is a request for DoHTTP.
type HTTPRequest struct {
	// Method is the HTTP method; "" is GET.
	Method string
	// URL is an http:// or https:// URL whose host the manifest's
	// http.hosts allows.
	URL string
	// Header lists the request's headers, at most 64. Host,
	// Content-Length, Connection and Transfer-Encoding are set by the
	// broker.
	Header []HTTPHeader
	// Body is the request's body; the request is at most 1 MiB in all.
	Body []byte
}

// HTTPResponse is the answer DoHTTP got.
type HTTPResponse struct {
	// Status is the HTTP status code (200, 403, ...).
	Status int
	// Header lists the response's headers, names in canonical form
	// ("Content-Type"), sorted; a header with several values appears once
	// per value.
	Header []HTTPHeader
	// Body is the response's body (decompressed).
	Body []byte
}

// Get returns the first value of the header name (in any case), or "".
func (r *HTTPResponse) Get(name string) string {
	for _, h := range r.Header {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// DoHTTP sends req and returns the response, whatever its status. It
// returns by nine tenths of the running handler's deadline (the
// manifest's limits.authenticate_deadline in Authenticate), leaving the
// rest for the handler to answer. Errors:
//
//   - ErrNotPermitted: the service is not granted, or the URL's host (or a
//     redirect's) is not in http.hosts;
//   - ErrInternal: no answer: the host is down or unknown, TLS failed, or
//     the time ran out (the broker log says which). Fail closed;
//   - ErrTooLarge: the request beyond 1 MiB, or the response beyond the
//     manifest's http.max_response;
//   - ErrInvalidArgument: a malformed request;
//   - ErrRateLimited, ErrNotAvailable: as for every host service.
func DoHTTP(req *HTTPRequest) (*HTTPResponse, error) {
	n := 4 + len(req.Method) + 4 + len(req.URL) + 4 + 4 + len(req.Body)
	for _, h := range req.Header {
		n += 8 + len(h.Name) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = appendStr(b, req.Method)
	b = appendStr(b, req.URL)
	b = appendU32(b, uint32(len(req.Header)))
	for _, h := range req.Header {
		b = appendStr(b, h.Name)
		b = appendStr(b, h.Value)
	}
	b = appendU32(b, uint32(len(req.Body)))
	b = append(b, req.Body...)
	res, err := withResult(func(out []byte) int32 { return svcHTTPRequest(b, out) })
	if err != nil {
		return nil, err
	}
	r := resultReader(res)
	resp := &HTTPResponse{Status: int(r.u32())}
	count := r.count(8)
	resp.Header = make([]HTTPHeader, 0, count)
	for i := 0; i < count; i++ {
		resp.Header = append(resp.Header, HTTPHeader{Name: r.str(), Value: r.str()})
	}
	resp.Body = r.bytes()
	if r.err != nil {
		return nil, ErrInternal
	}
	return resp, nil
}

// appendU32 appends v little-endian.
