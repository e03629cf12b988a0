package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/replica"
)

// Steps: each carries out one part of the rollout through activities on
// the replicas (create, reconfigure in place or replace, remove), or shuts a
// service down for its replica's panic policy.

// step carries out the next step of the rollout. Since v0.3.0 it then
// observes the replicas it created or reconfigured again, so the next step
// is planned from what they run, not from what was asked of them.
func (d *deployer) step(ctx workflow.Context) error {
	d.stepping = true
	defer func() { d.stepping, d.inflight = false, nil }()
	if err := d.nextStep(ctx); err != nil || d.rel < V030 || len(d.inflight) == 0 {
		return err
	}
	return d.reobserve(ctx, workflow.DeterministicKeys(d.inflight))
}

// nextStep picks the next step: removals, creates, policies in place, then
// replacements.
func (d *deployer) nextStep(ctx workflow.Context) error {
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
	if d.rel >= V030 {
		return d.replace(ctx, pending)
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

// budgetRecheck is how long a rollout with no budget left waits before it
// looks at its replicas again.
const budgetRecheck = 5 * time.Second

// replace takes the next replacements: planned against the service's
// replicas as they are now, observed, so that a replica that went down
// since the last step counts against max_unavailable. With no budget left
// it waits, saying why, until a replica is back or an apply comes.
func (d *deployer) replace(ctx workflow.Context, pending []Step) error {
	if err := d.reobserve(ctx, d.serviceRefs(pending)); err != nil {
		return err
	}
	gen := d.st.Generation
	batch, update, wait := replaceBatch(d.pending(), d.st.Replicas, *d.st.Desired)
	d.waiting = wait
	if wait == "" {
		if len(batch) == 0 {
			return nil
		}
		if reason := d.preflight(ctx, batch); reason != "" {
			if d.st.Generation == gen {
				d.st.Paused = reason
				workflow.GetLogger(ctx).Warn("rollout paused", "reason", reason)
			}
			return nil
		}
		return d.reconfigure(ctx, batch, update.MinReady)
	}
	workflow.GetLogger(ctx).Info("rollout waits", "reason", wait)
	d.details(ctx)
	_, err := workflow.AwaitWithTimeout(ctx, budgetRecheck, func() bool {
		return d.st.Generation != gen || d.shutdown.Len() > 0
	})
	return err
}

// serviceRefs are the replicas of the first service with a replacement
// pending, known or desired: the ones its budget counts.
func (d *deployer) serviceRefs(pending []Step) []string {
	var service string
	for _, s := range pending {
		if s.Replaces() {
			service = s.ID.Service
			break
		}
	}
	svc, ok := d.st.Desired.service(service)
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	var refs []string
	for r := 1; r <= svc.Replicas; r++ {
		ref := replica.ID{Deployment: d.name, Service: service, Replica: r}.Ref()
		seen[ref] = true
		refs = append(refs, ref)
	}
	for _, rec := range d.records() {
		if ref := rec.ID.Ref(); rec.ID.Service == service && !seen[ref] {
			refs = append(refs, ref)
		}
	}
	return refs
}

// maxPauseReason bounds a pause reason: one line an operator reads whole.
const maxPauseReason = 300

// preflight asks each node of the batch whether it can make the new
// containers now, before the serving ones are stopped: "" when it can,
// else the pause reason, one line naming the replica, the field and the fix.
func (d *deployer) preflight(ctx workflow.Context, batch []Step) string {
	gen := d.st.Generation
	var nodes []string
	byNode := map[string][]activities.PreflightReplica{}
	for _, s := range batch {
		n := s.Config.Node
		if _, ok := byNode[n]; !ok {
			nodes = append(nodes, n)
		}
		byNode[n] = append(byNode[n], activities.PreflightReplica{ID: s.ID, Spec: s.Config.Spec})
	}
	futures := make([]workflow.Future, len(nodes))
	for i, n := range nodes {
		futures[i] = workflow.ExecuteActivity(preflightOptions(ctx, n, fmt.Sprintf("preflight on %s (generation %d)", n, gen)),
			replica.PreflightName, activities.PreflightInput{Replicas: byNode[n]})
	}
	reason := ""
	for i, f := range futures {
		var res activities.PreflightResult
		err := f.Get(ctx, &res)
		first := byNode[nodes[i]][0].ID.Ref()
		switch {
		case reason != "":
		case isNotRegistered(err):
			// The node's worker predates the preflight (a mixed fleet
			// during an upgrade): replace as that release did.
			workflow.GetLogger(ctx).Warn("no preflight on an older worker", "node", nodes[i])
		case isNoWorker(err):
			reason = notReplaced(gen, first, "node", fmt.Sprintf("no worker on node %s took the preflight within %s; start vigil-worker there or fix the node", nodes[i], human(NodeScheduleToStart)))
		case err != nil:
			reason = notReplaced(gen, first, "preflight", activityMessage(err))
		case len(res.Problems) > 0:
			p := res.Problems[0]
			reason = notReplaced(gen, p.ID.Ref(), p.Field, p.Reason)
		}
	}
	return reason
}

// notReplaced is the pause reason of a failed preflight.
func notReplaced(gen int, ref, field, why string) string {
	return errtext.Short(fmt.Sprintf("generation %d: %s not replaced (left as it was): %s: %s; then apply again", gen, ref, field, why), maxPauseReason)
}

// errTypeNotRegistered is the failure type of an activity the worker that
// took it does not have (the SDK's ActivityNotRegisteredError).
const errTypeNotRegistered = "ActivityNotRegisteredError"

func isNotRegistered(err error) bool {
	var app *temporal.ApplicationError
	return errors.As(err, &app) && app.Type() == errTypeNotRegistered
}

// activityMessage is an activity's own error message, without the wrappers.
func activityMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	return err.Error()
}

// preflightOptions: on the node's queue, waiting NodeScheduleToStart for a
// worker there; a pull may take minutes.
func preflightOptions(ctx workflow.Context, node, summary string) workflow.Context {
	retry := retryDoubling(time.Second, 10*time.Second)
	retry.MaximumAttempts = 5
	retry.NonRetryableErrorTypes = []string{errTypeNotRegistered}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              replica.NodeTaskQueue(node),
		ScheduleToStartTimeout: NodeScheduleToStart,
		StartToCloseTimeout:    10 * time.Minute,
		HeartbeatTimeout:       30 * time.Second,
		RetryPolicy:            retry,
		Summary:                summary,
	})
}

