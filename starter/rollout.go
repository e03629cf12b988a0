package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// Rollout status: the deployment workflow knows what it rolled out (the
// generation, how many replicas run the desired config); only the replicas
// know whether they serve. `vigil rollout status` and `apply --wait` read
// both, and call a rollout complete only when every replica the file asks
// for is updated and available.

// rolloutView is what `vigil rollout status --json` prints. Its JSON names
// are a contract: scripts and tests outside this repository read them.
type rolloutView struct {
	workflows.RolloutStatus
	// Available counts the replicas the file asks for that are Running (and
	// healthy, where the service has a probe) for at least min_ready, or
	// that have Completed.
	Available int `json:"available"`
	// NotReady lists the others, each with its state and why.
	NotReady []notReady `json:"not_ready"`
}

// notReady is one replica the deployment wants that is not available.
type notReady struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Reason says why, in one line: the exit, the failing start, the probe,
	// the time left of min_ready.
	Reason string `json:"reason"`
}

// States of a replica the deployment wants beside the replica states:
// Missing, no supervisor holds it (not created yet, or gone); Unknown, its
// state query failed.
const (
	stateMissing = "Missing"
	stateUnknown = "Unknown"
)

// wantedReplica is one replica the file asks for, and how long it must run
// before it counts as available.
type wantedReplica struct {
	id       replica.ID
	minReady time.Duration
}

// seenReplica is what one wanted replica says of itself.
type seenReplica struct {
	view       workflows.StateView
	missing    bool
	startError string
	// noWorker: no vigil-worker polls its node's queue (asked only of a
	// replica that has not started).
	noWorker bool
	// unknown says why its state could not be read ("" if it was).
	unknown string
}

// rolloutStatus is the deployment workflow's own answer.
func rolloutStatus(ctx context.Context, c client.Client, name string) (workflows.RolloutStatus, error) {
	var out workflows.RolloutStatus
	err := queryDeployment(ctx, c, name, replica.QueryRollout, &out)
	return out, err
}

// readRollout reads the rollout and every wanted replica's state.
func readRollout(ctx context.Context, c client.Client, name string) (rolloutView, error) {
	st, err := rolloutStatus(ctx, c, name)
	if err != nil {
		return rolloutView{}, err
	}
	wants, err := wantedReplicas(ctx, c, name)
	if err != nil {
		return rolloutView{}, err
	}
	seen := make([]seenReplica, len(wants))
	parallel(len(wants), func(i int) { seen[i] = seeReplica(ctx, c, wants[i].id) })
	workers := newNodeWorkers(c)
	for i, s := range seen {
		if st := s.view.State; !s.missing && s.unknown == "" && (st == workflows.StatePending || st == workflows.StateRestarting) {
			has, known := workers.has(ctx, s.view.Node)
			seen[i].noWorker = known && !has
		}
	}
	return judgeRollout(st, wants, seen, time.Now()), nil
}

// wantedReplicas lists the replicas of the file being rolled out. A
// deployment workflow of a release without the desired query gives its
// records instead, with the default min_ready.
func wantedReplicas(ctx context.Context, c client.Client, name string) ([]wantedReplica, error) {
	var desired *workflows.DeploymentSpec
	if err := queryDeployment(ctx, c, name, replica.QueryDesired, &desired); err != nil {
		records, rerr := deploymentReplicas(ctx, c, name)
		if rerr != nil {
			return nil, err
		}
		out := make([]wantedReplica, 0, len(records))
		for _, r := range records {
			out = append(out, wantedReplica{id: r.ID, minReady: workflows.DefaultMinReady})
		}
		return out, nil
	}
	if desired == nil {
		return nil, nil
	}
	var out []wantedReplica
	for _, s := range desired.Services {
		minReady := s.Update.WithDefaults().MinReady
		for i := 1; i <= s.Replicas; i++ {
			out = append(out, wantedReplica{id: replica.ID{Deployment: name, Service: s.Name, Replica: i}, minReady: minReady})
		}
	}
	return out, nil
}

// seeReplica asks one replica for its state (and, while its start keeps
// failing, for the error). A replica that cannot answer is Missing, with
// the reason.
func seeReplica(ctx context.Context, c client.Client, id replica.ID) seenReplica {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id.WorkflowID(), "", replica.QueryState)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return seenReplica{missing: true}
	}
	var view workflows.StateView
	if err == nil {
		err = v.Get(&view)
	}
	if err != nil {
		return seenReplica{unknown: "its state query failed (is a vigil-worker running?): " + shortStartError(err.Error())}
	}
	seen := seenReplica{view: view}
	if view.State == workflows.StatePending || view.State == workflows.StateRestarting {
		seen.startError = describeStatus(qctx, c, id).startErr
	}
	return seen
}

