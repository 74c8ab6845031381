package conformance

import (
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
)

// TestSameAnswer: the "same answer on every instance" check compares what
// the broker is told (decision, code, reason, changes) and whether the
// call answered at all, not the raw outcome: an ALLOW made while a service
// call was rate limited is the same answer as a plain ALLOW.
func TestSameAnswer(t *testing.T) {
	allow := answer{outcome: host.OutcomeAllow, decision: abi.DecisionAllow}
	limited := answer{outcome: host.OutcomeRateLimited, decision: abi.DecisionAllow}
	deny := answer{outcome: host.OutcomeDeny, decision: abi.DecisionDeny, code: 0x87}
	limitedDeny := answer{outcome: host.OutcomeRateLimited, decision: abi.DecisionDeny, code: 0x87}
	trap := answer{outcome: host.OutcomeTrap}
	deadline := answer{outcome: host.OutcomeDeadline}
	for _, tc := range []struct {
		a, b answer
		same bool
	}{
		{allow, allow, true},
		{allow, limited, true},
		{deny, limitedDeny, true},
		{trap, deadline, true},
		{allow, deny, false},
		{limited, limitedDeny, false},
		{allow, trap, false},
		{deny, answer{outcome: host.OutcomeDeny, decision: abi.DecisionDeny, code: 0x87, reason: "x"}, false},
		{allow, answer{outcome: host.OutcomeAllow, decision: abi.DecisionAllow, changes: "qos=1"}, false},
	} {
		if got := tc.a.same(tc.b); got != tc.same {
			t.Errorf("%s vs %s: same = %v, want %v", tc.a.withOutcome(), tc.b.withOutcome(), got, tc.same)
		}
	}
	if s := limited.withOutcome(); !strings.Contains(s, "rate_limited") {
		t.Errorf("a rate-limited answer reads %q: the outcome is hidden", s)
	}
}