// remove stops a replica (its grace), ends its supervision and removes its
// container from containerd.
func (d *deployer) remove(ctx workflow.Context, s Step) error {
	ref := s.ID.Ref()
	if !s.Closed {
		err := workflow.ExecuteActivity(d.controlOptions(ctx, "remove "+ref+": stop and unsupervise", s.Config.StopGrace+time.Minute),
			replica.UnsuperviseReplicaName, ReplicaRequest{ID: s.ID}).Get(ctx, nil)
		if err != nil {
			return err
		}
	}
	if err := d.deleteContainer(ctx, s.ID, s.Config); err != nil && !errors.Is(err, errLeftOnNode) {
		return err
	}
	delete(d.st.Replicas, ref)
	return nil
}

// errLeftOnNode: a container could not be deleted because no worker serves
// its node; the rollout is paused, saying so.
var errLeftOnNode = errors.New("container left on its node: no worker")

// deleteContainer removes a replica's container from its node's containerd.
// Since v0.3.0 it waits NodeScheduleToStart for a worker on the node: with
// none, the rollout pauses saying so (the container, which no replica owns
// any more, is left to the node's orphans) instead of waiting without end.
func (d *deployer) deleteContainer(ctx workflow.Context, id replica.ID, cfg ReplicaConfig) error {
	err := d.stopOnNode(ctx, cfg, "delete the container of "+id.Ref(), activities.StopInput{ID: id, Grace: cfg.StopGrace, Remove: true}).Get(ctx, nil)
	if isNoWorker(err) {
		d.st.Paused = fmt.Sprintf("no worker on node %s took the deletion of %s's container within %s: it is left there (vigil node orphans %s); start a worker on the node or fix the file, and apply it again",
			cfg.Node, id.Ref(), human(NodeScheduleToStart), cfg.Node)
		workflow.GetLogger(ctx).Warn("rollout paused", "reason", d.st.Paused)
		return errLeftOnNode
	}
	return err
}

