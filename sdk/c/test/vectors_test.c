/*
 * The C SDK's tests, compiled natively (gcc or clang): the record decoders
 * against the shared vectors abi/testdata/<name>.hex and their values in
 * <name>.json, records of later and earlier minor versions, malformed
 * records, topic filter coverage and the JSON reader.
 *
 *   cc -std=c11 -Wall -Wextra -Werror -I sdk/c -o vectors_test sdk/c/test/vectors_test.c
 *   ./vectors_test abi/testdata
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "propolis.h"
#include "propolis_json.h"

static int failures;
static const char *current;

#define FAIL(...)                                                                                                     \
	do {                                                                                                          \
		fprintf(stderr, "FAIL %s: ", current);                                                                \
		fprintf(stderr, __VA_ARGS__);                                                                         \
		fprintf(stderr, "\n");                                                                                \
		failures++;                                                                                           \
	} while (0)

static char *read_file(const char *path, size_t *len) {
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	size_t r;
	while ((r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap)
			b = realloc(b, cap *= 2);
	}
	fclose(f);
	b[n] = 0;
	*len = n;
	return b;
}

/* parse_hex reads an annotated vector: hex digits, '#' comments. */
static uint8_t *parse_hex(const char *text, uint32_t *len) {
	uint8_t *out = malloc(strlen(text) / 2 + 1);
	uint32_t n = 0;
	int hi = -1, comment = 0;
	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			comment = 0;
			continue;
		}
		if (comment || *p == ' ' || *p == '\t' || *p == '\r')
			continue;
		if (*p == '#') {
			comment = 1;
			continue;
		}
		int v = propolis_json_hex_((uint8_t)*p);
		if (v < 0) {
			FAIL("bad hex digit %c", *p);
			free(out);
			return NULL;
		}
		if (hi < 0) {
			hi = v;
		} else {
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	*len = n;
	return out;
}

/* The expected values: the JSON object, and how many of its members the
 * test compared (every one must be). */
static propolis_json want;
static int checked;

static int member(const char *name, propolis_json *v) {
	if (!propolis_json_member(want, name, v)) {
		FAIL("%s missing from the JSON", name);
		return 0;
	}
	checked++;
	return 1;
}

static void check_u(const char *name, uint64_t got) {
	propolis_json v;
	uint64_t w;
	if (!member(name, &v))
		return;
	if (propolis_json_u64(v, &w) != 0)
		FAIL("%s: not an unsigned number in the JSON", name);
	else if (w != got)
		FAIL("%s = %llu, want %llu", name, (unsigned long long)got, (unsigned long long)w);
}

static int same_text(propolis_json v, propolis_bytes got) {
	uint32_t n;
	char *s = propolis_json_strdup(v, &n);
	int ok = s && n == got.len && (n == 0 || memcmp(s, got.ptr, n) == 0);
	free(s);
	return ok;
}

static void check_str(const char *name, propolis_bytes got) {
	propolis_json v;
	if (member(name, &v) && !same_text(v, got))
		FAIL("%s = \"%.*s\", want %.*s", name, (int)got.len, (const char *)got.ptr, (int)v.len, (const char *)v.ptr);
}

/* check_b64: bytes, as Go's encoding/json writes them (base64, null for
 * none). */
