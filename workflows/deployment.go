package workflows

import (
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/runtime"
)

// The deployment workflow, "vigil/<deployment>", holds a deployment's
// desired state and its generation and drives the replica workflows towards
// it, one step at a time: removals (highest-numbered first), new replicas,
// policy changes in place, then replacements, max_unavailable at a time,
// each waiting until the new container has run min_ready. Every step is an
// activity with a summary, so the rollout reads in the Web UI. Between steps
// it takes new applies, so a new apply supersedes the rollout in progress.

// deploymentContinueAfter bounds the history of one run.
const deploymentContinueAfter = 2000

type pendingApply struct {
	req    ApplyRequest
	result ApplyResult
	done   bool
}

type deployer struct {
	// rel is the release this run was started under (readRelease).
	rel      Release
	in       DeploymentInput
	name     string
	st       DeploymentCarry
	applies  []*pendingApply
	shutdown workflow.ReceiveChannel
	// stepping: a rollout step is in flight.
	stepping bool
}

// Deployment is the workflow of one deployment.
func Deployment(ctx workflow.Context, in DeploymentInput) error {
	d := newDeployer(ctx, in)
	if err := d.register(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// newDeployer reads the run's release, first thing, and its carried state.
func newDeployer(ctx workflow.Context, in DeploymentInput) *deployer {
	d := &deployer{rel: readRelease(ctx, nil), in: in, name: in.Name, shutdown: workflow.GetSignalChannel(ctx, SignalServiceShutdown)}
	if in.Carry != nil {
		d.st = *in.Carry
		d.in.Carry = nil
	}
	if d.in.ContinueAsNewAfter <= 0 {
		d.in.ContinueAsNewAfter = deploymentContinueAfter
	}
	if d.st.Replicas == nil {
		d.st.Replicas = map[string]ReplicaRecord{}
	}
	return d
}

func (d *deployer) register(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryRollout, func() (RolloutStatus, error) {
		return d.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryReplicas, func() ([]ReplicaRecord, error) {
		return d.records(), nil
	}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateApply,
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

func (d *deployer) run(ctx workflow.Context) error {
	steps := 0
	for {
		d.details(ctx)
		if err := workflow.Await(ctx, func() bool {
			return len(d.applies) > 0 || d.shutdown.Len() > 0 || d.hasWork()
		}); err != nil {
			return err
		}
		var err error
		switch {
		case len(d.applies) > 0:
			err = d.takeApplies(ctx)
		case d.shutdown.Len() > 0:
			var sig ServiceShutdownSignal
			d.shutdown.Receive(ctx, &sig)
			err = d.shutDownService(ctx, sig)
		default:
			err = d.step(ctx)
		}
		if err != nil {
			return err
		}
		steps++
		if (steps >= d.in.ContinueAsNewAfter || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) &&
			len(d.applies) == 0 && d.shutdown.Len() == 0 && workflow.AllHandlersFinished(ctx) {
			// Everything the next run needs is in the carry: the desired
			// spec, the generation, the replicas and a pause.
			next, carry := d.in, d.st
			carry.Runs++
			next.Carry = &carry
			return workflow.NewContinueAsNewError(ctx, DeploymentWorkflowName, next)
		}
	}
}

// takeApplies answers every waiting apply, in order, against what runs now.
// Only the last one's spec is then rolled out.
func (d *deployer) takeApplies(ctx workflow.Context) error {
	if err := d.observe(ctx); err != nil {
		return err
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
func (d *deployer) decide(ctx workflow.Context, p *pendingApply) {
	steps := Plan(d.st.Replicas, p.req.Spec)
	same := d.st.Desired != nil && d.st.Paused == "" && deepEqual(*d.st.Desired, p.req.Spec)
	if Changes(Items(steps)) && !same {
		d.st.Generation++
		d.st.Paused = ""
	}
	spec := p.req.Spec
	d.st.Desired = &spec
	p.result = ApplyResult{Generation: d.st.Generation, Plan: Items(steps)}
	p.done = true
	workflow.GetLogger(ctx).Info("applied", "generation", d.st.Generation, "changes", Changes(Items(steps)))
}

// observe reads what runs: the replicas this workflow knows and any other
// replica supervised under the deployment's name.
func (d *deployer) observe(ctx workflow.Context) error {
	known := make([]string, 0, len(d.st.Replicas))
	for _, r := range d.records() {
		known = append(known, r.ID.Ref())
	}
	var seen []ReplicaRecord
	err := workflow.ExecuteActivity(d.controlOptions(ctx, "observe the replicas of "+d.name, time.Minute),
		ObserveReplicasName, ObserveInput{Deployment: d.name, Known: known}).Get(ctx, &seen)
	if err != nil {
		return err
	}
	d.st.Replicas = make(map[string]ReplicaRecord, len(seen))
	for _, r := range seen {
		d.st.Replicas[r.ID.Ref()] = r
	}
	return nil
}

// pending is what is left to do for the desired spec.
func (d *deployer) pending() []Step {
	if d.st.Desired == nil {
		return nil
	}
	var out []Step
	for _, s := range Plan(d.st.Replicas, *d.st.Desired) {
		if s.Item.Action != ActionUnchanged {
			out = append(out, s)
		}
	}
	return out
}

func (d *deployer) hasWork() bool {
	return d.st.Paused == "" && len(d.pending()) > 0
}

// step carries out the next step of the rollout.
func (d *deployer) step(ctx workflow.Context) error {
	d.stepping = true
	defer func() { d.stepping = false }()
	pending := d.pending()
	for _, s := range pending {
		if s.Item.Action == ActionRemove {
			return d.remove(ctx, s)
		}
	}
	var creates, inPlace []Step
	for _, s := range pending {
		switch {
		case s.Item.Action == ActionCreate:
			creates = append(creates, s)
		case s.Item.Action == ActionUpdate && !s.Replace:
			inPlace = append(inPlace, s)
		}
	}
	if len(creates) > 0 {
		return d.create(ctx, creates)
	}
	if len(inPlace) > 0 {
		return d.reconfigure(ctx, inPlace, 0)
	}
	// Replacements: the first service that has any, max_unavailable at a time.
	var batch []Step
	var update UpdateSettings
	for _, s := range pending {
		if len(batch) == 0 {
			svc, _ := d.st.Desired.service(s.ID.Service)
			update = svc.Update.WithDefaults()
		} else if s.ID.Service != batch[0].ID.Service || len(batch) >= update.MaxUnavailable {
			break
		}
		batch = append(batch, s)
	}
	if len(batch) == 0 {
		return nil
	}
	return d.reconfigure(ctx, batch, update.MinReady)
}

// remove stops a replica (its grace), ends its supervision and removes its
// container from containerd.
func (d *deployer) remove(ctx workflow.Context, s Step) error {
	ref := s.ID.Ref()
	if !s.Closed {
		err := workflow.ExecuteActivity(d.controlOptions(ctx, "remove "+ref+": stop and unsupervise", s.Config.StopGrace+time.Minute),
			UnsuperviseReplicaName, ReplicaRequest{ID: s.ID}).Get(ctx, nil)
		if err != nil {
			return err
		}
	}
	if err := d.deleteContainer(ctx, s.ID, s.Config); err != nil {
		return err
	}
	delete(d.st.Replicas, ref)
	return nil
}

// deleteContainer removes a replica's container from its node's containerd.
func (d *deployer) deleteContainer(ctx workflow.Context, id runtime.ContainerID, cfg ReplicaConfig) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           activities.NodeTaskQueue(cfg.Node),
		StartToCloseTimeout: cfg.StopGrace + time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second},
		Summary:             "delete the container of " + id.Ref(),
	}), activities.StopName, activities.StopInput{ID: id, Grace: cfg.StopGrace, Remove: true}).Get(ctx, nil)
}

// create supervises new replicas, all at once: they add capacity.
func (d *deployer) create(ctx workflow.Context, steps []Step) error {
	gen := d.st.Generation
	for _, s := range steps {
		if s.Closed {
			// Its supervision ended with the old spec; its exited container
			// would be started again as it is.
			if err := d.deleteContainer(ctx, s.ID, d.st.Replicas[s.ID.Ref()].Config); err != nil {
				return err
			}
		}
	}
	futures := make([]workflow.Future, len(steps))
	for i, s := range steps {
		futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, fmt.Sprintf("create %s (generation %d)", s.ID.Ref(), gen), time.Minute),
			StartReplicaName, s.Config.Input(s.ID, gen))
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
		s := steps[i]
		d.st.Replicas[s.ID.Ref()] = ReplicaRecord{ID: s.ID, Config: s.Config, Generation: gen, State: StateRunning}
	}
	return nil
}