// stopOnNode runs the Stop activity on the replica's node. Since v0.3.0 it
// waits NodeScheduleToStart for a worker on the node (isNoWorker then).
func (d *deployer) stopOnNode(ctx workflow.Context, cfg ReplicaConfig, summary string, in activities.StopInput) workflow.Future {
	o := workflow.ActivityOptions{
		TaskQueue:           replica.NodeTaskQueue(cfg.Node),
		StartToCloseTimeout: cfg.StopGrace + time.Minute,
		RetryPolicy:         retryDoubling(time.Second, 30*time.Second),
		Summary:             summary,
	}
	if d.rel >= V030 {
		o.ScheduleToStartTimeout = NodeScheduleToStart
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, o), replica.StopName, in)
}

// create supervises new replicas, all at once: they add capacity.
func (d *deployer) create(ctx workflow.Context, steps []Step) error {
	steps = bounded(d.rel, steps)
	gen := d.st.Generation
	for _, s := range steps {
		old := d.st.Replicas[s.ID.Ref()].Config
		if s.Closed && (d.rel < V030 || old.Node == s.Config.Node) {
			// Its supervision ended with the old spec; its exited container
			// would be started again as it is. (One on another node is not
			// in the new one's way: e.g. a node: typo fixed; that node lists
			// it as an orphan.)
			err := d.deleteContainer(ctx, s.ID, old)
			if errors.Is(err, errLeftOnNode) {
				return nil // paused: not made again from the old container
			}
			if err != nil {
				return err
			}
		}
	}
	d.touch(steps)
	if d.rel >= V030 {
		return d.createBatched(ctx, steps, gen)
	}
	futures := make([]workflow.Future, len(steps))
	for i, s := range steps {
		futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, fmt.Sprintf("create %s (generation %d)", s.ID.Ref(), gen), time.Minute),
			replica.StartReplicaName, SupervisionInput{ID: s.ID, ReplicaConfig: s.Config, Generation: gen})
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
		d.created(steps[i], gen)
	}
	return nil
}

// created records a replica whose supervisor has started.
func (d *deployer) created(s Step, gen int) {
	d.st.Replicas[s.ID.Ref()] = ReplicaRecord{ID: s.ID, Config: s.Config, Generation: gen, State: StateRunning}
}

// Since v0.3.0 a create step starts its replicas in batches, one
// StartReplicas activity each: per replica, an activity's dispatch and
// three events were a large share of the cluster's work per start. A batch
// is bounded by count and by the JSON size of its inputs, far below
// Temporal's 2 MiB payload limit however large the specs.
const (
	maxStartBatch      = 100
	maxStartBatchBytes = 256 << 10
)

// encodedSize is the size of in's JSON, as its payload carries it. Pure and
// deterministic: encoding/json writes fields in order and map keys sorted.
//
//workflowcheck:ignore
func encodedSize(in SupervisionInput) int {
	raw, err := json.Marshal(in)
	if err != nil {
		// An input is plain data; no value of it fails to encode.
		panic("supervision input: " + err.Error())
	}
	return len(raw)
}

// createBatched starts the step's replicas in batches, all at once.
func (d *deployer) createBatched(ctx workflow.Context, steps []Step, gen int) error {
	var batches [][]Step
	var inputs []StartReplicasInput
	size := 0
	for _, s := range steps {
		in := SupervisionInput{ID: s.ID, ReplicaConfig: s.Config, Generation: gen}
		n := encodedSize(in)
		last := len(batches) - 1
		if last < 0 || len(batches[last]) == maxStartBatch || size+n > maxStartBatchBytes {
			batches, inputs, size = append(batches, nil), append(inputs, StartReplicasInput{}), 0
			last++
		}
		batches[last] = append(batches[last], s)
		inputs[last].Replicas = append(inputs[last].Replicas, in)
		size += n
	}
	futures := make([]workflow.Future, len(batches))
	for i, b := range batches {
		what := fmt.Sprintf("create %s .. %s, %d replicas (generation %d)", b[0].ID.Ref(), b[len(b)-1].ID.Ref(), len(b), gen)
		futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, what, 5*time.Minute), replica.StartReplicasName, inputs[i])
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
		for _, s := range batches[i] {
			d.created(s, gen)
		}
	}
	return nil
}

