/*
 * c-topic-acl: a topic access control list, written in C with the Propolis
 * C SDK. It authorizes every PUBLISH (wills included) and every SUBSCRIBE
 * filter against rules from the manifest's config:
 *
 *   config:
 *     default: deny              # no rule matched: deny (0x87) or next
 *     rules:
 *       - users: [admin]         # user names; absent: any client
 *         access: both           # publish, subscribe or both (default)
 *         topics: ["#"]
 *       - clients: ["sensor-*"]  # client ids; a final * is a prefix
 *         access: publish
 *         topics: ["devices/{clientid}/#"]
 *         max_qos: 1             # allow only up to QoS 1
 *       - decision: deny         # allow (default) or deny
 *         topics: ["secret/#"]
 *
 * Rules are tried in order; the first whose users and clients match the
 * client, whose access covers the action, whose max_qos admits the QoS
 * and one of whose topics matches decides. For a PUBLISH a topic matches
 * the topic name. For a SUBSCRIBE (a $share/<group>/ prefix is looked
 * through) an allow rule's topic must cover the filter (be equal or
 * wider), and a deny rule's topic need only overlap it: some topic
 * matches both, so deny "secret/#" refuses "#" and "+/plans", which would
 * receive secret/plans. {clientid} and {username} in a topic stand for the
 * client's. A client id or user name holding '+', '#' or '/', or empty,
 * cannot fill a placeholder: an allow rule's topic then matches nothing,
 * and a deny rule's topic is widened to its levels before the placeholder
 * followed by '#' (deny "users/{username}/admin" denies "users/#" to a
 * client with the user name "a/b"), so a deny rule never fails open.
 *
 * It only authorizes: clients get in through an authenticator (a security
 * extension such as allow-all or file-auth).
 */
#include "propolis.h"
#include "propolis_json.h"

#include <stdarg.h>
#include <stdio.h>

enum { ACCESS_PUBLISH = 1, ACCESS_SUBSCRIBE = 2, ACCESS_BOTH = 3 };

typedef struct {
	char **items;
	uint32_t n;
} strlist;

typedef struct {
	strlist users, clients, topics;
	int access, allow, max_qos; /* max_qos -1: any */
} rule;

/* The rules are configuration, the same in every instance: each instance
 * parses them at its start. No per-client state is kept. */
static rule *rules;
static uint32_t nrules;
static int default_next;

static char reason[1024];

/* refuse sets why the start fails ("c-topic-acl: config " + the
 * formatted text) and returns non-zero. */
__attribute__((format(printf, 1, 2))) static int refuse(const char *fmt, ...) {
	va_list ap;
	int n = snprintf(reason, sizeof reason, "c-topic-acl: config ");
	va_start(ap, fmt);
	vsnprintf(reason + n, sizeof reason - (size_t)n, fmt, ap);
	va_end(ap);
	propolis_set_reason(reason);
	return 1;
}

/* read_list reads a JSON array of strings (or one string) into *out. */
static int read_list(propolis_json v, strlist *out) {
	propolis_json el;
	propolis_json_iter it;
	if (v.type == PROPOLIS_JSON_STRING) {
		out->items = malloc(sizeof(char *));
		out->n = 1;
		return (out->items && (out->items[0] = propolis_json_strdup(v, NULL))) ? 0 : -1;
	}
	if (v.type != PROPOLIS_JSON_ARRAY)
		return -1;
	it = propolis_json_iterate(v);
	while (propolis_json_next(&it, NULL, &el)) {
		char *s = propolis_json_strdup(el, NULL);
		char **grown = realloc(out->items, (out->n + 1) * sizeof(char *));
		if (s == NULL || grown == NULL) {
			free(s);
			return -1;
		}
		out->items = grown;
		out->items[out->n++] = s;
	}
	return out->n > 0 ? 0 : -1;
}

