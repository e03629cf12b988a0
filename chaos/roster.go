package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// deploymentName is the soak's deployment.
const deploymentName = "chaos"

// startMarker is the line every container prints when it starts: counted in
// its log, it is the container's own record of how often it was started.
const startMarker = "chaos-start"

// behaviour is one kind of replica in the soak.
type behaviour struct {
	Service string
	Weight  int    // share of the replicas, out of 20
	Script  string // sh -c, after the start marker
	Policy  string // errors.on_panic, YAML flow mapping
	// ShouldRun: the policy keeps it running (restart action, never exits 0).
	ShouldRun bool
	// Final is the state the replica must end in, when it has one.
	Final string
	// Backoff is the configured crash-loop backoff (restart action only).
	Backoff time.Duration
	// Deletable: deleting its container behind Vigil's back is a crash the
	// policy restarts. Isolated containers must keep their task, so the
	// driver does not delete those of the isolate service.
	Deletable bool
}

// behaviours: healthy, crashing every few seconds, crash-looping with a short
// backoff, exiting 0, and crashing under the isolate and shutdown policies.
// The last three run for a while first, so faults hit them both while they
// run and after they have reached their final state.
var behaviours = []behaviour{
	{Service: "healthy", Weight: 5, Script: "exec sleep 1000000",
		Policy: "{ action: restart, max_restarts: 4, restart_window: 60s, backoff: 5s, poll_interval: 1s }", ShouldRun: true, Backoff: 5 * time.Second, Deletable: true},
	{Service: "crasher", Weight: 4, Script: "sleep $((3 + RANDOM % 3)); echo crashing >&2; exit 3",
		Policy: "{ action: restart, max_restarts: 1000, restart_window: 60s, backoff: 5s, poll_interval: 1s }", ShouldRun: true, Backoff: 5 * time.Second, Deletable: true},
	{Service: "looper", Weight: 3, Script: "sleep 1; echo looping >&2; exit 4",
		Policy: "{ action: restart, max_restarts: 2, restart_window: 60s, backoff: 4s, poll_interval: 1s }", ShouldRun: true, Backoff: 4 * time.Second, Deletable: true},
	{Service: "done", Weight: 2, Script: "sleep $((20 + RANDOM % 60)); echo finished; exit 0",
		Policy: "{ action: restart, max_restarts: 1000, restart_window: 60s, backoff: 5s, poll_interval: 1s }", Final: "Completed", Backoff: 5 * time.Second, Deletable: true},
	{Service: "isolated", Weight: 3, Script: "sleep $((10 + RANDOM % 60)); echo isolating >&2; exit 5",
		Policy: "{ action: isolate, poll_interval: 1s }", Final: "Isolated"},
	{Service: "shutdown", Weight: 3, Script: "sleep $((10 + RANDOM % 60)); echo shutting down >&2; exit 6",
		Policy: "{ action: shutdown, poll_interval: 1s }", Final: "Shutdown", Deletable: true},
}

// soakReplica is one supervised replica of the soak.
type soakReplica struct {
	ID        replica.ID
	Container string // containerd container ID
	Behaviour behaviour
	// ExitsPerRun is the bound of exits one run of its supervisor handles
	// before it continues as new (0: workflows.DefaultContinueAsNewAfter).
	ExitsPerRun int
}

func (r soakReplica) continueAsNewAfter() int {
	if r.ExitsPerRun > 0 {
		return r.ExitsPerRun
	}
	return workflows.DefaultContinueAsNewAfter
}

// boundedDeployment is the deployment name of the replica supervised beside
// the deployment, with a low bound of exits per run: a crasher, so every
// soak continues its supervisor as new several times and the
// continue-as-new check judges runs that reached their bound. No deployment
// workflow manages the name (one would remove a replica its file lacks).
const boundedDeployment = deploymentName + "-bounded"

// defaultExitsPerRun is that replica's bound: a crasher reaches it in
// about 15 seconds.
const defaultExitsPerRun = 3

// boundedReplica is that replica; the driver's faults leave it alone, so a
// seed hits the same replicas it did before it existed.
func boundedReplica(exitsPerRun int) soakReplica {
	i := slices.IndexFunc(behaviours, func(b behaviour) bool { return b.Service == "crasher" })
	id := replica.ID{Deployment: boundedDeployment, Service: behaviours[i].Service, Replica: 1}
	return soakReplica{ID: id, Container: id.ContainerName(), Behaviour: behaviours[i], ExitsPerRun: exitsPerRun}
}

// superviseBounded starts supervising b with the config of the deployment's
// first replica of its service (the same container, under b's name) and b's
// bound of exits per run.
func superviseBounded(ctx context.Context, c client.Client, b soakReplica) error {
	like := replica.ID{Deployment: deploymentName, Service: b.ID.Service, Replica: 1}
	var in workflows.SupervisionInput
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := c.QueryWorkflow(ctx, like.WorkflowID(), "", replica.QueryConfig)
		if err == nil {
			err = resp.Get(&in)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("config of %s, for %s: %w", like.Ref(), b.ID.Ref(), err)
		}
		sleepCtx(ctx, time.Second)
	}
	in.ID, in.ContinueAsNewAfter, in.Generation, in.Carry = b.ID, b.ExitsPerRun, 0, nil
	_, err := control.StartReplica(ctx, c, replica.DefaultTaskQueue, in)
	return err
}

// roster spreads n replicas over the behaviours by weight, at least one each.
func roster(n int) ([]soakReplica, error) {
	if n < len(behaviours) {
		return nil, fmt.Errorf("--replicas: %d is too few; use at least %d (one per behaviour)", n, len(behaviours))
	}
	counts := make([]int, len(behaviours))
	total := 0
	for i, b := range behaviours {
		counts[i] = max(1, b.Weight*n/20)
		total += counts[i]
	}
	counts[0] += n - total // healthy takes the rest (or gives back)
	if counts[0] < 1 {
		return nil, fmt.Errorf("--replicas: %d does not spread over the behaviours; use 20 or more", n)
	}
	var out []soakReplica
	for i, b := range behaviours {
		for r := 1; r <= counts[i]; r++ {
			id := replica.ID{Deployment: deploymentName, Service: b.Service, Replica: r}
			out = append(out, soakReplica{ID: id, Container: id.ContainerName(), Behaviour: b})
		}
	}
	return out, nil
}

// stopGrace is every service's stop_grace in the deployment file.
const stopGrace = 2 * time.Second

// deploymentYAML is the deployment file of the roster.
func deploymentYAML(replicas []soakReplica) string {
	counts := map[string]int{}
	for _, r := range replicas {
		counts[r.Behaviour.Service]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: v1\ndeployment: %s\nservices:\n", deploymentName)
	for _, bh := range behaviours {
		// The marker carries the start's time (seconds) for reading the logs.
		script := fmt.Sprintf("echo %s $(date -u +%%H:%%M:%%S); %s", startMarker, bh.Script)
		fmt.Fprintf(&b, `  %s:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: [%q] }
    scale: { mode: fixed, replicas: %d }
    stop_grace: %s
    errors:
      on_panic: %s
`, bh.Service, script, counts[bh.Service], stopGrace, bh.Policy)
	}
	return b.String()
}
