/*
 * propolis.h: the Propolis extension SDK for C (ABI 1.2), header only.
 *
 * Written from abi/ABI.md. The numbers and names (callback bits, decisions,
 * status codes, record kinds, fields) and the host function imports are in
 * propolis_abi.h, generated from the broker's table; this file adds the
 * record decoders, the ABI marker and buffer exports, helpers for the host
 * functions, and one macro per callback that defines its export.
 *
 * Build for wasm32-wasi with clang:
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o ext.wasm ext.c
 *
 * The decoders also compile natively (gcc or clang), which is how the
 * SDK's tests check them against abi/testdata; the exports and host
 * functions exist only when compiling for wasm.
 *
 * Strings and byte strings of a record (propolis_bytes) point into the
 * record buffer: they are valid until the callback returns. Copy what you
 * keep. Nothing here is NUL-terminated.
 */
#ifndef PROPOLIS_H
#define PROPOLIS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "propolis_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

/* A string or byte string: len bytes at ptr, not NUL-terminated. */
typedef struct {
	const uint8_t *ptr;
	uint32_t len;
} propolis_bytes;

/* A list of a record (list<str>, list<str,str>, list<filter>): count
 * entries in [ptr, end). Walk it with propolis_iter and the
 * propolis_next_* functions; the decoder has checked it is well formed. */
typedef struct {
	const uint8_t *ptr, *end;
	uint32_t count;
} propolis_list;

/* A user property: key, value. */
typedef struct {
	propolis_bytes key, value;
} propolis_pair;

/* One filter of a subscribe or unsubscribe event: the filter, the QoS
 * asked for, and the reason code the broker answered. */
typedef struct {
	propolis_bytes filter;
	uint8_t qos, code;
} propolis_filter_result;

/* The 8-byte header every record starts with. */
typedef struct {
	uint32_t length;
	uint16_t kind, minor;
} propolis_header;

/* propolis_cstr wraps a NUL-terminated C string (without the NUL). */
static inline propolis_bytes propolis_cstr(const char *s) {
	propolis_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};
	return b;
}