// judgeRollout adds availability to the deployment's own status: complete
// only when every wanted replica is available too.
func judgeRollout(st workflows.RolloutStatus, wants []wantedReplica, seen []seenReplica, now time.Time) rolloutView {
	v := rolloutView{RolloutStatus: st, NotReady: []notReady{}}
	for i, w := range wants {
		state, why := availability(w, seen[i], now)
		if why == "" {
			v.Available++
			continue
		}
		v.NotReady = append(v.NotReady, notReady{ID: w.id.Ref(), State: state, Reason: why})
	}
	if v.State == workflows.RolloutComplete && len(v.NotReady) > 0 {
		v.State = workflows.RolloutProgressing
	}
	return v
}

// availability is one replica's state and why it is not available ("" if
// it is): Running (healthy, where it has probes) for at least min_ready, or
// Completed.
func availability(w wantedReplica, s seenReplica, now time.Time) (string, string) {
	switch {
	case s.missing:
		return stateMissing, "not supervised yet: the rollout creates it"
	case s.unknown != "":
		return stateUnknown, s.unknown
	}
	v := s.view
	state := string(v.State)
	switch v.State {
	case workflows.StateCompleted:
		return state, ""
	case workflows.StateRunning:
		if v.Health != nil && *v.Health != string(runtime.HealthHealthy) {
			if *v.Health == string(runtime.HealthUnhealthy) {
				return state, "unhealthy: " + orText(healthDetail(v), "its probe failed")
			}
			return state, "its probes have not passed yet (health " + *v.Health + ")"
		}
		if v.RunningSince != nil {
			since, err := time.Parse(time.RFC3339Nano, *v.RunningSince)
			if ran := now.Sub(since); err == nil && ran < w.minReady {
				return state, fmt.Sprintf("running for %s of min_ready %s", ran.Round(100*time.Millisecond), w.minReady)
			}
		}
		return state, ""
	case workflows.StateCrashLoopBackOff:
		why := "crash-loop backoff after exit " + lastExitText(v)
		if v.NextRestartAt != nil {
			why += ", next start at " + shortTime(*v.NextRestartAt)
		}
		return state, why
	case workflows.StatePending, workflows.StateRestarting:
		switch {
		case s.startError != "":
			return state, "start failing: " + s.startError
		case v.NodeState != nil && *v.NodeState == string(workflows.NodeNoWorker):
			return state, "node " + nodeText(v, "", "")
		case s.noWorker:
			return state, "no vigil-worker polls node " + v.Node + "'s queue; start one with --node " + v.Node
		case v.State == workflows.StateRestarting && v.LastExitCode != nil:
			return state, "restarting after exit " + lastExitText(v)
		}
		return state, "starting"
	case workflows.StateIsolated:
		return state, fmt.Sprintf("isolated after exit %s; vigil release %s", lastExitText(v), v.ID)
	case workflows.StateShutdown:
		return state, fmt.Sprintf("its service was shut down (exit %s); vigil release %s/%s", lastExitText(v), v.Deployment, v.Service)
	case workflows.StateUnsupervised:
		return state, "unsupervised; apply the file again to supervise it"
	}
	return state, "state " + state
}

// healthDetail is the last failed probe, if the replica says.
func healthDetail(v workflows.StateView) string {
	if v.HealthDetail == nil {
		return ""
	}
	return *v.HealthDetail
}