static int start(const propolis_start *s) {
	propolis_json doc, v, list, r;
	if (propolis_json_parse(s->config, &doc) != 0 || doc.type != PROPOLIS_JSON_OBJECT)
		return refuse("is not a JSON object");
	if (propolis_json_member(doc, "default", &v)) {
		if (propolis_json_is(v, "next"))
			default_next = 1;
		else if (!propolis_json_is(v, "deny"))
			return refuse("default must be deny or next");
	}
	if (!propolis_json_member(doc, "rules", &list) || list.type != PROPOLIS_JSON_ARRAY)
		return refuse("rules must be a list of rules");
	propolis_json_iter it = propolis_json_iterate(list);
	while (propolis_json_next(&it, NULL, &r)) {
		unsigned idx = nrules + 1;
		rule *grown = realloc(rules, (nrules + 1) * sizeof(rule));
		if (grown == NULL)
			return refuse("rules[%u]: out of memory", idx);
		rules = grown;
		rule *ru = &rules[nrules++];
		memset(ru, 0, sizeof *ru);
		ru->access = ACCESS_BOTH;
		ru->allow = 1;
		ru->max_qos = -1;
		if (r.type != PROPOLIS_JSON_OBJECT)
			return refuse("rules[%u] is not a mapping", idx);
		propolis_json_iter mt = propolis_json_iterate(r);
		propolis_json k;
		while (propolis_json_next(&mt, &k, &v)) {
			if (propolis_json_is(k, "users")) {
				if (read_list(v, &ru->users))
					return refuse("rules[%u].%s must be a non-empty list of strings", idx, "users");
			} else if (propolis_json_is(k, "clients")) {
				if (read_list(v, &ru->clients))
					return refuse("rules[%u].%s must be a non-empty list of strings", idx,
					              "clients");
			} else if (propolis_json_is(k, "topics")) {
				if (read_list(v, &ru->topics))
					return refuse("rules[%u].%s must be a non-empty list of strings", idx,
					              "topics");
			} else if (propolis_json_is(k, "access")) {
				if (propolis_json_is(v, "publish"))
					ru->access = ACCESS_PUBLISH;
				else if (propolis_json_is(v, "subscribe"))
					ru->access = ACCESS_SUBSCRIBE;
				else if (!propolis_json_is(v, "both"))
					return refuse("rules[%u].%s must be publish, subscribe or both", idx,
					              "access");
			} else if (propolis_json_is(k, "decision")) {
				if (propolis_json_is(v, "deny"))
					ru->allow = 0;
				else if (!propolis_json_is(v, "allow"))
					return refuse("rules[%u].%s must be allow or deny", idx, "decision");
			} else if (propolis_json_is(k, "max_qos")) {
				uint64_t q;
				if (propolis_json_u64(v, &q) != 0 || q > 2)
					return refuse("rules[%u].%s must be 0, 1 or 2", idx, "max_qos");
				ru->max_qos = (int)q;
			} else {
				char key[64];
				if (propolis_json_unescape(k, key, sizeof key) < 0)
					strcpy(key, "?");
				return refuse("rules[%u] has the unknown key %s", idx, key);
			}
		}
		if (ru->topics.n == 0)
			return refuse("rules[%u] has no topics", idx);
	}
	if (nrules == 0)
		return refuse("rules is empty");
	if (s->instance == 0) {
		snprintf(reason, sizeof reason, "c-topic-acl %.*s: %u rules, default %s", (int)s->extension_version.len,
		         (const char *)s->extension_version.ptr, nrules, default_next ? "next" : "deny");
		propolis_log(PROPOLIS_LOG_INFO, reason);
	}
	return 0;
}

/* name_matches: an exact name, or a prefix ending in '*'. */
static int name_matches(const strlist *l, propolis_bytes name) {
	if (l->n == 0)
		return 1;
	for (uint32_t i = 0; i < l->n; i++) {
		const char *p = l->items[i];
		size_t n = strlen(p);
		if (n > 0 && p[n - 1] == '*') {
			if (name.len >= n - 1 && memcmp(name.ptr, p, n - 1) == 0)
				return 1;
		} else if (propolis_eq(name, p)) {
			return 1;
		}
	}
	return 0;
}

static int placeholder_safe(propolis_bytes b) {
	for (uint32_t i = 0; i < b.len; i++)
		if (b.ptr[i] == '+' || b.ptr[i] == '#' || b.ptr[i] == '/')
			return 0;
	return b.len > 0;
}

/* A scratch buffer for expanded topics: an instance runs one callback at
 * a time. */
static char *scratch;
static size_t scratch_cap;

/* expand replaces {clientid} and {username} in pattern; 0 when a
 * placeholder cannot be filled (unsafe or empty value) or memory ran out.
 * With widen (deny rules), a placeholder that cannot be filled ends the
 * filter instead: the levels before its level, then '#', which covers
 * every topic the rule could have meant; out of memory, the filter is
 * "#". */