/* propolis_eq reports whether b holds exactly the C string s. */
static inline int propolis_eq(propolis_bytes b, const char *s) {
	size_t n = strlen(s);
	return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

/* propolis_bytes_equal reports whether a and b hold the same bytes. */
static inline int propolis_bytes_equal(propolis_bytes a, propolis_bytes b) {
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* propolis_has_prefix reports whether b starts with the C string s. */
static inline int propolis_has_prefix(propolis_bytes b, const char *s) {
	size_t n = strlen(s);
	return b.len >= n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

/* propolis_strdup copies b into a new NUL-terminated string (malloc);
 * NULL when out of memory. */
static inline char *propolis_strdup(propolis_bytes b) {
	char *s = (char *)malloc((size_t)b.len + 1);
	if (s) {
		if (b.len)
			memcpy(s, b.ptr, b.len);
		s[b.len] = 0;
	}
	return s;
}

/* ------------------------------------------------------------------ */
/* Records (ABI.md section 4)                                          */
/* ------------------------------------------------------------------ */

/* CONNECT record flags. */
#define PROPOLIS_CONNECT_CLEAN_START 0x01u
#define PROPOLIS_CONNECT_HAS_USERNAME 0x02u
#define PROPOLIS_CONNECT_HAS_PASSWORD 0x04u
#define PROPOLIS_CONNECT_HAS_WILL 0x08u
#define PROPOLIS_CONNECT_WILL_RETAIN 0x10u
#define PROPOLIS_CONNECT_TLS 0x20u
/* PUBLISH and MESSAGE record flags. */
#define PROPOLIS_PUBLISH_RETAIN 0x01u
#define PROPOLIS_PUBLISH_WILL 0x02u
/* SUBSCRIBE and SUBSCRIPTION record flags. */
#define PROPOLIS_SUBSCRIBE_SHARED 0x01u
/* CONNACK record flags. */
#define PROPOLIS_CONNACK_SESSION_PRESENT 0x01u
/* Directions of the MESSAGE and DISCONNECT records. */
#define PROPOLIS_INBOUND 1
#define PROPOLIS_OUTBOUND 2
/* Subscription options (SUBSCRIPTION record, subscription_options). */
#define PROPOLIS_SUB_NO_LOCAL 0x01u
#define PROPOLIS_SUB_RETAIN_AS_PUBLISHED 0x02u
#define PROPOLIS_SUB_RETAIN_HANDLING_SHIFT 2
#define PROPOLIS_SUB_RETAIN_HANDLING_MASK 0x0cu

/* START (kind 1). */
typedef struct {
	propolis_header header;
	propolis_bytes extension_id, extension_version, broker_version, previous_version;
	propolis_bytes config; /* the manifest's config as JSON ("{}" when absent) */
	uint32_t instance;     /* 1.1: 0 for the first instance of this load */
} propolis_start;

/* CONNECT (kind 2); also propolis_intercept_connect's record. */
typedef struct {
	propolis_header header;
	uint8_t protocol_version, flags, will_qos;
	uint16_t keepalive;
	uint32_t session_expiry;
	propolis_bytes client_id, username, password, remote_addr, listener, tls_subject;
	propolis_list tls_sans; /* list<str> */
	propolis_bytes will_topic, will_payload;
	propolis_list user_properties; /* list<str,str> */
	uint16_t receive_maximum;      /* 1.2; 0: the client sent none */
	uint32_t will_delay;           /* 1.2 */
} propolis_connect;

/* PUBLISH (kind 3). */
typedef struct {
	propolis_header header;
	uint8_t qos, flags;
	propolis_bytes client_id, username, topic, payload;
} propolis_publish;

/* SUBSCRIBE (kind 4): one filter. */
typedef struct {
	propolis_header header;
	uint8_t qos, flags;
	propolis_bytes client_id, username, filter;
} propolis_subscribe;

/* EVENT (kind 5). */
typedef struct {
	propolis_header header;
	uint8_t event, disconnect_kind, reason_code, protocol_version;
	uint64_t time; /* Unix nanoseconds */
	propolis_bytes client_id, username, listener, remote_addr, reason_string;
	propolis_list filters; /* list<filter>, events 5 and 6 */
} propolis_event;

/* CONNACK (kind 6, 1.2). */
typedef struct {
	propolis_header header;
	uint8_t reason_code, flags, protocol_version;
	propolis_bytes client_id, username, reason_string;
	propolis_list user_properties;
} propolis_connack;

/* MESSAGE (kind 7, 1.2). */
typedef struct {
	propolis_header header;
	uint8_t direction, protocol_version;
	propolis_bytes client_id, username, publisher;
	uint8_t qos, flags, payload_format;
	uint32_t message_expiry;
	propolis_bytes topic, payload;
	propolis_list user_properties;
	propolis_bytes content_type, response_topic, correlation_data;
} propolis_message;

/* SUBSCRIPTION (kind 8, 1.2). */
typedef struct {
	propolis_header header;
	uint8_t qos, options, protocol_version, flags;
	uint32_t identifier;
	propolis_bytes client_id, username, filter;
	propolis_list user_properties;
} propolis_subscription;

/* DISCONNECT (kind 9, 1.2). */
typedef struct {
	propolis_header header;
	uint8_t direction, reason_code, protocol_version;
	propolis_bytes client_id, username, reason_string;
	propolis_list user_properties;
} propolis_disconnect;

/* The field reader. A field entirely past the end of the record reads as
 * its zero value (a host of an older minor version wrote it); a field cut
 * short sets err, and so does a list whose entries do not fit. */
typedef struct {
	const uint8_t *p, *end;
	int err;
} propolis_reader;

static inline uint64_t propolis_rd_le_(const uint8_t *p, int n) {
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* propolis_rd_int_ reads an n-byte little-endian integer. */
static inline uint64_t propolis_rd_int_(propolis_reader *r, int n) {
	if (r->err || r->p == r->end)
		return 0;
	if ((size_t)(r->end - r->p) < (size_t)n) {
		r->err = 1;
		return 0;
	}
	uint64_t v = propolis_rd_le_(r->p, n);
	r->p += n;
	return v;
}
static inline uint8_t propolis_rd_u8(propolis_reader *r) { return (uint8_t)propolis_rd_int_(r, 1); }
static inline uint16_t propolis_rd_u16(propolis_reader *r) { return (uint16_t)propolis_rd_int_(r, 2); }
static inline uint32_t propolis_rd_u32(propolis_reader *r) { return (uint32_t)propolis_rd_int_(r, 4); }
static inline uint64_t propolis_rd_u64(propolis_reader *r) { return propolis_rd_int_(r, 8); }

/* propolis_rd_str reads a str: a u32 length, then the bytes. */
static inline propolis_bytes propolis_rd_str(propolis_reader *r) {
	propolis_bytes b = {NULL, 0};
	int at_end = !r->err && r->p == r->end;
	uint32_t n = propolis_rd_u32(r);
	if (r->err || at_end)
		return b;
	if ((size_t)(r->end - r->p) < n) {
		r->err = 1;
		return b;
	}
	b.ptr = r->p;
	b.len = n;
	r->p += n;
	return b;
}

/* The shapes of list entries. */
enum { PROPOLIS_LIST_STR = 1, PROPOLIS_LIST_PAIR = 2, PROPOLIS_LIST_FILTER = 3 };

/* propolis_rd_list reads a list and checks every entry fits. */
static inline propolis_list propolis_rd_list(propolis_reader *r, int shape) {
	propolis_list l = {NULL, NULL, 0};
	int at_end = !r->err && r->p == r->end;
	uint32_t n = propolis_rd_u32(r);
	if (r->err || at_end)
		return l;
	l.ptr = r->p;
	for (uint32_t i = 0; i < n && !r->err; i++) {
		propolis_bytes a = propolis_rd_str(r);
		propolis_bytes b;
		if (r->err || a.ptr == NULL) {
			r->err = 1;
			break;
		}
		if (shape == PROPOLIS_LIST_PAIR) {
			b = propolis_rd_str(r);
			if (b.ptr == NULL)
				r->err = 1;
		} else if (shape == PROPOLIS_LIST_FILTER) {
			if (r->end - r->p < 2)
				r->err = 1;
			else
				r->p += 2;
		}
	}
	if (r->err) {
		l.ptr = NULL;
		return l;
	}
	l.end = r->p;
	l.count = n;
	return l;
}

/* An iterator over a propolis_list. */
typedef struct {
	propolis_reader r;
	uint32_t left;
} propolis_iter;

/* propolis_list_iter starts an iteration over l. */
static inline propolis_iter propolis_list_iter(propolis_list l) {
	propolis_iter it;
	it.r.p = l.ptr;
	it.r.end = l.end;
	it.r.err = 0;
	it.left = l.count;
	return it;
}

/* propolis_next_str, propolis_next_pair and propolis_next_filter return 1
 * with the next entry, 0 after the last. */
static inline int propolis_next_str(propolis_iter *it, propolis_bytes *out) {
	if (it->left == 0)
		return 0;
	it->left--;
	*out = propolis_rd_str(&it->r);
	return 1;
}
static inline int propolis_next_pair(propolis_iter *it, propolis_pair *out) {
	if (it->left == 0)
		return 0;
	it->left--;
	out->key = propolis_rd_str(&it->r);
	out->value = propolis_rd_str(&it->r);
	return 1;
}
static inline int propolis_next_filter(propolis_iter *it, propolis_filter_result *out) {
	if (it->left == 0)
		return 0;
	it->left--;
	out->filter = propolis_rd_str(&it->r);
	out->qos = propolis_rd_u8(&it->r);
	out->code = propolis_rd_u8(&it->r);
	return 1;
}

/* propolis_find_property finds the first user property named key; 1 when
 * found (value in *value). */
static inline int propolis_find_property(propolis_list props, const char *key, propolis_bytes *value) {
	propolis_iter it = propolis_list_iter(props);
	propolis_pair p;
	while (propolis_next_pair(&it, &p)) {
		if (propolis_eq(p.key, key)) {
			*value = p.value;
			return 1;
		}
	}
	return 0;
}

/* propolis_rd_header_ checks a record's header and starts a reader on its
 * fields. Bytes beyond the header's length, and fields a later minor
 * version appended, are ignored. 0 on success, -1 on a malformed record. */
static inline int propolis_rd_header_(const uint8_t *rec, uint32_t len, uint16_t kind, propolis_header *h,
                                      propolis_reader *r) {
	if (rec == NULL || len < 8)
		return -1;
	h->length = (uint32_t)propolis_rd_le_(rec, 4);
	h->kind = (uint16_t)propolis_rd_le_(rec + 4, 2);
	h->minor = (uint16_t)propolis_rd_le_(rec + 6, 2);
	if (h->length < 8 || h->length > len || h->kind != kind)
		return -1;
	r->p = rec + 8;
	r->end = rec + h->length;
	r->err = 0;
	return 0;
}

/* The decoders: each fills *out from the len bytes at rec and returns 0,
 * or -1 when the record is malformed (too short for its header, another
 * kind, or a field cut short). */

static inline int propolis_decode_start(const uint8_t *rec, uint32_t len, propolis_start *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_START, &out->header, &r))
		return -1;
	out->extension_id = propolis_rd_str(&r);
	out->extension_version = propolis_rd_str(&r);
	out->broker_version = propolis_rd_str(&r);
	out->previous_version = propolis_rd_str(&r);
	out->config = propolis_rd_str(&r);
	out->instance = propolis_rd_u32(&r);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_connect(const uint8_t *rec, uint32_t len, propolis_connect *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_CONNECT, &out->header, &r))
		return -1;
	out->protocol_version = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	out->will_qos = propolis_rd_u8(&r);
	(void)propolis_rd_u8(&r);
	out->keepalive = propolis_rd_u16(&r);
	(void)propolis_rd_u16(&r);
	out->session_expiry = propolis_rd_u32(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->password = propolis_rd_str(&r);
	out->remote_addr = propolis_rd_str(&r);
	out->listener = propolis_rd_str(&r);
	out->tls_subject = propolis_rd_str(&r);
	out->tls_sans = propolis_rd_list(&r, PROPOLIS_LIST_STR);
	out->will_topic = propolis_rd_str(&r);
	out->will_payload = propolis_rd_str(&r);
	out->user_properties = propolis_rd_list(&r, PROPOLIS_LIST_PAIR);
	out->receive_maximum = propolis_rd_u16(&r);
	(void)propolis_rd_u16(&r);
	out->will_delay = propolis_rd_u32(&r);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_publish(const uint8_t *rec, uint32_t len, propolis_publish *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_PUBLISH, &out->header, &r))
		return -1;
	out->qos = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	(void)propolis_rd_u16(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->topic = propolis_rd_str(&r);
	out->payload = propolis_rd_str(&r);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_subscribe(const uint8_t *rec, uint32_t len, propolis_subscribe *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_SUBSCRIBE, &out->header, &r))
		return -1;
	out->qos = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	(void)propolis_rd_u16(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->filter = propolis_rd_str(&r);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_event(const uint8_t *rec, uint32_t len, propolis_event *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_EVENT, &out->header, &r))
		return -1;
	out->event = propolis_rd_u8(&r);
	out->disconnect_kind = propolis_rd_u8(&r);
	out->reason_code = propolis_rd_u8(&r);
	out->protocol_version = propolis_rd_u8(&r);
	out->time = propolis_rd_u64(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->listener = propolis_rd_str(&r);
	out->remote_addr = propolis_rd_str(&r);
	out->reason_string = propolis_rd_str(&r);
	out->filters = propolis_rd_list(&r, PROPOLIS_LIST_FILTER);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_connack(const uint8_t *rec, uint32_t len, propolis_connack *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_CONNACK, &out->header, &r))
		return -1;
	out->reason_code = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	out->protocol_version = propolis_rd_u8(&r);
	(void)propolis_rd_u8(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->reason_string = propolis_rd_str(&r);
	out->user_properties = propolis_rd_list(&r, PROPOLIS_LIST_PAIR);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_message(const uint8_t *rec, uint32_t len, propolis_message *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_MESSAGE, &out->header, &r))
		return -1;
	out->direction = propolis_rd_u8(&r);
	out->protocol_version = propolis_rd_u8(&r);
	(void)propolis_rd_u16(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->publisher = propolis_rd_str(&r);
	out->qos = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	out->payload_format = propolis_rd_u8(&r);
	(void)propolis_rd_u8(&r);
	out->message_expiry = propolis_rd_u32(&r);
	out->topic = propolis_rd_str(&r);
	out->payload = propolis_rd_str(&r);
	out->user_properties = propolis_rd_list(&r, PROPOLIS_LIST_PAIR);
	out->content_type = propolis_rd_str(&r);
	out->response_topic = propolis_rd_str(&r);
	out->correlation_data = propolis_rd_str(&r);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_subscription(const uint8_t *rec, uint32_t len, propolis_subscription *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_SUBSCRIPTION, &out->header, &r))
		return -1;
	out->qos = propolis_rd_u8(&r);
	out->options = propolis_rd_u8(&r);
	out->protocol_version = propolis_rd_u8(&r);
	out->flags = propolis_rd_u8(&r);
	out->identifier = propolis_rd_u32(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->filter = propolis_rd_str(&r);
	out->user_properties = propolis_rd_list(&r, PROPOLIS_LIST_PAIR);
	return r.err ? -1 : 0;
}

static inline int propolis_decode_disconnect(const uint8_t *rec, uint32_t len, propolis_disconnect *out) {
	propolis_reader r;
	memset(out, 0, sizeof *out);
	if (propolis_rd_header_(rec, len, PROPOLIS_KIND_DISCONNECT, &out->header, &r))
		return -1;
	out->direction = propolis_rd_u8(&r);
	out->reason_code = propolis_rd_u8(&r);
	out->protocol_version = propolis_rd_u8(&r);
	(void)propolis_rd_u8(&r);
	out->client_id = propolis_rd_str(&r);
	out->username = propolis_rd_str(&r);
	out->reason_string = propolis_rd_str(&r);
	out->user_properties = propolis_rd_list(&r, PROPOLIS_LIST_PAIR);
	return r.err ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Decisions (ABI.md section 3)                                        */
/* ------------------------------------------------------------------ */

/* MQTT 5 reason codes an extension commonly refuses with. */
#define PROPOLIS_CODE_UNSPECIFIED 0x80
#define PROPOLIS_CODE_IMPLEMENTATION_SPECIFIC 0x83
#define PROPOLIS_CODE_BAD_USERNAME_OR_PASSWORD 0x86
#define PROPOLIS_CODE_NOT_AUTHORIZED 0x87
#define PROPOLIS_CODE_BANNED 0x8A
#define PROPOLIS_CODE_BAD_AUTHENTICATION_METHOD 0x8C
#define PROPOLIS_CODE_TOPIC_NAME_INVALID 0x90
#define PROPOLIS_CODE_QUOTA_EXCEEDED 0x97
#define PROPOLIS_CODE_ADMINISTRATIVE_ACTION 0x98
#define PROPOLIS_CODE_PAYLOAD_FORMAT_INVALID 0x99

/* A decision: what a deciding callback returns. */
typedef uint32_t propolis_decision;

/* propolis_next passes the question on (and, from an interceptor, goes on
 * with the packet as changed). */
static inline propolis_decision propolis_next(void) { return PROPOLIS_NEXT; }
/* propolis_allow accepts. */
static inline propolis_decision propolis_allow(void) { return PROPOLIS_ALLOW; }
/* propolis_deny refuses with an MQTT 5 reason code >= 0x80 (0: 0x87 from
 * an authenticator or authorizer, 0x83 from an interceptor). */
static inline propolis_decision propolis_deny(uint8_t code) { return ((uint32_t)code << 8) | PROPOLIS_DENY; }
/* propolis_disconnect_client refuses and disconnects the client (authorizers
 * only). */
static inline propolis_decision propolis_disconnect_client(uint8_t code) {
	return ((uint32_t)code << 8) | PROPOLIS_DISCONNECT;
}

/* Permission fields (add_permission, ABI.md section 5). */
#define PROPOLIS_PERM_ALLOW 1
#define PROPOLIS_PERM_DENY 2
#define PROPOLIS_ACTIVITY_PUBLISH 1
#define PROPOLIS_ACTIVITY_SUBSCRIBE 2
#define PROPOLIS_ACTIVITY_BOTH 3
#define PROPOLIS_RETAIN_ANY 0
#define PROPOLIS_RETAIN_NOT_RETAINED 1
#define PROPOLIS_RETAIN_ONLY_RETAINED 2
#define PROPOLIS_SHARED_ANY 0
#define PROPOLIS_SHARED_NOT_SHARED 1
#define PROPOLIS_SHARED_ONLY_SHARED 2

/* A default topic permission (add_permission). qos: bit 0 QoS 0, bit 1
 * QoS 1, bit 2 QoS 2; 0 means all. */
typedef struct {
	uint8_t decision, activity, qos, retain, shared;
	propolis_bytes filter;
} propolis_permission;

/* propolis_encode_permission writes p as add_permission takes it into
 * out (8 + 4 + filter bytes) and returns its length, or 0 when cap is too
 * small. */
static inline uint32_t propolis_encode_permission(const propolis_permission *p, uint8_t *out, uint32_t cap) {
	uint32_t n = 12 + p->filter.len;
	if (cap < n || p->filter.len > cap)
		return 0;
	memset(out, 0, 8);
	out[0] = p->decision;
	out[1] = p->activity;
	out[2] = p->qos;
	out[3] = p->retain;
	out[4] = p->shared;
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(p->filter.len >> (8 * i));
	if (p->filter.len)
		memcpy(out + 12, p->filter.ptr, p->filter.len);
	return n;
}

/* propolis_encode_properties writes n pairs as a list<str,str> (the value
 * of packet_set's user_properties) into out and returns its length, or 0
 * when cap is too small. */
static inline uint32_t propolis_encode_properties(const propolis_pair *pairs, uint32_t n, uint8_t *out, uint32_t cap) {
	uint64_t need = 4;
	for (uint32_t i = 0; i < n; i++)
		need += 8 + (uint64_t)pairs[i].key.len + pairs[i].value.len;
	if (need > cap)
		return 0;
	uint8_t *w = out;
	for (int i = 0; i < 4; i++)
		*w++ = (uint8_t)(n >> (8 * i));
	for (uint32_t i = 0; i < n; i++) {
		const propolis_bytes *s[2] = {&pairs[i].key, &pairs[i].value};
		for (int j = 0; j < 2; j++) {
			for (int k = 0; k < 4; k++)
				*w++ = (uint8_t)(s[j]->len >> (8 * k));
			if (s[j]->len)
				memcpy(w, s[j]->ptr, s[j]->len);
			w += s[j]->len;
		}
	}
	return (uint32_t)need;
}

/* ------------------------------------------------------------------ */
/* Topics                                                              */
/* ------------------------------------------------------------------ */

/* propolis_level_ takes the next level of a topic or filter at *pos
 * ('/'-separated; "" is one empty level); 0 when there is none left. */
static inline int propolis_level_(propolis_bytes s, uint32_t *pos, propolis_bytes *lvl) {
	if (*pos > s.len)
		return 0;
	uint32_t e = *pos;
	while (e < s.len && s.ptr[e] != '/')
		e++;
	lvl->ptr = s.ptr + *pos;
	lvl->len = e - *pos;
	*pos = e + 1;
	return 1;
}

/* propolis_filter_covers reports whether every topic the MQTT topic filter
 * (or topic name) sub matches is matched by the filter f, the rule
 * add_permission applies to SUBSCRIBE; for a topic name sub it is plain
 * topic matching. Topics starting with '$' are not matched by a wildcard
 * in the first level. A "$share/<group>/" prefix is not stripped. */
static inline int propolis_filter_covers(propolis_bytes f, propolis_bytes sub) {
	uint32_t fp = 0, sp = 0;
	int first = 1, dollar = sub.len > 0 && sub.ptr[0] == '$';
	propolis_bytes fl, sl;
	for (;;) {
		if (!propolis_level_(f, &fp, &fl))
			return sp > sub.len; /* both ended */
		if (propolis_eq(fl, "#"))
			return !(first && dollar); /* the parent level and everything below */
		if (!propolis_level_(sub, &sp, &sl))
			return 0;
		if (propolis_eq(sl, "#"))
			return 0;
		if (propolis_eq(fl, "+")) {
			if (first && dollar)
				return 0;
		} else if (propolis_eq(sl, "+") || !propolis_bytes_equal(fl, sl)) {
			return 0;
		}
		first = 0;
	}
}

/* propolis_filter_intersects reports whether some topic matches both MQTT
 * topic filters (or topic names) a and b: "secret/#" and "+/plans" do
 * ("secret/plans"), "a/+" and "b/#" do not. It is symmetric; for a topic
 * name it is plain topic matching. A deny rule on SUBSCRIBE wants it: a
 * subscription to "#" would receive what "secret/#" forbids, though
 * "secret/#" does not cover "#". Topics starting with '$' are not matched
 * by a wildcard in the first level. A "$share/<group>/" prefix is not
 * stripped. */
static inline int propolis_filter_intersects(propolis_bytes a, propolis_bytes b) {
	uint32_t ap = 0, bp = 0;
	int first = 1;
	propolis_bytes al, bl;
	for (;;) {
		int ha = propolis_level_(a, &ap, &al), hb = propolis_level_(b, &bp, &bl);
		if (!ha && !hb)
			return 1; /* both ended together */
		if (!ha || !hb) {
			/* one ended: the other matches that topic only by a final
			 * "#" (which matches its parent level) */
			propolis_bytes lvl = ha ? al : bl, s = ha ? a : b;
			return propolis_eq(lvl, "#") && (ha ? ap : bp) > s.len;
		}
		int wa = propolis_eq(al, "#") || propolis_eq(al, "+");
		int wb = propolis_eq(bl, "#") || propolis_eq(bl, "+");
		if (first && wa != wb) {
			/* a wildcard in the first level matches no '$' topic */
			propolis_bytes lit = wa ? bl : al;
			if (lit.len > 0 && lit.ptr[0] == '$')
				return 0;
		}
		if (propolis_eq(al, "#") || propolis_eq(bl, "#"))
			return 1;
		if (!wa && !wb && !propolis_bytes_equal(al, bl))
			return 0;
		first = 0;
	}
}

/* ------------------------------------------------------------------ */
/* The module's side of the ABI (wasm only)                            */
/* ------------------------------------------------------------------ */

#if defined(__wasm__)

#define PROPOLIS_EXPORT_(name) __attribute__((export_name(name)))

/* The largest record the module accepts; larger ones are declined
 * (propolis_buffer answers 0 and the host fails that call closed, ABI.md
 * section 4 "Record size"). Define it before including this header to
 * change it; keep it well below the manifest's limits.memory. */
#ifndef PROPOLIS_MAX_RECORD_SIZE
#define PROPOLIS_MAX_RECORD_SIZE (4u << 20)
#endif

/* The record buffer: weak, so that several files may include this header
 * and the module still has one. */
__attribute__((weak)) uint8_t *propolis_record_buf_;
__attribute__((weak)) uint32_t propolis_record_cap_;

/* The ABI marker: the minor version this SDK was written to. */
__attribute__((weak)) PROPOLIS_EXPORT_(PROPOLIS_EXPORT_MARKER) int32_t propolis_export_marker(void) {
	return PROPOLIS_ABI_MINOR;
}

/* propolis_buffer: a buffer of at least size bytes for the next record,
 * valid until the next call; 0 beyond PROPOLIS_MAX_RECORD_SIZE or when
 * memory runs out (the previous buffer then stays valid). */
__attribute__((weak)) PROPOLIS_EXPORT_(PROPOLIS_EXPORT_BUFFER) int32_t propolis_export_buffer(int32_t size) {
	uint32_t n = (uint32_t)size;
	if (size < 0 || n > PROPOLIS_MAX_RECORD_SIZE)
		return 0;
	if (n <= propolis_record_cap_ && propolis_record_buf_ != NULL)
		return (int32_t)(uintptr_t)propolis_record_buf_;
	uint8_t *b = (uint8_t *)malloc(n);
	if (b == NULL)
		return 0;
	free(propolis_record_buf_);
	propolis_record_buf_ = b;
	propolis_record_cap_ = n;
	return (int32_t)(uintptr_t)b;
}

/* Log levels of propolis_log. */
#define PROPOLIS_LOG_DEBUG 0
#define PROPOLIS_LOG_INFO 1
#define PROPOLIS_LOG_WARN 2
#define PROPOLIS_LOG_ERROR 3

/* propolis_log writes msg to the broker log, tagged with the extension id
 * (longer than 4,096 bytes: truncated by the host). */
static inline int32_t propolis_log(int level, const char *msg) {
	return propolis_host_log(level, msg, (int32_t)strlen(msg));
}

/* propolis_set_reason sets the MQTT 5 reason string of a DENY or
 * DISCONNECT, or why propolis_start refused (at most 1,024 bytes). */
static inline int32_t propolis_set_reason(const char *reason) {
	return propolis_host_set_reason(reason, (int32_t)strlen(reason));
}

/* propolis_add_publish_filter asks for propolis_authorize_publish only for
 * topics matching filter (in propolis_start). */
static inline int32_t propolis_add_publish_filter(const char *filter) {
	return propolis_host_add_publish_filter(filter, (int32_t)strlen(filter));
}

/* propolis_add_permission adds a default topic permission for the client
 * being authenticated, applied on ALLOW (in propolis_authenticate). */
static inline int32_t propolis_add_permission(const propolis_permission *p) {
	uint8_t small[268];
	uint8_t *buf = small;
	uint32_t cap = sizeof small;
	if (p->filter.len > cap - 12) {
		cap = 12 + p->filter.len;
		buf = (uint8_t *)malloc(cap);
		if (buf == NULL)
			return PROPOLIS_INTERNAL;
	}
	uint32_t n = propolis_encode_permission(p, buf, cap);
	int32_t st = propolis_host_add_permission(buf, (int32_t)n);
	if (buf != small)
		free(buf);
	return st;
}

/* propolis_packet_set_str sets a text field of the packet being
 * intercepted to the C string s. */
static inline int32_t propolis_packet_set_str(int32_t field, const char *s) {
	return propolis_host_packet_set(field, s, (int32_t)strlen(s));
}

/* propolis_packet_set_properties replaces the user properties of the
 * packet being intercepted with n pairs. */
static inline int32_t propolis_packet_set_properties(const propolis_pair *pairs, uint32_t n) {
	uint64_t need = 4;
	for (uint32_t i = 0; i < n; i++)
		need += 8 + (uint64_t)pairs[i].key.len + pairs[i].value.len;
	if (need > 0x7fffffff)
		return PROPOLIS_TOO_LARGE;
	uint8_t *buf = (uint8_t *)malloc((size_t)need);
	if (buf == NULL)
		return PROPOLIS_INTERNAL;
	uint32_t len = propolis_encode_properties(pairs, n, buf, (uint32_t)need);
	int32_t st = propolis_host_packet_set(PROPOLIS_FIELD_USER_PROPERTIES, buf, (int32_t)len);
	free(buf);
	return st;
}

/* propolis_result finishes a host service call that answers data (ABI.md
 * section 5, "Results"): n is what the call returned for the buffer
 * (*buf, *cap). When the result did not fit, it grows *buf with realloc
 * (so *buf must be NULL or from malloc) and fetches it with take_result.
 * Returns the result's length, or a negative status. */
static inline int32_t propolis_result(int32_t n, uint8_t **buf, uint32_t *cap) {
	if (n < 0 || (uint32_t)n <= *cap)
		return n;
	uint8_t *b = (uint8_t *)realloc(*buf, (size_t)n);
	if (b == NULL)
		return PROPOLIS_INTERNAL;
	*buf = b;
	*cap = (uint32_t)n;
	return propolis_host_take_result(b, (int32_t)*cap);
}

/* propolis_bad_record_ is called when the host's record does not decode:
 * a broken host or memory. The call traps, so the host fails it closed and
 * logs it with the callback's name. */
/* propolis_bad_record_ logs a record the SDK cannot decode (a length
 * beyond the buffer, a field cut short: a broken host), sets it as the
 * reason when deny_it, and returns answer: what the macros answer instead
 * of calling fn, like the Rust SDK (ABI.md section 7's fail-closed answers):
 * DENY 0x80 from authenticate and authorize_*, NEXT from an interceptor
 * (the packet goes on unchanged), 1 (refused) from start; an event is
 * dropped. */
static inline int32_t propolis_bad_record_(const char *export_name, int deny_it, int32_t answer) {
	char msg[96] = "propolis C SDK: malformed record in ";
	strncat(msg, export_name, sizeof msg - strlen(msg) - 1);
	propolis_log(PROPOLIS_LOG_ERROR, msg);
	if (deny_it)
		propolis_set_reason(msg);
	return answer;
}

/* The answers to a malformed record (propolis_bad_record_). */
#define PROPOLIS_FAIL_CLOSED_ 1, (int32_t)((0x80u << 8) | PROPOLIS_DENY)
#define PROPOLIS_PASS_ON_ 0, (int32_t)PROPOLIS_NEXT
#define PROPOLIS_REFUSE_START_ 1, 1

/* One macro per callback defines its export, decoding the record and
 * calling fn. Use each at most once per module, at file scope:
 *
 *   static propolis_decision acl_publish(const propolis_publish *p) { ... }
 *   PROPOLIS_AUTHORIZE_PUBLISH(acl_publish)
 *
 * fn's signatures:
 *   PROPOLIS_START:                int32_t fn(const propolis_start *)  0 starts
 *   PROPOLIS_STOP, PROPOLIS_TICK:  void fn(void)
 *   PROPOLIS_AUTHENTICATE:         propolis_decision fn(const propolis_connect *)
 *   PROPOLIS_AUTHORIZE_PUBLISH:    propolis_decision fn(const propolis_publish *)
 *   PROPOLIS_AUTHORIZE_SUBSCRIBE:  propolis_decision fn(const propolis_subscribe *)
 *   PROPOLIS_ON_EVENT:             void fn(const propolis_event *)
 *   PROPOLIS_INTERCEPT_CONNECT:    propolis_decision fn(const propolis_connect *)
 *   PROPOLIS_INTERCEPT_CONNACK:    propolis_decision fn(const propolis_connack *)
 *   PROPOLIS_INTERCEPT_PUBLISH_INBOUND, _OUTBOUND:
 *                                  propolis_decision fn(const propolis_message *)
 *   PROPOLIS_INTERCEPT_SUBSCRIBE:  propolis_decision fn(const propolis_subscription *)
 *   PROPOLIS_INTERCEPT_DISCONNECT: propolis_decision fn(const propolis_disconnect *)
 */
#define PROPOLIS_RECORD_EXPORT_(export, cname, type, decoder, fn, on_bad)                                             \
	PROPOLIS_EXPORT_(export) int32_t propolis_export_##cname(int32_t len) {                                       \
		type rec_;                                                                                             \
		if (len < 0 || (uint32_t)len > propolis_record_cap_ ||                                                 \
		    decoder(propolis_record_buf_, (uint32_t)len, &rec_) != 0)                                           \
			return propolis_bad_record_(export, on_bad);                                                   \
		return (int32_t)fn(&rec_);                                                                             \
	}

#define PROPOLIS_START(fn)                                                                                            \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_START, start, propolis_start, propolis_decode_start, fn,                \
	                        PROPOLIS_REFUSE_START_)
#define PROPOLIS_AUTHENTICATE(fn)                                                                                     \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_AUTHENTICATE, authenticate, propolis_connect, propolis_decode_connect,  \
	                        fn, PROPOLIS_FAIL_CLOSED_)
