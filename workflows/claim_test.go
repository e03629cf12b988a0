package workflows

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
)

func TestRefuseClaim(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	holder := &Claim{ID: "c1", Worker: "w1", NodeID: "n1", Instance: "i1", Host: "alpha"}
	live := func(c Claim) Claim { c.HolderWorker, c.HolderSeen = "w1", now.Add(-20*time.Second); return c }
	silent := func(c Claim) Claim { c.HolderWorker, c.HolderSeen = "w1", now.Add(-NodeClaimLiveFor); return c }
	other := Claim{ID: "c2", Worker: "w2", NodeID: "n2", Instance: "i2", Host: "beta"}
	clone := Claim{ID: "c3", Worker: "w3", NodeID: "n1", Instance: "i3", Host: "alpha"}
	restart := clone
	restart.Replaces = "i1"
	for _, tc := range []struct {
		name      string
		cur       *Claim
		takenOver bool
		c         Claim
		refused   bool
		lapsed    time.Time
	}{
		{"first claim", nil, false, live(other), false, time.Time{}},
		{"after a v0.2.0 claim", &Claim{ID: "c0", Worker: "w0"}, false, live(other), false, time.Time{}},
		{"another identity, holder alive", holder, false, live(other), true, time.Time{}},
		{"another identity, holder silent a minute", holder, false, silent(other), false, time.Time{}},
		{"another identity, no watch running", holder, false, other, false, time.Time{}},
		{"another identity, the watch on another worker", holder, false, func() Claim { c := live(other); c.HolderWorker = "w9"; return c }(), false, time.Time{}},
		{"another identity after takeover", holder, true, live(other), false, time.Time{}},
		{"same identity, another instance alive", holder, false, live(clone), true, time.Time{}},
		{"same identity, a restart on the host", holder, false, live(restart), false, time.Time{}},
		{"the holder again", holder, false, live(Claim{ID: "c4", Worker: "w1", NodeID: "n1", Instance: "i1"}), false, time.Time{}},
		{"another identity, the lease lapsed 20 s ago", holder, false, other, true, now.Add(-20 * time.Second)},
		{"another identity, the lease lapsed a minute ago", holder, false, other, false, now.Add(-NodeClaimLiveFor)},
		{"the holder back after a lapse", holder, false, Claim{ID: "c5", Worker: "w1", NodeID: "n1", Instance: "i1"}, false, now.Add(-20 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refuseClaim("vm", tc.cur, tc.takenOver, tc.lapsed, tc.c, now)
			var appErr *temporal.ApplicationError
			if got := errors.As(err, &appErr) && appErr.Type() == replica.ErrTypeNodeClaimed; got != tc.refused {
				t.Fatalf("refused = %v (%v), want %v", got, err, tc.refused)
			}
			if tc.refused && tc.c.NodeID != tc.cur.NodeID && !(strings.Contains(appErr.Message(), "alpha") && strings.Contains(appErr.Message(), "vigil node takeover vm")) {
				t.Errorf("refusal %q should name the holder's host and the fix", appErr.Message())
			}
		})
	}
	if err := refuseClaim("vm", nil, false, time.Time{}, Claim{ID: "c"}, now); err == nil {
		t.Error("a claim without node identity and instance is accepted")
	}
}