static int expand(const char *pattern, propolis_bytes cid, propolis_bytes user, int widen, propolis_bytes *out) {
	size_t need = strlen(pattern) + 1, n = 0;
	const char *p;
	for (p = strstr(pattern, "{clientid}"); p; p = strstr(p + 1, "{clientid}"))
		need += cid.len;
	for (p = strstr(pattern, "{username}"); p; p = strstr(p + 1, "{username}"))
		need += user.len;
	if (need > scratch_cap) {
		char *b = realloc(scratch, need);
		if (b == NULL) {
			if (!widen)
				return 0;
			out->ptr = (const uint8_t *)"#";
			out->len = 1;
			return 1;
		}
		scratch = b;
		scratch_cap = need;
	}
	for (p = pattern; *p;) {
		propolis_bytes v;
		size_t skip;
		if (strncmp(p, "{clientid}", 10) == 0) {
			v = cid;
			skip = 10;
		} else if (strncmp(p, "{username}", 10) == 0) {
			v = user;
			skip = 10;
		} else {
			scratch[n++] = *p++;
			continue;
		}
		if (!placeholder_safe(v)) {
			if (!widen)
				return 0;
			while (n > 0 && scratch[n - 1] != '/')
				n--;
			scratch[n++] = '#';
			break;
		}
		memcpy(scratch + n, v.ptr, v.len);
		n += v.len;
		p += skip;
	}
	out->ptr = (const uint8_t *)scratch;
	out->len = (uint32_t)n;
	return 1;
}

/* decide finds the first rule for the action; the reason string names
 * the topic. */
static propolis_decision decide(int access, propolis_bytes cid, propolis_bytes user, propolis_bytes topic, int qos) {
	const char *verb = access == ACCESS_PUBLISH ? "publishing to" : "subscribing to";
	for (uint32_t i = 0; i < nrules; i++) {
		const rule *r = &rules[i];
		if (!(r->access & access) || !name_matches(&r->users, user) || !name_matches(&r->clients, cid))
			continue;
		if (r->allow && r->max_qos >= 0 && qos > r->max_qos)
			continue;
		for (uint32_t t = 0; t < r->topics.n; t++) {
			propolis_bytes pat;
			if (!expand(r->topics.items[t], cid, user, !r->allow, &pat))
				continue;
			/* A deny rule refuses a subscription that would receive any
			 * of its topics; an allow rule must cover all it receives. */
			if (!r->allow && access == ACCESS_SUBSCRIBE ? !propolis_filter_intersects(pat, topic)
			                                             : !propolis_filter_covers(pat, topic))
				continue;
			if (r->allow)
				return propolis_allow();
			snprintf(reason, sizeof reason, "rule %u forbids %s %.*s", i + 1, verb, (int)(topic.len > 900 ? 900 : topic.len),
			         (const char *)topic.ptr);
			propolis_set_reason(reason);
			return propolis_deny(PROPOLIS_CODE_NOT_AUTHORIZED);
		}
	}
	if (default_next)
		return propolis_next();
	snprintf(reason, sizeof reason, "no rule allows %s %.*s", verb, (int)(topic.len > 900 ? 900 : topic.len),
	         (const char *)topic.ptr);
	propolis_set_reason(reason);
	return propolis_deny(PROPOLIS_CODE_NOT_AUTHORIZED);
}

static propolis_decision authorize_publish(const propolis_publish *p) {
	return decide(ACCESS_PUBLISH, p->client_id, p->username, p->topic, p->qos);
}

static propolis_decision authorize_subscribe(const propolis_subscribe *s) {
	propolis_bytes filter = s->filter;
	if (s->flags & PROPOLIS_SUBSCRIBE_SHARED) {
		/* $share/<group>/<filter>: the rules speak of the filter */
		uint32_t slashes = 0, i = 0;
		while (i < filter.len && slashes < 2)
			if (filter.ptr[i++] == '/')
				slashes++;
		filter.ptr += i;
		filter.len -= i;
	}
	return decide(ACCESS_SUBSCRIBE, s->client_id, s->username, filter, s->qos);
}

PROPOLIS_START(start)
PROPOLIS_AUTHORIZE_PUBLISH(authorize_publish)
PROPOLIS_AUTHORIZE_SUBSCRIBE(authorize_subscribe)