#define PROPOLIS_AUTHORIZE_PUBLISH(fn)                                                                                \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_AUTHORIZE_PUBLISH, authorize_publish, propolis_publish,                 \
	                        propolis_decode_publish, fn, PROPOLIS_FAIL_CLOSED_)
#define PROPOLIS_AUTHORIZE_SUBSCRIBE(fn)                                                                              \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_AUTHORIZE_SUBSCRIBE, authorize_subscribe, propolis_subscribe,           \
	                        propolis_decode_subscribe, fn, PROPOLIS_FAIL_CLOSED_)
#define PROPOLIS_INTERCEPT_CONNECT(fn)                                                                                \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_CONNECT, intercept_connect, propolis_connect,                 \
	                        propolis_decode_connect, fn, PROPOLIS_PASS_ON_)
#define PROPOLIS_INTERCEPT_CONNACK(fn)                                                                                \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_CONNACK, intercept_connack, propolis_connack,                 \
	                        propolis_decode_connack, fn, PROPOLIS_PASS_ON_)
#define PROPOLIS_INTERCEPT_PUBLISH_INBOUND(fn)                                                                        \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_PUBLISH_INBOUND, intercept_publish_inbound, propolis_message, \
	                        propolis_decode_message, fn, PROPOLIS_PASS_ON_)