// reconfigure sends one batch of reconfigure updates and waits for all of
// them. A replacement that is not ready pauses the rollout.
func (d *deployer) reconfigure(ctx workflow.Context, steps []Step, minReady time.Duration) error {
	steps = bounded(d.rel, steps)
	gen := d.st.Generation
	d.touch(steps)
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
			replica.ReconfigureReplicaName, ReconfigureReplicaInput{ID: s.ID, UpdateID: d.reconfigureUpdateID(s, gen), Request: req})
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
		if d.rel < V030 {
			// Since v0.3.0 the replica's own record is observed after the
			// step: its new config only if it took it.
			rec := d.st.Replicas[ref]
			rec.ID, rec.Config, rec.Digest = s.ID, s.Config, ""
			if s.Replace {
				rec.Generation = gen
			}
			d.st.Replicas[ref] = rec
		}
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

// maxStepReplicas bounds the replicas one step acts on at once (since
// v0.3.0): each is an activity in flight, and Temporal fails the workflow
// task of a run with more than 2,000 pending. The rest go in the next steps.
const maxStepReplicas = 500

// bounded is the part of xs one step takes (all of them before v0.3.0).
func bounded[T any](rel Release, xs []T) []T {
	if rel < V030 || len(xs) <= maxStepReplicas {
		return xs
	}
	return xs[:maxStepReplicas]
}

// touch notes the replicas a step brings to a new config (d.inflight).
func (d *deployer) touch(steps []Step) {
	d.inflight = make(map[string]Step, len(steps))
	for _, s := range steps {
		d.inflight[s.ID.Ref()] = s
	}
}

// shutDownService stops every other replica of a service whose replica's
// panic policy shut it down.
func (d *deployer) shutDownService(ctx workflow.Context, sig ServiceShutdownSignal) error {
	cause := fmt.Sprintf("%s/%s-rep-%d exited with code %d", d.name, sig.Service, sig.Replica, sig.ExitCode)
	by := ""
	if d.rel >= V030 {
		by = replica.ID{Deployment: d.name, Service: sig.Service, Replica: sig.Replica}.Ref()
	}
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
	for len(targets) > 0 {
		batch := bounded(d.rel, targets)
		targets = targets[len(batch):]
		futures := make([]workflow.Future, len(batch))
		for i, r := range batch {
			futures[i] = workflow.ExecuteActivity(d.controlOptions(ctx, "shut down "+r.ID.Ref()+": "+cause, r.Config.StopGrace+time.Minute),
				replica.ShutdownReplicaName, ReplicaRequest{ID: r.ID, Cause: cause, By: by})
		}
		for i, f := range futures {
			if err := f.Get(ctx, nil); err != nil {
				workflow.GetLogger(ctx).Warn("replica not shut down", "replica", batch[i].ID.Ref(), "error", err)
				continue
			}
			r := batch[i]
			r.State = StateShutdown
			d.st.Replicas[r.ID.Ref()] = r
		}
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
		RetryPolicy:         retryDoubling(500*time.Millisecond, 15*time.Second),
		Summary:             summary,
	})
}

// reconfigureUpdateID names the update that brings one replica to one
// generation, so an activity retried after a lost worker joins the same
// update instead of making a second one. Since v0.3.0 it also names the
// config (ConfigDigest): a generation's update is for that exact config.
func (d *deployer) reconfigureUpdateID(s Step, generation int) string {
	kind := "policy"
	if s.Replace {
		kind = "replace"
	}
	id := fmt.Sprintf("%s/gen-%d/%s", replica.DeploymentWorkflowID(s.ID.Deployment), generation, kind)
	if d.rel >= V030 {
		id += "/" + ConfigDigest(s.Config)
	}
	return id
}
