/*
 * propolis_json.h: a small JSON reader for the C SDK, header only.
 *
 * The START record hands an extension its manifest's config section as
 * JSON (ABI.md section 4, MANIFEST.md "config"). This reader validates a
 * document and walks it in place, without allocating: a value is a span
 * of the document's text, and strings are unescaped into a buffer of the
 * caller's when asked. Nesting is limited to PROPOLIS_JSON_MAX_DEPTH.
 *
 *   propolis_json doc, rules, rule;
 *   if (propolis_json_parse(start->config, &doc) != 0) ... // not JSON
 *   if (propolis_json_member(doc, "rules", &rules) && rules.type == PROPOLIS_JSON_ARRAY) {
 *       propolis_json_iter it = propolis_json_iterate(rules);
 *       while (propolis_json_next(&it, NULL, &rule)) ...
 *   }
 */
#ifndef PROPOLIS_JSON_H
#define PROPOLIS_JSON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "propolis.h"

#ifndef PROPOLIS_JSON_MAX_DEPTH
#define PROPOLIS_JSON_MAX_DEPTH 64
#endif

/* Value types. */
enum {
	PROPOLIS_JSON_INVALID = 0,
	PROPOLIS_JSON_NULL,
	PROPOLIS_JSON_BOOL,
	PROPOLIS_JSON_NUMBER,
	PROPOLIS_JSON_STRING,
	PROPOLIS_JSON_ARRAY,
	PROPOLIS_JSON_OBJECT
};

/* A JSON value: its type and its text (a string's with the quotes). */
typedef struct {
	int type;
	const uint8_t *ptr;
	uint32_t len;
} propolis_json;