static void check_b64(const char *name, propolis_bytes got) {
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	propolis_json v;
	char text[1024];
	uint8_t bytes[1024];
	uint32_t n = 0, acc = 0;
	int bits = 0;
	if (!member(name, &v))
		return;
	if (v.type == PROPOLIS_JSON_NULL) {
		if (got.len != 0)
			FAIL("%s has %u bytes, want none", name, got.len);
		return;
	}
	int32_t tl = propolis_json_unescape(v, text, sizeof text);
	if (tl < 0) {
		FAIL("%s: not a string in the JSON", name);
		return;
	}
	for (int32_t i = 0; i < tl && text[i] != '='; i++) {
		const char *c = strchr(alphabet, text[i]);
		if (!c) {
			FAIL("%s: bad base64", name);
			return;
		}
		acc = acc << 6 | (uint32_t)(c - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			bytes[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (n != got.len || (n && memcmp(bytes, got.ptr, n) != 0))
		FAIL("%s: %u bytes differ from the JSON's %u", name, got.len, n);
}

/* check_list compares a list of str, pairs or filters with a JSON array
 * (or null for none). */
static void check_list(const char *name, propolis_list got, int shape) {
	propolis_json v, el, f;
	if (!member(name, &v))
		return;
	if (v.type == PROPOLIS_JSON_NULL) {
		if (got.count != 0)
			FAIL("%s has %u entries, want none", name, got.count);
		return;
	}
	propolis_iter it = propolis_list_iter(got);
	propolis_json_iter jt = propolis_json_iterate(v);
	uint32_t i = 0;
	while (propolis_json_next(&jt, NULL, &el)) {
		propolis_bytes s;
		propolis_pair p;
		propolis_filter_result fr;
		uint64_t u;
		int ok = 0;
		switch (shape) {
		case PROPOLIS_LIST_STR:
			ok = propolis_next_str(&it, &s) && same_text(el, s);
			break;
		case PROPOLIS_LIST_PAIR:
			ok = propolis_next_pair(&it, &p) && propolis_json_member(el, "key", &f) && same_text(f, p.key) &&
			     propolis_json_member(el, "value", &f) && same_text(f, p.value);
			break;
		case PROPOLIS_LIST_FILTER:
			ok = propolis_next_filter(&it, &fr) && propolis_json_member(el, "filter", &f) &&
			     same_text(f, fr.filter) && propolis_json_member(el, "qos", &f) && propolis_json_u64(f, &u) == 0 &&
			     u == fr.qos && propolis_json_member(el, "code", &f) && propolis_json_u64(f, &u) == 0 &&
			     u == fr.code;
			break;
		}
		if (!ok)
			FAIL("%s[%u] differs from the JSON", name, i);
		i++;
	}
	if (i != got.count)
		FAIL("%s has %u entries, want %u", name, got.count, i);
}

/* compare decodes rec as the kind its header names and compares every
 * field with the JSON. */
static void compare(const uint8_t *rec, uint32_t len) {
	uint16_t kind = (uint16_t)(rec[4] | rec[5] << 8);
	checked = 0;
	switch (kind) {
	case PROPOLIS_KIND_START: {
		propolis_start s;
		if (propolis_decode_start(rec, len, &s)) {
			FAIL("does not decode");
			return;
		}
		check_str("extension_id", s.extension_id);
		check_str("extension_version", s.extension_version);
		check_str("broker_version", s.broker_version);
		check_str("previous_version", s.previous_version);
		check_str("config", s.config);
		check_u("instance", s.instance);
		break;
	}
	case PROPOLIS_KIND_CONNECT: {
		propolis_connect c;
		if (propolis_decode_connect(rec, len, &c)) {
			FAIL("does not decode");
			return;
		}
		check_u("protocol_version", c.protocol_version);
		check_u("flags", c.flags);
		check_u("will_qos", c.will_qos);
		check_u("keepalive", c.keepalive);
		check_u("session_expiry", c.session_expiry);
		check_str("client_id", c.client_id);
		check_str("username", c.username);
		check_b64("password", c.password);
		check_str("remote_addr", c.remote_addr);
		check_str("listener", c.listener);
		check_str("tls_subject", c.tls_subject);
		check_list("tls_sans", c.tls_sans, PROPOLIS_LIST_STR);
		check_str("will_topic", c.will_topic);
		check_b64("will_payload", c.will_payload);
		check_list("user_properties", c.user_properties, PROPOLIS_LIST_PAIR);
		check_u("receive_maximum", c.receive_maximum);
		check_u("will_delay", c.will_delay);
		break;
	}
	case PROPOLIS_KIND_PUBLISH: {
		propolis_publish p;
		if (propolis_decode_publish(rec, len, &p)) {
			FAIL("does not decode");
			return;
		}
		check_u("qos", p.qos);
		check_u("flags", p.flags);
		check_str("client_id", p.client_id);
		check_str("username", p.username);
		check_str("topic", p.topic);
		check_b64("payload", p.payload);
		break;
	}
	case PROPOLIS_KIND_SUBSCRIBE: {
		propolis_subscribe s;
		if (propolis_decode_subscribe(rec, len, &s)) {
			FAIL("does not decode");
			return;
		}
		check_u("qos", s.qos);
		check_u("flags", s.flags);
		check_str("client_id", s.client_id);
		check_str("username", s.username);
		check_str("filter", s.filter);
		break;
	}
	case PROPOLIS_KIND_EVENT: {
		propolis_event e;
		if (propolis_decode_event(rec, len, &e)) {
			FAIL("does not decode");
			return;
		}
		check_u("event", e.event);
		check_u("disconnect_kind", e.disconnect_kind);
		check_u("reason_code", e.reason_code);
		check_u("protocol_version", e.protocol_version);
		check_u("time", e.time);
		check_str("client_id", e.client_id);
		check_str("username", e.username);
		check_str("listener", e.listener);
		check_str("remote_addr", e.remote_addr);
		check_str("reason_string", e.reason_string);
		check_list("filters", e.filters, PROPOLIS_LIST_FILTER);
		break;
	}
	case PROPOLIS_KIND_CONNACK: {
		propolis_connack c;
		if (propolis_decode_connack(rec, len, &c)) {
			FAIL("does not decode");
			return;
		}
		check_u("reason_code", c.reason_code);
		check_u("flags", c.flags);
		check_u("protocol_version", c.protocol_version);
		check_str("client_id", c.client_id);
		check_str("username", c.username);
		check_str("reason_string", c.reason_string);
		check_list("user_properties", c.user_properties, PROPOLIS_LIST_PAIR);
		break;
	}
	case PROPOLIS_KIND_MESSAGE: {
		propolis_message m;
		if (propolis_decode_message(rec, len, &m)) {
			FAIL("does not decode");
			return;
		}
		check_u("direction", m.direction);
		check_u("protocol_version", m.protocol_version);
		check_str("client_id", m.client_id);
		check_str("username", m.username);
		check_str("publisher", m.publisher);
		check_u("qos", m.qos);
		check_u("flags", m.flags);
		check_u("payload_format", m.payload_format);
		check_u("message_expiry", m.message_expiry);
		check_str("topic", m.topic);
		check_b64("payload", m.payload);
		check_list("user_properties", m.user_properties, PROPOLIS_LIST_PAIR);
		check_str("content_type", m.content_type);
		check_str("response_topic", m.response_topic);
		check_b64("correlation_data", m.correlation_data);
		break;
	}
	case PROPOLIS_KIND_SUBSCRIPTION: {
		propolis_subscription s;
		if (propolis_decode_subscription(rec, len, &s)) {
			FAIL("does not decode");
			return;
		}
		check_u("qos", s.qos);
		check_u("options", s.options);
		check_u("protocol_version", s.protocol_version);
		check_u("flags", s.flags);
		check_u("identifier", s.identifier);
		check_str("client_id", s.client_id);
		check_str("username", s.username);
		check_str("filter", s.filter);
		check_list("user_properties", s.user_properties, PROPOLIS_LIST_PAIR);
		break;
	}
	case PROPOLIS_KIND_DISCONNECT: {
		propolis_disconnect d;
		if (propolis_decode_disconnect(rec, len, &d)) {
			FAIL("does not decode");
			return;
		}
		check_u("direction", d.direction);
		check_u("reason_code", d.reason_code);
		check_u("protocol_version", d.protocol_version);
		check_str("client_id", d.client_id);
		check_str("username", d.username);
		check_str("reason_string", d.reason_string);
		check_list("user_properties", d.user_properties, PROPOLIS_LIST_PAIR);
		break;
	}
	default:
		FAIL("record kind %u: the C SDK has no decoder for it", kind);
		return;
	}
	int members = 0;
	propolis_json_iter it = propolis_json_iterate(want);
	propolis_json k, v;
	while (propolis_json_next(&it, &k, &v))
		members++;
	if (members != checked)
		FAIL("the JSON has %d fields, the decoder compared %d: a field the SDK does not know", members, checked);
}

/* decode_any decodes rec as its header's kind; 0 or -1. */
static int decode_any(const uint8_t *rec, uint32_t len) {
	union {
		propolis_start s;
		propolis_connect c;
		propolis_publish p;
		propolis_subscribe sb;
		propolis_event e;
		propolis_connack ca;
		propolis_message m;
		propolis_subscription su;
		propolis_disconnect d;
	} u;
	switch (rec[4] | rec[5] << 8) {
	case PROPOLIS_KIND_START: return propolis_decode_start(rec, len, &u.s);
	case PROPOLIS_KIND_CONNECT: return propolis_decode_connect(rec, len, &u.c);
	case PROPOLIS_KIND_PUBLISH: return propolis_decode_publish(rec, len, &u.p);
	case PROPOLIS_KIND_SUBSCRIBE: return propolis_decode_subscribe(rec, len, &u.sb);
	case PROPOLIS_KIND_EVENT: return propolis_decode_event(rec, len, &u.e);
	case PROPOLIS_KIND_CONNACK: return propolis_decode_connack(rec, len, &u.ca);
	case PROPOLIS_KIND_MESSAGE: return propolis_decode_message(rec, len, &u.m);
	case PROPOLIS_KIND_SUBSCRIPTION: return propolis_decode_subscription(rec, len, &u.su);
	case PROPOLIS_KIND_DISCONNECT: return propolis_decode_disconnect(rec, len, &u.d);
	}
	return -1;
}

static void put_u32(uint8_t *p, uint32_t v) {
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_vector(const char *dir, const char *name) {
	char path[4096];
	size_t hl, jl;
	uint32_t len;
	current = name;
	snprintf(path, sizeof path, "%s/%s.hex", dir, name);
	char *hex = read_file(path, &hl);
	snprintf(path, sizeof path, "%s/%s.json", dir, name);
	char *js = read_file(path, &jl);
	if (!hex || !js) {
		FAIL("cannot read %s.hex and %s.json in %s", name, name, dir);
		return;
	}
	uint8_t *rec = parse_hex(hex, &len);
	propolis_bytes doc = {(const uint8_t *)js, (uint32_t)jl};
	if (!rec || propolis_json_parse(doc, &want) != 0 || want.type != PROPOLIS_JSON_OBJECT) {
		FAIL("bad vector files");
		return;
	}
	compare(rec, len);

	/* A record of a later minor version: extra trailing bytes, counted in
	 * its length, read the same. */
	uint8_t *longer = malloc(len + 5);
	memcpy(longer, rec, len);
	memcpy(longer + len, "\x01\x02\x03\x04\x05", 5);
	put_u32(longer, len + 5);
	current = "later minor";
	compare(longer, len + 5);

	/* Bytes in the buffer beyond the header's length are not the record's. */
	put_u32(longer, len);
	current = "buffer longer than the record";
	compare(longer, len + 5);
	free(longer);

	/* Every cut of the record either decodes (a shorter record of an
	 * older minor: missing fields read as zero) or is refused, and a cut
	 * in the middle of the first field's bytes is refused. Never a read
	 * beyond the cut (run under -fsanitize=address to see one). */
	current = name;
	for (uint32_t cut = 8; cut < len; cut++) {
		uint8_t *c = malloc(cut);
		memcpy(c, rec, cut);
		put_u32(c, cut);
		(void)decode_any(c, cut);
		free(c);
	}
	/* A header claiming more than the buffer holds, or another kind. */
	if (decode_any(rec, len - 1) == 0)
		FAIL("a record longer than its buffer decoded");
	if ((rec[4] | rec[5] << 8) == PROPOLIS_KIND_START) {
		uint8_t c[9];
		memcpy(c, rec, 9);
		put_u32(c, 9);
		if (decode_any(c, 9) == 0)
			FAIL("a START cut inside its first str decoded");
	}
	free(rec);
	free(hex);
	free(js);
}

static void test_short_publish(void) {
	/* A PUBLISH cut after its user name reads topic and payload as empty. */
	uint8_t rec[] = {0, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'c', 1, 0, 0, 0, 'u'};
	propolis_publish p;
	current = "short publish";
	put_u32(rec, sizeof rec);
	if (propolis_decode_publish(rec, sizeof rec, &p) != 0 || p.qos != 1 || !propolis_eq(p.username, "u") ||
	    p.topic.len != 0 || p.payload.len != 0)
		FAIL("a shorter record did not read as zero values");
	rec[sizeof rec - 5] = 2; /* the user name's length now runs past the end */
	if (propolis_decode_publish(rec, sizeof rec, &p) == 0)
		FAIL("a str cut short decoded");
	rec[4] = 4;
	if (propolis_decode_publish(rec, sizeof rec, &p) == 0)
		FAIL("a SUBSCRIBE decoded as a PUBLISH");
}

static void test_filters(void) {
	static const struct {
		const char *filter, *sub;
		int want;
	} cases[] = {
	    {"a/b", "a/b", 1},         {"a/+", "a/b", 1},         {"a/+", "a/b/c", 0},   {"a/#", "a", 1},
	    {"a/#", "a/b/c", 1},       {"#", "a/b", 1},           {"#", "$SYS/x", 0},    {"+/x", "$SYS/x", 0},
	    {"$SYS/#", "$SYS/x", 1},   {"a/+", "a/+", 1},         {"a/b", "a/+", 0},     {"a/+", "a/#", 0},
	    {"a/#", "a/#", 1},         {"a/#", "a/+/c", 1},       {"a/b", "a/b/c", 0},   {"a/b/c", "a/b", 0},
	    {"+", "", 1},              {"a//b", "a//b", 1},       {"a/+/b", "a//b", 1},  {"dev/{x}", "dev/{x}", 1},
	};
	current = "filter covers";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (propolis_filter_covers(propolis_cstr(cases[i].filter), propolis_cstr(cases[i].sub)) != cases[i].want)
			FAIL("%s covers %s: want %d", cases[i].filter, cases[i].sub, cases[i].want);
	}
}

static void test_intersects(void) {
	static const struct {
		const char *a, *b;
		int want;
	} cases[] = {
	    {"secret/#", "#", 1},      {"secret/#", "+/plans", 1}, {"secret/#", "+/+", 1},    {"secret/#", "+", 1},
	    {"secret/#", "secret", 1}, {"secret/#", "public/#", 0}, {"secret/#", "+/+/x", 1}, {"a/+", "b/#", 0},
	    {"a/+", "a", 0},           {"a/+", "a/b/c", 0},        {"a/+", "+/b", 1},        {"a/b", "a/b", 1},
	    {"a/b", "a/c", 0},         {"a", "a/#", 1},            {"a", "a/+", 0},          {"a/#", "a/#", 1},
	    {"#", "$SYS/x", 0},        {"+/x", "$SYS/x", 0},       {"$SYS/#", "#", 0},       {"$SYS/#", "+/#", 0},
	    {"$SYS/#", "$SYS/+", 1},   {"#", "+", 1},              {"+", "", 1},             {"a//b", "a/+/b", 1},
	    {"", "#", 1},              {"x/#", "x/y/z", 1},        {"x/y/z", "x/y", 0},      {"x/y", "x/y/z", 0},
	};
	current = "filter intersects";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		propolis_bytes a = propolis_cstr(cases[i].a), b = propolis_cstr(cases[i].b);
		if (propolis_filter_intersects(a, b) != cases[i].want)
			FAIL("%s intersects %s: want %d", cases[i].a, cases[i].b, cases[i].want);
		if (propolis_filter_intersects(b, a) != cases[i].want)
			FAIL("%s intersects %s: want %d", cases[i].b, cases[i].a, cases[i].want);
	}
}

static void test_json(void) {
	static const char *bad[] = {"", "{", "{\"a\":}", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"a\nb\"",
	                            "nul", "[1] x", "{\"a\":1,}", "-", "1e"};
	static const char *good[] = {"{}", " [ ] ", "0", "-1.5e+3", "\"\\u00e9\\ud83d\\ude00\"", "{\"a\":[1,{\"b\":null}]}",
	                             "true"};
	propolis_json v, m;
	current = "json";
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (propolis_json_parse(propolis_cstr(bad[i]), &v) == 0)
			FAIL("accepted %s", bad[i]);
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (propolis_json_parse(propolis_cstr(good[i]), &v) != 0)
			FAIL("refused %s", good[i]);
	propolis_json_parse(propolis_cstr("\"\\u00e9\\ud83d\\ude00\\n\""), &v);
	char buf[16];
	if (propolis_json_unescape(v, buf, sizeof buf) != 7 || memcmp(buf, "\xc3\xa9\xf0\x9f\x98\x80\n", 7) != 0)
		FAIL("unescape");
	if (propolis_json_unescape(v, buf, 7) != -1)
		FAIL("unescape into a short buffer");
	propolis_json_parse(propolis_cstr("{\"x\": 1, \"k\\u0065y\": {\"n\": 18446744073709551615, \"t\": true}}"), &v);
	uint64_t n;
	int b;
	if (!propolis_json_member(v, "key", &m) || !propolis_json_member(m, "n", &m) || propolis_json_u64(m, &n) != 0 ||
	    n != UINT64_MAX)
		FAIL("member lookup");
	propolis_json_parse(propolis_cstr("{\"n\": 18446744073709551616, \"t\": true}"), &v);
	if (!propolis_json_member(v, "n", &m) || propolis_json_u64(m, &n) == 0)
		FAIL("2^64 read as a u64");
	if (!propolis_json_member(v, "t", &m) || propolis_json_bool(m, &b) != 0 || !b)
		FAIL("bool");
	if (propolis_json_member(v, "missing", &m))
		FAIL("found a missing member");
}

int main(int argc, char **argv) {
	const char *dir = argc > 1 ? argv[1] : "abi/testdata";
	DIR *d = opendir(dir);
	struct dirent *e;
	int vectors = 0;
	if (!d) {
		fprintf(stderr, "cannot open %s\n", dir);
		return 2;
	}
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".hex") == 0) {
			char name[256];
			snprintf(name, sizeof name, "%.*s", (int)(n - 4), e->d_name);
			test_vector(dir, name);
			vectors++;
		}
	}
	closedir(d);
	if (vectors == 0) {
		fprintf(stderr, "no vectors in %s\n", dir);
		return 2;
	}
	test_short_publish();
	test_filters();
	test_intersects();
	test_json();
	if (failures) {
		fprintf(stderr, "C SDK: %d failures\n", failures);
		return 1;
	}
	printf("C SDK: %d record vectors, filters and JSON reader ok\n", vectors);
	return 0;
}