#define PROPOLIS_INTERCEPT_PUBLISH_OUTBOUND(fn)                                                                       \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_PUBLISH_OUTBOUND, intercept_publish_outbound,                 \
	                        propolis_message, propolis_decode_message, fn, PROPOLIS_PASS_ON_)
#define PROPOLIS_INTERCEPT_SUBSCRIBE(fn)                                                                              \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_SUBSCRIBE, intercept_subscribe, propolis_subscription,        \
	                        propolis_decode_subscription, fn, PROPOLIS_PASS_ON_)
#define PROPOLIS_INTERCEPT_DISCONNECT(fn)                                                                             \
	PROPOLIS_RECORD_EXPORT_(PROPOLIS_EXPORT_INTERCEPT_DISCONNECT, intercept_disconnect, propolis_disconnect,        \
	                        propolis_decode_disconnect, fn, PROPOLIS_PASS_ON_)

#define PROPOLIS_ON_EVENT(fn)                                                                                         \
	PROPOLIS_EXPORT_(PROPOLIS_EXPORT_ON_EVENT) void propolis_export_on_event(int32_t len) {                        \
		propolis_event rec_;                                                                                   \
		if (len < 0 || (uint32_t)len > propolis_record_cap_ ||                                                 \
		    propolis_decode_event(propolis_record_buf_, (uint32_t)len, &rec_) != 0) {                           \
			propolis_bad_record_(PROPOLIS_EXPORT_ON_EVENT, 0, 0);                                          \
			return;                                                                                        \
		}                                                                                                      \
		fn(&rec_);                                                                                             \
	}
#define PROPOLIS_STOP(fn)                                                                                             \
	PROPOLIS_EXPORT_(PROPOLIS_EXPORT_STOP) void propolis_export_stop(void) { fn(); }
#define PROPOLIS_TICK(fn)                                                                                             \
	PROPOLIS_EXPORT_(PROPOLIS_EXPORT_TICK) void propolis_export_tick(void) { fn(); }

#endif /* __wasm__ */

#ifdef __cplusplus
}
#endif

#endif /* PROPOLIS_H */
