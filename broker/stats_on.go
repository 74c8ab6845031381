//go:build !propolis_nometrics

package broker

// countMessages says whether the hook counts every PUBLISH in and out
// (stats.received, stats.sent). Built with the propolis_nometrics tag it is
// false, which compiles those per-message adds out, for measuring their
// cost (`make bench` against such a build; RATIONALE.md, "How does the
// broker count for metrics?"). Every other count is per event, not per
// message, and stays.
const countMessages = true
