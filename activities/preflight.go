package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Preflight checks, before a rollout stops anything for them, that this
// node can make the replicas' containers now: their env references
// resolve, the image is present (pulled if its policy allows), each bind
// source exists (runtime.Runtime.Preflight), each host port is free
// (CheckPorts: the replica's own container does not count). What
// it finds is in the result, per replica; an error is a failure to check.
func (a *Activities) Preflight(ctx context.Context, in PreflightInput) (PreflightResult, error) {
	var res PreflightResult
	err := a.whileHeartbeating(ctx, doing("preflight"), func() error {
		for _, r := range in.Replicas {
			problems, err := a.preflight(ctx, r.ID, r.Spec)
			if err != nil {
				return activityError("preflight", r.ID, err)
			}
			for _, p := range problems {
				res.Problems = append(res.Problems, PreflightProblem{ID: r.ID, Problem: p})
			}
		}
		return nil
	})
	return res, err
}

func (a *Activities) preflight(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) ([]runtime.Problem, error) {
	spec.Ports = runtime.ReplicaPorts(spec.Ports, id.Replica)
	var out []runtime.Problem
	resolved, err := a.resolveEnv(spec)
	var p *runtime.Problem
	switch {
	case errors.As(err, &p):
		out = append(out, *p)
	case err != nil:
		return nil, err
	default:
		spec = resolved
	}
	found, err := a.rt.Preflight(ctx, id, spec)
	if err != nil {
		return nil, err
	}
	out = append(out, found...)
	var inUse *runtime.PortInUse
	switch err := a.rt.CheckPorts(ctx, id, spec); {
	case errors.As(err, &inUse):
		out = append(out, runtime.Problem{Field: fmt.Sprintf("ports[%d].host", inUse.Index), Reason: inUse.Error()})
	case err != nil:
		return nil, err
	}
	return out, nil
}
