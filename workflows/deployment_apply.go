package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// Applies: the "apply" update takes a whole deployment file, answers with
// its plan and generation, and makes it the desired state the steps roll out.

// pendingApply is an apply waiting for the step in flight to end.
type pendingApply struct {
	req    ApplyRequest
	result ApplyResult
	done   bool
}

// registerApply serves UpdateApply.
func (d *deployer) registerApply(ctx workflow.Context) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateApply,
		func(ctx workflow.Context, req ApplyRequest) (ApplyResult, error) {
			p := &pendingApply{req: req}
			if d.stepping {
				// Answer now, from what the workflow knows, rather than after
				// the step in flight (a replacement lasts its stop grace and
				// min_ready); the rollout takes the new spec after the step.
				d.decide(ctx, p)
				return p.result, nil
			}
			d.applies = append(d.applies, p)
			if err := workflow.Await(ctx, func() bool { return p.done }); err != nil {
				return ApplyResult{}, err
			}
			return p.result, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req ApplyRequest) error {
			return d.validate(req.Spec)
		}})
}

// validate refuses a file for another deployment or one that makes no sense;
// the CLI has already validated the file itself.
func (d *deployer) validate(spec DeploymentSpec) error {
	if d.deletion != nil {
		return fmt.Errorf("apply: deployment %s is being deleted; apply the file again once vigil delete has finished", d.name)
	}
	if spec.Name != d.name {
		return fmt.Errorf("apply: the file is for deployment %q, this workflow holds %q", spec.Name, d.name)
	}
	seen := map[string]bool{}
	for _, s := range spec.Services {
		if s.Replicas < 1 {
			return fmt.Errorf("apply: services.%s.scale.replicas is %d; use at least 1, or leave the service out of the file to remove it", s.Name, s.Replicas)
		}
		if seen[s.Name] {
			return fmt.Errorf("apply: service %q is listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// takeApplies answers every waiting apply, in order, against what runs now.
// Only the last one's spec is then rolled out.
func (d *deployer) takeApplies(ctx workflow.Context) error {
	if err := d.observe(ctx); err != nil {
		return err
	}
	if d.rel >= V030 {
		// A new run (after a terminate or a failure) counts on from the
		// highest generation its replicas hold, so its replacements are
		// not taken for ones already made.
		for _, r := range d.records() {
			d.st.Generation = max(d.st.Generation, r.Generation)
		}
	}
	for len(d.applies) > 0 {
		p := d.applies[0]
		d.applies = d.applies[1:]
		d.decide(ctx, p)
	}
	return nil
}

// decide plans one apply against the known replicas and makes its spec the
// desired one. A change raises the generation and ends a pause; the file
// already being rolled out (not paused) changes nothing.
//
// Since v0.3.0 it plans against the replicas as the step in flight leaves
// them (d.planned), and any change of the desired spec raises the
// generation: a rollback applied while a replacement is in flight is a new
// generation, not "unchanged" against records the step has not updated yet.
func (d *deployer) decide(ctx workflow.Context, p *pendingApply) {
	steps := Plan(d.planned(), p.req.Spec)
	same := d.st.Desired != nil && d.st.Paused == "" && deepEqual(*d.st.Desired, p.req.Spec)
	changed := Changes(Items(steps)) && !same
	if d.rel >= V030 && d.st.Desired != nil && !deepEqual(*d.st.Desired, p.req.Spec) {
		changed = true
	}
	if changed {
		d.st.Generation++
		d.st.Paused = ""
	}
	spec := p.req.Spec
	d.st.Desired = &spec
	p.result = ApplyResult{Generation: d.st.Generation, Plan: Items(steps)}
	p.done = true
	workflow.GetLogger(ctx).Info("applied", "generation", d.st.Generation, "changes", Changes(Items(steps)))
}

// planned is what the replicas run once the step in flight is done: the
// records, with the configs the step brings its replicas to (since v0.3.0;
// before, the records alone).
func (d *deployer) planned() map[string]ReplicaRecord {
	if d.rel < V030 || len(d.inflight) == 0 {
		return d.st.Replicas
	}
	out := make(map[string]ReplicaRecord, len(d.st.Replicas)+len(d.inflight))
	for _, ref := range workflow.DeterministicKeys(d.st.Replicas) {
		out[ref] = d.st.Replicas[ref]
	}
	for _, ref := range workflow.DeterministicKeys(d.inflight) {
		s := d.inflight[ref]
		r, ok := out[ref]
		if !ok {
			r = ReplicaRecord{ID: s.ID, State: StateRunning}
		}
		r.Config, r.Digest, r.Closed = s.Config, "", false
		out[ref] = r
	}
	return out
}