// reconfigure sends one batch of reconfigure updates and waits for all of
// them. A replacement that is not ready pauses the rollout.
func (d *deployer) reconfigure(ctx workflow.Context, steps []Step, minReady time.Duration) error {
	gen := d.st.Generation
	futures := make([]workflow.Future, len(steps))
	for i, s := range steps {
		what := "policy of " + s.ID.Ref()
		timeout := time.Minute
		if s.Replace {
			what = "replace " + s.ID.Ref()
			timeout = s.Config.StopGrace + d.st.Replicas[s.ID.Ref()].Config.StopGrace + minReady + 10*time.Minute
		}
		req := ReconfigureRequest{Generation: gen, Config: s.Config, Replace: s.Replace, MinReady: minReady}
		futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, fmt.Sprintf("%s (generation %d)", what, gen), timeout),
			ReconfigureReplicaName, ReconfigureReplicaInput{ID: s.ID, UpdateID: reconfigureUpdateID(s.ID, gen, s.Replace), Request: req})
	}
	var notReady []string
	for i, f := range futures {
		var res ReconfigureReplicaResult
		if err := f.Get(ctx, &res); err != nil {
			return err
		}
		s := steps[i]
		ref := s.ID.Ref()
		if res.Missing {
			// Gone behind the deployment's back: the next step creates it.
			delete(d.st.Replicas, ref)
			continue
		}
		rec := d.st.Replicas[ref]
		rec.ID, rec.Config = s.ID, s.Config
		if s.Replace {
			rec.Generation = gen
		}
		d.st.Replicas[ref] = rec
		if s.Replace && !res.Ready {
			notReady = append(notReady, res.Reason)
		}
	}
	if len(notReady) > 0 && d.st.Generation == gen {
		// (An apply made meanwhile has superseded this generation.)
		d.st.Paused = fmt.Sprintf("generation %d: %s; the other replicas keep their spec: fix the file and apply it (or apply the previous one to roll back)", gen, notReady[0])
		workflow.GetLogger(ctx).Warn("rollout paused", "reason", d.st.Paused)
	}
	return nil
}

