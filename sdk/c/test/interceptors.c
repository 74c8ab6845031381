/*
 * A test extension using the C SDK's interceptor, event and lifecycle
 * macros; host/sdk_examples_test.go loads it in a broker and drives it
 * with MQTT 5 clients:
 *
 * - authenticate: ALLOW, unless the client id is "deny-me";
 * - intercept_connect: a client sending no keepalive gets 60 s;
 * - intercept_connack: adds the user property via=c-sdk;
 * - intercept_publish_inbound: moves legacy/<rest> to modern/<rest> and
 *   appends the user property moved=yes; refuses a payload "drop" with 0x99;
 * - intercept_publish_outbound: adds seen-by=<subscriber>;
 * - intercept_subscribe: caps the QoS at 1;
 * - intercept_disconnect: nothing (NEXT);
 * - on_event, tick, stop: log a line.
 */
#include "propolis.h"

#include <stdio.h>

static propolis_decision authenticate(const propolis_connect *c) {
	if (propolis_eq(c->client_id, "deny-me")) {
		propolis_set_reason("c-sdk test says no");
		return propolis_deny(0);
	}
	return propolis_allow();
}

static propolis_decision intercept_connect(const propolis_connect *c) {
	if (c->keepalive == 0)
		propolis_host_packet_set_int(PROPOLIS_FIELD_KEEPALIVE, 60);
	return propolis_next();
}

/* append_property replaces the user properties with props + (key, value). */
static int32_t append_property(propolis_list props, const char *key, propolis_bytes value) {
	propolis_pair pairs[33];
	uint32_t n = 0;
	propolis_iter it = propolis_list_iter(props);
	while (n < 32 && propolis_next_pair(&it, &pairs[n]))
		n++;
	pairs[n].key = propolis_cstr(key);
	pairs[n].value = value;
	return propolis_packet_set_properties(pairs, n + 1);
}

static propolis_decision intercept_connack(const propolis_connack *c) {
	append_property(c->user_properties, "via", propolis_cstr("c-sdk"));
	return propolis_next();
}

static propolis_decision inbound(const propolis_message *m) {
	if (propolis_eq(m->payload, "drop")) {
		propolis_set_reason("payload refused by the C SDK test");
		return propolis_deny(PROPOLIS_CODE_PAYLOAD_FORMAT_INVALID);
	}
	if (propolis_has_prefix(m->topic, "legacy/")) {
		char topic[512];
		int n = snprintf(topic, sizeof topic, "modern/%.*s", (int)(m->topic.len - 7), (const char *)m->topic.ptr + 7);
		if (n > 0 && (size_t)n < sizeof topic)
			propolis_host_packet_set(PROPOLIS_FIELD_TOPIC, topic, n);
		append_property(m->user_properties, "moved", propolis_cstr("yes"));
	}
	return propolis_next();
}

static propolis_decision outbound(const propolis_message *m) {
	append_property(m->user_properties, "seen-by", m->client_id);
	return propolis_next();
}

static propolis_decision intercept_subscribe(const propolis_subscription *s) {
	if (s->qos > 1)
		propolis_host_packet_set_int(PROPOLIS_FIELD_QOS, 1);
	return propolis_next();
}

static propolis_decision intercept_disconnect(const propolis_disconnect *d) {
	(void)d;
	return propolis_next();
}

static void on_event(const propolis_event *e) {
	char line[256];
	snprintf(line, sizeof line, "c-sdk event %s client %.*s", propolis_event_name(e->event), (int)e->client_id.len,
	         (const char *)e->client_id.ptr);
	propolis_log(PROPOLIS_LOG_INFO, line);
}

static void tick(void) { propolis_log(PROPOLIS_LOG_DEBUG, "c-sdk tick"); }
static void stop(void) { propolis_log(PROPOLIS_LOG_DEBUG, "c-sdk stop"); }

PROPOLIS_AUTHENTICATE(authenticate)
PROPOLIS_INTERCEPT_CONNECT(intercept_connect)
PROPOLIS_INTERCEPT_CONNACK(intercept_connack)
PROPOLIS_INTERCEPT_PUBLISH_INBOUND(inbound)
PROPOLIS_INTERCEPT_PUBLISH_OUTBOUND(outbound)
PROPOLIS_INTERCEPT_SUBSCRIBE(intercept_subscribe)
PROPOLIS_INTERCEPT_DISCONNECT(intercept_disconnect)
PROPOLIS_ON_EVENT(on_event)
PROPOLIS_TICK(tick)
PROPOLIS_STOP(stop)