static inline const uint8_t *propolis_json_ws_(const uint8_t *p, const uint8_t *e) {
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static inline int propolis_json_hex_(uint8_t c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* propolis_json_string_end_ returns the end of the string starting at the
 * quote p, or NULL when it is malformed. */
static inline const uint8_t *propolis_json_string_end_(const uint8_t *p, const uint8_t *e) {
	p++;
	while (p < e) {
		uint8_t c = *p++;
		if (c == '"')
			return p;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (p >= e)
				return NULL;
			c = *p++;
			if (c == 'u') {
				if (e - p < 4)
					return NULL;
				for (int i = 0; i < 4; i++)
					if (propolis_json_hex_(p[i]) < 0)
						return NULL;
				p += 4;
			} else if (!strchr("\"\\/bfnrt", c) || c == 0) {
				return NULL;
			}
		}
	}
	return NULL;
}

/* propolis_json_value_ checks the value at p and returns its end, or NULL. */
static inline const uint8_t *propolis_json_value_(const uint8_t *p, const uint8_t *e, int depth, int *type) {
	if (p >= e)
		return NULL;
	if (depth > PROPOLIS_JSON_MAX_DEPTH)
		return NULL;
	switch (*p) {
	case '"':
		*type = PROPOLIS_JSON_STRING;
		return propolis_json_string_end_(p, e);
	case 'n':
		*type = PROPOLIS_JSON_NULL;
		return e - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	case 't':
		*type = PROPOLIS_JSON_BOOL;
		return e - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		*type = PROPOLIS_JSON_BOOL;
		return e - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case '[':
	case '{': {
		int obj = *p == '{';
		int t;
		*type = obj ? PROPOLIS_JSON_OBJECT : PROPOLIS_JSON_ARRAY;
		p = propolis_json_ws_(p + 1, e);
		if (p < e && *p == (obj ? '}' : ']'))
			return p + 1;
		for (;;) {
			if (obj) {
				if (p >= e || *p != '"' || !(p = propolis_json_string_end_(p, e)))
					return NULL;
				p = propolis_json_ws_(p, e);
				if (p >= e || *p != ':')
					return NULL;
				p = propolis_json_ws_(p + 1, e);
			}
			if (!(p = propolis_json_value_(p, e, depth + 1, &t)))
				return NULL;
			p = propolis_json_ws_(p, e);
			if (p < e && *p == ',') {
				p = propolis_json_ws_(p + 1, e);
				continue;
			}
			if (p < e && *p == (obj ? '}' : ']'))
				return p + 1;
			return NULL;
		}
	}
	default: {
		const uint8_t *s = p;
		*type = PROPOLIS_JSON_NUMBER;
		if (p < e && *p == '-')
			p++;
		if (p >= e || *p < '0' || *p > '9')
			return NULL;
		if (*p == '0')
			p++;
		else
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		if (p < e && *p == '.') {
			p++;
			if (p >= e || *p < '0' || *p > '9')
				return NULL;
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		}
		if (p < e && (*p == 'e' || *p == 'E')) {
			p++;
			if (p < e && (*p == '+' || *p == '-'))
				p++;
			if (p >= e || *p < '0' || *p > '9')
				return NULL;
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		}
		return p > s ? p : NULL;
	}
	}
}

/* propolis_json_parse checks that doc is one JSON value (with white space
 * around it) and returns it in *out: 0, or -1 when it is not JSON. */
static inline int propolis_json_parse(propolis_bytes doc, propolis_json *out) {
	const uint8_t *e = doc.ptr + doc.len;
	const uint8_t *p = propolis_json_ws_(doc.ptr, e);
	int type = PROPOLIS_JSON_INVALID;
	const uint8_t *end = doc.len ? propolis_json_value_(p, e, 0, &type) : NULL;
	if (end == NULL || propolis_json_ws_(end, e) != e) {
		out->type = PROPOLIS_JSON_INVALID;
		out->ptr = NULL;
		out->len = 0;
		return -1;
	}
	out->type = type;
	out->ptr = p;
	out->len = (uint32_t)(end - p);
	return 0;
}

/* An iteration over the members of an object or the elements of an array. */
typedef struct {
	const uint8_t *p, *end;
	int object;
} propolis_json_iter;

/* propolis_json_iterate starts an iteration over v (an object or array
 * from propolis_json_parse); over anything else it yields nothing. */
static inline propolis_json_iter propolis_json_iterate(propolis_json v) {
	propolis_json_iter it = {NULL, NULL, 0};
	if (v.type == PROPOLIS_JSON_OBJECT || v.type == PROPOLIS_JSON_ARRAY) {
		it.p = v.ptr + 1;
		it.end = v.ptr + v.len - 1;
		it.object = v.type == PROPOLIS_JSON_OBJECT;
	}
	return it;
}

/* propolis_json_next returns 1 with the next member's key (objects only;
 * key may be NULL) and value, 0 after the last. */
static inline int propolis_json_next(propolis_json_iter *it, propolis_json *key, propolis_json *val) {
	const uint8_t *p = propolis_json_ws_(it->p, it->end);
	if (p == NULL || p >= it->end)
		return 0;
	if (*p == ',')
		p = propolis_json_ws_(p + 1, it->end);
	if (it->object) {
		const uint8_t *k = p;
		p = propolis_json_string_end_(p, it->end);
		if (key) {
			key->type = PROPOLIS_JSON_STRING;
			key->ptr = k;
			key->len = (uint32_t)(p - k);
		}
		p = propolis_json_ws_(p, it->end);
		p = propolis_json_ws_(p + 1, it->end); /* ':' */
	}
	int type = PROPOLIS_JSON_INVALID;
	const uint8_t *e = propolis_json_value_(p, it->end, 0, &type);
	val->type = type;
	val->ptr = p;
	val->len = (uint32_t)(e - p);
	it->p = e;
	return 1;
}

/* propolis_json_unescape writes the text of string v into out (at most
 * cap - 1 bytes, then a NUL) and returns its length, or -1 when v is not
 * a string or out is too small. A \u0000 escape is refused. */
static inline int32_t propolis_json_unescape(propolis_json v, char *out, uint32_t cap) {
	if (v.type != PROPOLIS_JSON_STRING || cap == 0)
		return -1;
	const uint8_t *p = v.ptr + 1, *e = v.ptr + v.len - 1;
	uint32_t n = 0;
	while (p < e) {
		uint8_t c = *p++;
		uint32_t cp;
		if (c != '\\') {
			if (n + 1 >= cap)
				return -1;
			out[n++] = (char)c;
			continue;
		}
		c = *p++;
		switch (c) {
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			cp = 0;
			for (int i = 0; i < 4; i++)
				cp = cp << 4 | (uint32_t)propolis_json_hex_(*p++);
			if (cp >= 0xD800 && cp < 0xDC00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
				uint32_t lo = 0;
				for (int i = 0; i < 4; i++)
					lo = lo << 4 | (uint32_t)propolis_json_hex_(p[2 + i]);
				if (lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				}
			}
			if (cp >= 0xD800 && cp < 0xE000)
				cp = 0xFFFD; /* a lone surrogate */
			if (cp == 0)
				return -1;
			break;
		default: cp = c; break; /* " \ / */
		}
		uint8_t u[4];
		int k;
		if (cp < 0x80) {
			u[0] = (uint8_t)cp;
			k = 1;
		} else if (cp < 0x800) {
			u[0] = (uint8_t)(0xC0 | cp >> 6);
			u[1] = (uint8_t)(0x80 | (cp & 0x3F));
			k = 2;
		} else if (cp < 0x10000) {
			u[0] = (uint8_t)(0xE0 | cp >> 12);
			u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
			u[2] = (uint8_t)(0x80 | (cp & 0x3F));
			k = 3;
		} else {
			u[0] = (uint8_t)(0xF0 | cp >> 18);
			u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
			u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
			u[3] = (uint8_t)(0x80 | (cp & 0x3F));
			k = 4;
		}
		if (n + (uint32_t)k >= cap)
			return -1;
		memcpy(out + n, u, (size_t)k);
		n += (uint32_t)k;
	}
	out[n] = 0;
	return (int32_t)n;
}

/* propolis_json_strdup returns the text of string v in a new
 * NUL-terminated string (malloc), or NULL (not a string, out of memory).
 * *len, when not NULL, gets its length. */
static inline char *propolis_json_strdup(propolis_json v, uint32_t *len) {
	if (v.type != PROPOLIS_JSON_STRING)
		return NULL;
	char *s = (char *)malloc(v.len); /* the text is never longer than its JSON */
	if (s == NULL)
		return NULL;
	int32_t n = propolis_json_unescape(v, s, v.len);
	if (n < 0) {
		free(s);
		return NULL;
	}
	if (len)
		*len = (uint32_t)n;
	return s;
}

/* propolis_json_is reports whether v is the string s. */
static inline int propolis_json_is(propolis_json v, const char *s) {
	char buf[256];
	size_t n = strlen(s);
	if (v.type != PROPOLIS_JSON_STRING || n >= sizeof buf)
		return 0;
	int32_t m = propolis_json_unescape(v, buf, sizeof buf);
	return m >= 0 && (size_t)m == n && memcmp(buf, s, n) == 0;
}

/* propolis_json_member finds the member key of object v: 1 with its
 * value in *out, 0 when v is not an object or has no such member. */
static inline int propolis_json_member(propolis_json v, const char *key, propolis_json *out) {
	propolis_json_iter it = propolis_json_iterate(v);
	propolis_json k, val;
	if (v.type != PROPOLIS_JSON_OBJECT)
		return 0;
	while (propolis_json_next(&it, &k, &val)) {
		if (propolis_json_is(k, key)) {
			*out = val;
			return 1;
		}
	}
	return 0;
}

/* propolis_json_u64 reads a non-negative integer (no fraction, no
 * exponent, at most 2^64-1): 0, or -1 otherwise. */
static inline int propolis_json_u64(propolis_json v, uint64_t *out) {
	if (v.type != PROPOLIS_JSON_NUMBER || v.len == 0 || v.ptr[0] == '-')
		return -1;
	uint64_t n = 0;
	for (uint32_t i = 0; i < v.len; i++) {
		uint8_t c = v.ptr[i];
		if (c < '0' || c > '9')
			return -1;
		if (n > (UINT64_MAX - (c - '0')) / 10)
			return -1;
		n = n * 10 + (c - '0');
	}
	*out = n;
	return 0;
}

/* propolis_json_bool reads true or false: 0, or -1 otherwise. */
static inline int propolis_json_bool(propolis_json v, int *out) {
	if (v.type != PROPOLIS_JSON_BOOL)
		return -1;
	*out = v.ptr[0] == 't';
	return 0;
}

#endif /* PROPOLIS_JSON_H */
