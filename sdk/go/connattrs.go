package propolis

// Connection attributes (ABI.md section 5, service
// "connection_attributes"): small values kept in the broker's memory for
// one network connection, gone when it ends. They always act on the
// connection the running handler is about: the connecting client in
// Authenticate, the client being authorized in AuthorizePublish and
// AuthorizeSubscribe, the event's connection in OnEvent. Elsewhere (Start)
// they return ErrNotAvailable.
//
// What Authenticate writes stays with the connection once it is accepted:
// stash what authentication learnt (an identity, a token's claims) for
// the authorizations that follow. A new connection of the same client id
// (a take-over) starts empty. OnEvent runs after the fact: once the
// connection has ended (its disconnect event, or any event handled late)
// reads answer what it held then, and writes return ErrNotFound.
//
// Keys are 1 to 256 bytes of UTF-8, values at most 10,240 bytes, and a
// connection's keys and values at most 65,536 bytes in all (ErrTooLarge).
// Every extension sees every attribute of a connection: prefix keys with
// the extension's id to keep them apart.

// ConnectionAttribute returns the value of key for the current connection.
// ErrNotFound: no such key.
func ConnectionAttribute(key string) ([]byte, error) {
	return withResult(func(out []byte) int32 { return svcConnectionAttributeGet(key, out) })
}

// ConnectionAttributes returns every attribute of the current connection,
// sorted by key, each with the time it was written (the broker's clock).
func ConnectionAttributes() ([]Attribute, error) {
	res, err := withResult(func(out []byte) int32 { return svcConnectionAttributeGetAll(out) })
	if err != nil {
		return nil, err
	}
	return decodeAttributes(res)
}

// PutConnectionAttribute sets key to value for the current connection.
// ErrNotFound: the connection has ended.
func PutConnectionAttribute(key string, value []byte) error {
	return statusErr(svcConnectionAttributePut(key, value))
}

// RemoveConnectionAttribute removes key from the current connection; a
// missing key is not an error. ErrNotFound: the connection has ended.
func RemoveConnectionAttribute(key string) error {
	return statusErr(svcConnectionAttributeRemove(key))
}