// shutDownService stops every other replica of a service whose replica's
// panic policy shut it down.
func (d *deployer) shutDownService(ctx workflow.Context, sig ServiceShutdownSignal) error {
	cause := fmt.Sprintf("%s/%s-rep-%d exited with code %d", d.name, sig.Service, sig.Replica, sig.ExitCode)
	var targets []ReplicaRecord
	for _, r := range d.records() {
		if r.ID.Service != sig.Service || r.Closed {
			continue
		}
		if r.ID.Replica == sig.Replica {
			r.State = StateShutdown
			d.st.Replicas[r.ID.Ref()] = r
			continue
		}
		targets = append(targets, r)
	}
	futures := make([]workflow.Future, len(targets))
	for i, r := range targets {
		futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, "shut down "+r.ID.Ref()+": "+cause, r.Config.StopGrace+time.Minute),
			ShutdownReplicaName, ReplicaRequest{ID: r.ID, Cause: cause})
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("replica not shut down", "replica", targets[i].ID.Ref(), "error", err)
			continue
		}
		r := targets[i]
		r.State = StateShutdown
		d.st.Replicas[r.ID.Ref()] = r
	}
	if d.hasWork() {
		d.st.Paused = fmt.Sprintf("service %s was shut down by its panic policy (%s); release it (vigil release %s/%s) and apply again", sig.Service, cause, d.name, sig.Service)
	}
	return nil
}

// controlOptions: control activities run on the workflow queue, retry until
// they work (a rollout step must not be skipped) and heartbeat.
func (d *deployer) controlOptions(ctx workflow.Context, summary string, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    controlHeartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    15 * time.Second,
		},
		Summary: summary,
	})
}

// records lists the known replicas in a stable order.
func (d *deployer) records() []ReplicaRecord {
	out := make([]ReplicaRecord, 0, len(d.st.Replicas))
	for _, ref := range workflow.DeterministicKeys(d.st.Replicas) {
		out = append(out, d.st.Replicas[ref])
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].ID, out[j].ID
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Replica < b.Replica
	})
	return out
}

func (d *deployer) status() RolloutStatus {
	st := RolloutStatus{Deployment: d.name, Generation: d.st.Generation, State: RolloutComplete}
	if d.st.Desired == nil {
		return st
	}
	st.Total = d.st.Desired.ReplicaCount()
	pending := 0
	for _, s := range Plan(d.st.Replicas, *d.st.Desired) {
		switch s.Item.Action {
		case ActionUnchanged:
			st.Updated++
		default:
			pending++
		}
	}
	switch {
	case d.st.Paused != "":
		st.State, st.Reason = RolloutPaused, d.st.Paused
	case pending > 0:
		st.State = RolloutProgressing
	}
	return st
}

func (d *deployer) details(ctx workflow.Context) {
	st := d.status()
	line := fmt.Sprintf("deployment %s, generation %d: %s, %d/%d replicas updated", d.name, st.Generation, st.State, st.Updated, st.Total)
	if st.Reason != "" {
		line += " — " + st.Reason
	}
	workflow.SetCurrentDetails(ctx, line)
}
