package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/vigil-run/vigil/workflows"
)

// RolloutResult is one rolling update of healthy replicas to a new command.
type RolloutResult struct {
	Replicas       int     `json:"replicas"`
	MinReadyS      float64 `json:"min_ready_s"`
	SumMinReadyS   float64 `json:"sum_min_ready_s"`
	TotalS         float64 `json:"total_s"`
	OverheadPerRep float64 `json:"overhead_per_replica_s"`
}

// rolloutFile: replicas that stop at once on SIGTERM (so stop_grace does not
// dominate), printing their version.
func rolloutFile(dep, version string, n int, minReady time.Duration) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  r:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo %s; trap 'exit 0' TERM; sleep 100000 & wait"] }
    scale: { replicas: %d }
    stop_grace: 5s
    update: { max_unavailable: 1, min_ready: %s }
`, dep, version, n, minReady)
}

// rollout measures a rolling update of n replicas (max_unavailable 1) from
// the apply to `vigil rollout status` saying complete, against the sum of
// their min_readys.
func (v *vigilBench) rollout(ctx context.Context, n int, minReady time.Duration) (*RolloutResult, error) {
	const dep = "roll"
	apply := func(version string) error {
		file, err := v.stack.Deployment(dep+"-"+version, rolloutFile(dep, version, n, minReady))
		if err != nil {
			return err
		}
		if r, err := v.stack.Vigil("apply", "-f", file); err != nil || r.Code != 0 {
			return fmt.Errorf("vigil apply -f %s: %v %s%s", file, err, r.Stdout, r.Stderr)
		}
		return nil
	}
	complete := func(generation int) error {
		deadline := time.Now().Add(5*time.Minute + time.Duration(n)*(minReady+30*time.Second))
		for time.Now().Before(deadline) && ctx.Err() == nil {
			r, err := v.stack.Vigil("rollout", "status", dep, "--json")
			var st workflows.RolloutStatus
			if err == nil && r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &st) == nil &&
				st.Generation == generation && st.State == workflows.RolloutComplete {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("rollout of generation %d did not complete", generation)
	}
	if err := apply("v1"); err != nil {
		return nil, err
	}
	if err := complete(1); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // every container started
	t0 := time.Now()
	if err := apply("v2"); err != nil {
		return nil, err
	}
	if err := complete(2); err != nil {
		return nil, err
	}
	total := time.Since(t0)
	sum := time.Duration(n) * minReady
	res := &RolloutResult{Replicas: n, MinReadyS: minReady.Seconds(), SumMinReadyS: sum.Seconds(), TotalS: total.Seconds(),
		OverheadPerRep: (total - sum).Seconds() / float64(n)}
	fmt.Printf("    rolling update of %d replicas (min_ready %s, max_unavailable 1): %.1f s; sum of min_readys %.0f s; %.2f s more per replica\n",
		n, minReady, res.TotalS, res.SumMinReadyS, res.OverheadPerRep)
	return res, nil
}
