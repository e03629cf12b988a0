package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// Workflow versioning, by release. Replicas run for months, and a new worker
// replays the histories an old worker wrote, so every run reads the release
// it was started under, once, first thing (readRelease), and every difference
// between releases' commands branches on that one ordered value.
//
// The rule:
//   - A change to the commands or payloads of a workflow (replica, node,
//     deployment) is part of the release in development (the last Release
//     below). Branch on `rel < Vxyz` inside the helper whose commands differ,
//     never at each call site; the old branch keeps issuing exactly the old
//     commands.
//   - Register a scenario for the new behaviour in internal/histories
//     (Scenarios, Since: the release) so the release's recorded set
//     (workflows/testdata/histories/<release>/, written by
//     go run ./tools/record-histories) covers it; TestReplayEveryRelease
//     replays every release's set in make test.
//   - Code that only an old release's runs execute lives in that release's
//     own file (supervisor_v010.go), so retiring the release is deleting the
//     file and its histories.
//   - Retiring: every run since v0.2.0 continues as new at least once a day,
//     so one day after the last worker of the old release stopped, no open
//     run is of it. Runs of v0.1.0 have no such timer: `vigil rollover` moves
//     each to a new run (README, Retiring a version branch).
//   - Not commands only: payloads a workflow or activity of the previous
//     release must read (inputs, results, signals, carried state) stay
//     readable by it while both run (README, the mixed-fleet window).
//
// Logs: node runs since V030 have no logs update; the CLI reads logs from
// the endpoint the node's claim advertises (Claim.Logs), so no log byte is
// stored in history. Earlier node runs keep serving it (nodelogs.go).
//
// History: releases before v0.3.0 had no release marker. A v0.2.0 replica run
// carries six change-ID markers (v020Changes), a v0.1.0 run none; the node
// and deployment workflows came with v0.2.0 and had no gate at all.

// Release is a Vigil release, oldest first.
type Release int

const (
	// V010 supervised one machine: a heartbeating WaitForExit per replica.
	// Its payloads wrote durations as nanoseconds (still read:
	// internal/humanjson), its updates return no result, its containers had
	// no network but loopback and no mounts (runtime.Serving's zero value),
	// and its nodes serve logs only through a FetchLogs workflow.
	V010 Release = 1
	// V020: the day-2 release (deployments, exit reasons, honest state,
	// networking, the node watch).
	V020 Release = 2
	// V030 is the release in development: one release marker per run; a
	// deployment observes its replicas before each replacement, counts
	// those down against max_unavailable and preflights the batch on its
	// nodes (Preflight) before it stops anything. A replica keeps the
	// rule that decided its last exit, who shut its service down and the
	// failed probe's answer, and an operator's restart that ends a
	// backoff is not counted as a crash restart (it was before). A
	// replica's run continues as new at the replica's own phase, between
	// half and all of ContinueAsNewEvery after it began (exactly all of it
	// before).
	V030 Release = 3

	// CurrentRelease is the release new runs are recorded as.
	CurrentRelease = V030
)

var releaseNames = map[Release]string{V010: "v0.1.0", V020: "v0.2.0", V030: "v0.3.0"}

func (r Release) String() string {
	if n, ok := releaseNames[r]; ok {
		return n
	}
	return fmt.Sprintf("release(%d)", int(r))
}

// ReleaseMarker is the change ID of the release marker (since v0.3.0): its
// version is the Release the run was started under.
const ReleaseMarker = "vigil-release"

// v020Changes are the change IDs a v0.2.0 replica run recorded, in the order
// it read them. A run has all of them (v0.2.0) or none (v0.1.0).
var v020Changes = []string{
	"periodic-continue-as-new", // continue as new once a day
	"deployments",              // a shutdown policy shuts the whole service down
	"exit-reasons",             // rules, exponential backoff, exit reasons
	"honest-state",             // Pending/Unsupervised states; every request heard
	"network-status",           // address and ports kept in state
	"node-watch",               // liveness per node instead of WaitForExit
}

// readRelease reads the release of this run. Call it once, first thing in a
// run, before any other command. A run recorded before the release marker
// existed is told apart by legacy (nil: such runs are v0.2.0).
func readRelease(ctx workflow.Context, legacy func(workflow.Context) Release) Release {
	v := workflow.GetVersion(ctx, ReleaseMarker, workflow.DefaultVersion, workflow.Version(CurrentRelease))
	if v != workflow.DefaultVersion {
		if _, ok := releaseNames[Release(v)]; !ok || Release(v) < V030 {
			panic(fmt.Sprintf("run recorded as %s, which this worker does not know", Release(v)))
		}
		return Release(v)
	}
	if legacy == nil {
		return V020
	}
	return legacy(ctx)
}

// replicaLegacyRelease tells a replica run recorded before the release
// marker by its change-ID markers: all of them is v0.2.0, none v0.1.0. No
// release records another combination: such a run is refused (the workflow
// task fails, visibly, and nothing is done on a guess).
func replicaLegacyRelease(ctx workflow.Context) Release {
	n := 0
	for _, id := range v020Changes {
		if workflow.GetVersion(ctx, id, workflow.DefaultVersion, 1) >= 1 {
			n++
		}
	}
	switch n {
	case 0:
		return V010
	case len(v020Changes):
		return V020
	}
	panic(fmt.Sprintf("run has %d of the %d v0.2.0 change markers: no release records that; refusing to guess", n, len(v020Changes)))
}
