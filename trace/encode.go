package trace

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendLine appends l as encoding/json writes it (same keys, order,
// omitted fields and escaping; TestAppendLineIsJSONMarshal compares the
// two) without reflection: the packet path encodes every packet a
// recording takes, and json.Marshal spent most of that time reflecting.
func appendLine(b []byte, l *Line) []byte {
	b = append(b, `{"time":"`...)
	b = l.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","client_id":`...)
	b = appendString(b, l.ClientID)
	b = append(b, `,"direction":`...)
	b = appendString(b, l.Direction)
	b = append(b, `,"type":`...)
	b = appendString(b, l.Type)
	if l.PacketID != 0 {
		b = appendUint(b, "packet_id", uint64(l.PacketID))
	}
	if l.Topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, l.Topic)
	}
	if l.QoS != nil {
		b = appendUint(b, "qos", uint64(*l.QoS))
	}
	b = appendTrue(b, "retain", l.Retain)
	b = appendTrue(b, "dup", l.Dup)
	if l.PayloadSize != nil {
		b = append(b, `,"payload_size":`...)
		b = strconv.AppendInt(b, int64(*l.PayloadSize), 10)
	}
	if len(l.Payload) > 0 {
		b = append(b, `,"payload":`...)
		b = appendBase64(b, l.Payload)
	}
	if l.PayloadText != nil {
		b = append(b, `,"payload_text":`...)
		b = appendString(b, *l.PayloadText)
	}
	if l.ReasonCode != nil {
		b = appendUint(b, "reason_code", uint64(*l.ReasonCode))
	}
	if l.ReasonString != "" {
		b = append(b, `,"reason_string":`...)
		b = appendString(b, l.ReasonString)
	}
	b = appendTrue(b, "session_present", l.SessionPresent)
	if len(l.Filters) > 0 {
		b = append(b, `,"filters":[`...)
		for i, f := range l.Filters {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"filter":`...)
			b = appendString(b, f.Filter)
			if f.QoS != 0 {
				b = appendUint(b, "qos", uint64(f.QoS))
			}
			b = appendTrue(b, "no_local", f.NoLocal)
			b = appendTrue(b, "retain_as_published", f.RetainAsPublished)
			if f.RetainHandling != 0 {
				b = appendUint(b, "retain_handling", uint64(f.RetainHandling))
			}
			if f.Identifier != 0 {
				b = append(b, `,"identifier":`...)
				b = strconv.AppendInt(b, int64(f.Identifier), 10)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(l.ReasonCodes) > 0 {
		b = append(b, `,"reason_codes":`...)
		b = appendInts(b, l.ReasonCodes)
	}
	if l.ProtocolVersion != 0 {
		b = appendUint(b, "protocol_version", uint64(l.ProtocolVersion))
	}
	if l.Username != "" {
		b = append(b, `,"username":`...)
		b = appendString(b, l.Username)
	}
	b = appendTrue(b, "password_set", l.PasswordSet)
	if l.KeepAlive != nil {
		b = appendUint(b, "keepalive", uint64(*l.KeepAlive))
	}
	if l.CleanStart != nil {
		b = append(b, `,"clean_start":`...)
		b = strconv.AppendBool(b, *l.CleanStart)
	}
	if l.WillTopic != "" {
		b = append(b, `,"will_topic":`...)
		b = appendString(b, l.WillTopic)
	}
	if l.WillQoS != nil {
		b = appendUint(b, "will_qos", uint64(*l.WillQoS))
	}
	b = appendTrue(b, "will_retain", l.WillRetain)
	if len(l.Properties) > 0 {
		b = append(b, `,"properties":{`...)
		keys := make([]string, 0, len(l.Properties))
		for k := range l.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, l.Properties[k])
		}
		b = append(b, '}')
	}
	if len(l.UserProperties) > 0 {
		b = append(b, `,"user_properties":[`...)
		for i, u := range l.UserProperties {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":`...)
			b = appendString(b, u.Key)
			b = append(b, `,"value":`...)
			b = appendString(b, u.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendUint appends ,"key":v.
func appendUint(b []byte, key string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

// appendTrue appends ,"key":true when v is (false is omitted).
func appendTrue(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, `":true`...)
}

// appendBase64 appends p as a JSON string in standard base64.
func appendBase64(b []byte, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendInts appends a JSON array of v.
func appendInts(b []byte, v []int) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, n := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return append(b, ']')
}

// appendValue appends one property value: the types
// broker.TracedPacket.Properties holds, anything else through
// encoding/json.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case []byte:
		if v == nil {
			return append(b, "null"...)
		}
		return appendBase64(b, v)
	case []int:
		return appendInts(b, v)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// hexDigits are the digits of a \u00XX escape.
const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does:
// quotes, backslashes and control characters escaped (\b, \f, \n, \r, \t
// short), <, > and & as \u003c, \u003e, \u0026, invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
