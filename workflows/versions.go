package workflows

import "go.temporal.io/sdk/workflow"

// Workflow versioning. Replicas run for months, and a new worker replays the
// histories an old worker wrote, so every change to the commands Supervise
// issues goes behind a change ID read here, once, at the top of every run.
//
// The rule:
//   - Add a change ID below (one const, with the release that added it and a
//     one-line why), a field to versions, and one GetVersion line in
//     readVersions. Branch on the field where the behaviour differs; the old
//     branch keeps issuing exactly the old commands.
//   - Register a scenario for the new behaviour in internal/histories
//     (Scenarios, Since: the release) so the release's recorded set
//     (workflows/testdata/histories/<release>/, written by
//     go run ./tools/record-histories) covers it; TestReplayEveryRelease
//     replays every release's set in make test, guarding both branches.
//   - Retiring: a run reads its versions when it starts, and every run since
//     v0.2.0 continues as new at least once a day (changePeriodicCAN; a
//     failing start too, between attempts), so one day after the last worker
//     of the old release stopped, no open run is on the old branch. Runs
//     started before v0.2.0 have no such timer: `vigil rollover` (the
//     "rollover" update, registered in every run) moves each to a new run.
//     Check with the visibility query in the README (Upgrading Vigil). Then
//     the old branch is deleted and the GetVersion call kept with
//     minSupported raised to the new version; the histories of the retired
//     releases move to testdata/histories/retired/ (no longer replayed).
//   - Not commands only: payloads a workflow or activity of the previous
//     release must read (inputs, results) must stay readable by it while
//     both run (see the README on the mixed-fleet window and rolling back).
//
// Reading every version at the start of a run adds two events per change to
// each new run (the marker and the SDK's TemporalChangeVersion upsert) and
// none to replays of older runs (they take workflow.DefaultVersion).
type versions struct {
	// periodicCAN: the run continues as new every ContinueAsNewEvery.
	periodicCAN bool
	// deployments: a shutdown policy shuts the whole service down.
	deployments bool
	// exitReasons: exits carry their cause, signal and start time to the
	// policy, whose rules and exponential backoff apply; events and status
	// say why.
	exitReasons bool
	// honestState: see changeHonestState.
	honestState bool
	// networkStatus: the container's address and published ports, as the
	// start reports them, are kept in state and shown by the state query.
	networkStatus bool
	// nodeWatch: a Running replica keeps no activity in flight; the node
	// watch reports its container's exit by signal (SignalExit).
	nodeWatch bool
}

// Change IDs, one per behaviour change, oldest first.
const (
	// changePeriodicCAN (release v0.2.0): a run continues as new once a day of
	// workflow time (SupervisionInput.ContinueAsNewEvery), so a replica that is
	// healthy for months still moves to new runs, and old branches can be retired.
	changePeriodicCAN = "periodic-continue-as-new"
	// changeDeployments (release v0.2.0): a replica whose panic policy shuts
	// it down signals its deployment workflow, which shuts the whole service
	// down; v0.1.0 stopped only the crashing replica.
	changeDeployments = "deployments"
	// changeExitReasons (release v0.2.0): exit-code and signal rules,
	// exponential backoff, and exit reasons (OOMKilled, Unhealthy, ...);
	// runs before it decide every exit as v0.1.0 did.
	changeExitReasons = "exit-reasons"
	// changeHonestState (release v0.2.0): the state says what is true and
	// every request is heard. A replica is Pending until its container first
	// runs and Unsupervised when supervision ends; unsupervise interrupts any
	// activity and bounds its stop; restart retries a failing start; operator
	// requests are events and join a running request of the same kind;
	// activities and timers carry summaries saying why.
	changeHonestState = "honest-state"
	// changeNetworkStatus (release v0.2.0): containers got bridge networks;
	// the address and ports EnsureRunning reports are carried in Carry.Network.
	changeNetworkStatus = "network-status"
	// changeNodeWatch (release v0.2.0): liveness per node, not a heartbeating
	// WaitForExit per replica; v0.1.0 replicas keep WaitForExit until their
	// next continue-as-new.
	changeNodeWatch = "node-watch"
)

// readVersions reads every change's version for this run. Call it once, first
// thing in Supervise, before any other command.
func readVersions(ctx workflow.Context) versions {
	return versions{
		periodicCAN:   workflow.GetVersion(ctx, changePeriodicCAN, workflow.DefaultVersion, 1) >= 1,
		deployments:   workflow.GetVersion(ctx, changeDeployments, workflow.DefaultVersion, 1) >= 1,
		exitReasons:   workflow.GetVersion(ctx, changeExitReasons, workflow.DefaultVersion, 1) >= 1,
		honestState:   workflow.GetVersion(ctx, changeHonestState, workflow.DefaultVersion, 1) >= 1,
		networkStatus: workflow.GetVersion(ctx, changeNetworkStatus, workflow.DefaultVersion, 1) >= 1,
		nodeWatch:     workflow.GetVersion(ctx, changeNodeWatch, workflow.DefaultVersion, 1) >= 1,
	}
}