func orText(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// notReadyText names the replicas that are not available, for one line.
func notReadyText(v rolloutView) string {
	parts := make([]string, 0, len(v.NotReady))
	for _, r := range v.NotReady {
		parts = append(parts, fmt.Sprintf("%s %s: %s", r.ID, r.State, r.Reason))
	}
	return strings.Join(parts, "; ")
}

// summary is one line of where the rollout stands.
func (v rolloutView) summary() string {
	line := fmt.Sprintf("generation %d %s, %d/%d updated, %d/%d available", v.Generation, v.State, v.Updated, v.Total, v.Available, v.Total)
	if len(v.NotReady) > 0 {
		line += "; not ready: " + notReadyText(v)
	}
	return line
}

// waitPoll is how often --wait and --watch look at the rollout.
const waitPoll = 250 * time.Millisecond

// waitApplied waits until the rollout of generation gen (or a later one) is
// complete: every replica updated and available. A paused rollout fails at
// once, and ctx ending (--timeout) fails with where it stood; both name the
// replicas that are not available.
func waitApplied(ctx context.Context, a *app, c client.Client, name string, gen int) error {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	stood := "no answer yet"
	for {
		v, err := readRollout(ctx, c, name)
		switch {
		case err != nil && ctx.Err() != nil:
			// --timeout ended the read: keep where it last stood.
		case err != nil:
			stood = err.Error()
		case v.Generation >= gen && v.State == workflows.RolloutPaused:
			// The reason names the generation, the replica and the fix.
			msg := fmt.Sprintf("deployment %s: rollout paused: %s", name, v.Reason)
			if len(v.NotReady) > 0 {
				msg += "; not ready: " + notReadyText(v)
			}
			return failure{errors.New(msg)}
		case v.Generation >= gen && v.State == workflows.RolloutComplete:
			if a.printer().json {
				return nil
			}
			_, err := fmt.Fprintf(a.printer().out, "deployment %s: generation %d complete, %d/%d replicas available\n", name, v.Generation, v.Available, v.Total)
			return err
		default:
			stood = v.summary()
		}
		select {
		case <-ctx.Done():
			return failure{fmt.Errorf("deployment %s: not done within --timeout %s (%s); raise --timeout, or follow it with vigil rollout status %s --watch", name, a.timeout, stood, name)}
		case <-tick.C:
		}
	}
}

func rolloutCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "rollout",
		Short: "Follow a deployment's rollout",
		Args:  cobra.NoArgs,
	}
	var watch bool
	status := &cobra.Command{
		Use:   "status DEPLOYMENT [--watch]",
		Short: "Show where the deployment's rollout stands: progressing (and which replicas are not ready), paused (and why) or complete",
		Long: "Shows the deployment's generation and its rollout: complete when every replica the file\n" +
			"asks for runs the file's config and is available (Running, healthy where it has probes,\n" +
			"for at least min_ready), paused when the rollout stopped itself (with the reason), else\n" +
			"progressing, naming each replica that is not available and why. --watch prints each\n" +
			"change until the rollout is complete (exit 0) or paused (exit 1); it waits without\n" +
			"limit unless --timeout is given.",
		Args: deploymentArg("rollout status"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.withTimeout(cmd)
			if watch && !cmd.Flags().Changed("timeout") {
				ctx, cancel = context.WithCancel(cmd.Context())
			}
			defer cancel()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			name := args[0]
			if watch {
				return watchRollout(ctx, a, c, name)
			}
			v, err := readRollout(ctx, c, name)
			if err != nil {
				return unknownDeployment(name, err)
			}
			return printRollout(a.printer(), v)
		},
	}
	status.Flags().BoolVar(&watch, "watch", false, "print each change until the rollout is complete or paused")
	root.AddCommand(status)
	return root
}

// unknownDeployment says what to do about a deployment that has no workflow.
func unknownDeployment(name string, err error) error {
	if errors.Is(err, errNoDeployment) {
		return failure{fmt.Errorf("unknown deployment %s: nothing was applied under this name (or it was deleted); vigil apply -f FILE", name)}
	}
	return err
}

// watchRollout prints the rollout each time it changes (JSON: one compact
// document per line) until it is complete or paused, or ctx ends.
func watchRollout(ctx context.Context, a *app, c client.Client, name string) error {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	p := a.printer()
	last := ""
	for {
		v, err := readRollout(ctx, c, name)
		if err != nil && ctx.Err() == nil {
			return unknownDeployment(name, err)
		}
		if err == nil {
			b, _ := json.Marshal(v)
			if s := string(b); s != last {
				last = s
				line := name + ": " + v.summary()
				if v.Reason != "" {
					line += "; " + v.Reason
				}
				if p.json {
					line = s
				}
				if _, err := fmt.Fprintln(p.out, line); err != nil {
					return err
				}
			}
			switch v.State {
			case workflows.RolloutComplete:
				return nil
			case workflows.RolloutPaused:
				return failure{fmt.Errorf("deployment %s: rollout paused: %s", name, v.Reason)}
			}
		}
		select {
		case <-ctx.Done():
			return failure{fmt.Errorf("deployment %s: not complete within --timeout %s", name, a.timeout)}
		case <-tick.C:
		}
	}
}

func printRollout(p printer, v rolloutView) error {
	if p.json {
		return p.JSON(v)
	}
	rows := [][2]string{
		{"DEPLOYMENT", v.Deployment},
		{"GENERATION", fmt.Sprint(v.Generation)},
		{"STATE", string(v.State)},
		{"UPDATED", fmt.Sprintf("%d/%d", v.Updated, v.Total)},
		{"AVAILABLE", fmt.Sprintf("%d/%d", v.Available, v.Total)},
	}
	if v.Reason != "" {
		rows = append(rows, [2]string{"REASON", v.Reason})
	}
	for i, r := range v.NotReady {
		label := ""
		if i == 0 {
			label = "NOT READY"
		}
		rows = append(rows, [2]string{label, fmt.Sprintf("%s  %s: %s", r.ID, r.State, r.Reason)})
	}
	return p.Fields(rows)
}
