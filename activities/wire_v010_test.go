package activities_test

import (
	"testing"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The WaitForExit result, as v0.1.0 runs recorded it (they watch with it),
// reads and writes the very bytes their histories hold. Retired with v0.1.0.
func TestWaitForExitResultRoundTripsV010Ones(t *testing.T) {
	_, waits := recordedPayloads(t, "v0.1.0", replica.WaitForExitName)
	if len(waits) == 0 {
		t.Fatal("recorded: no WaitForExit result in the v0.1.0 histories")
	}
	for _, s := range waits {
		roundTrip[runtime.Exit](t, "WaitForExit result", s)
	}
}
