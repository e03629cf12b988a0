package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// Delete (`vigil delete`): the "delete" update ends the supervision of
// every replica of the deployment (stopping and removing its container
// unless asked to keep it), then the deployment's workflow. It waits for
// the step in flight, so no step starts a replica behind it. The closed run
// keeps the generation it reached (memo replica.MemoGeneration), and the
// next apply of the name starts its new workflow above it.

// DeleteRequest is the "delete" update's argument.
type DeleteRequest struct {
	RequestID string `json:"request_id,omitempty"`
	// KeepContainers leaves every container as it is (only supervision
	// ends); otherwise each is stopped (its grace) and removed.
	KeepContainers bool `json:"keep_containers,omitempty"`
	// Volumes also deletes the replicas' named volumes.
	Volumes bool `json:"volumes,omitempty"`
}

// DeleteResult is what a delete did: `vigil delete --json`.
type DeleteResult struct {
	Deployment string `json:"deployment"`
	// Generation is the highest the deployment reached: a later apply of
	// the same name starts above it.
	Generation int              `json:"generation"`
	Replicas   []DeletedReplica `json:"replicas"`
}

// DeletedReplica is what a delete did to one replica.
type DeletedReplica struct {
	ID   string `json:"id"`
	Node string `json:"node,omitempty"`
	// Note says what was done, and what was not.
	Note string `json:"note"`
	// Left: its container is still on its node, because no worker there
	// took the stop; Note says how it goes.
	Left bool `json:"left,omitempty"`
}

// DeleteReplicaInput ends one replica's supervision for a delete.
type DeleteReplicaInput struct {
	ID            replica.ID `json:"id"`
	KeepContainer bool       `json:"keep_container,omitempty"`
	Volumes       bool       `json:"volumes,omitempty"`
}

// registerDelete serves UpdateDelete. A second delete joins the first (its
// options are the first's).
func (d *deployer) registerDelete(ctx workflow.Context) error {
	return workflow.SetUpdateHandler(ctx, replica.UpdateDelete, func(ctx workflow.Context, req DeleteRequest) (DeleteResult, error) {
		if d.deletion == nil {
			d.deletion = &req
		}
		if err := workflow.Await(ctx, func() bool { return d.deleted != nil }); err != nil {
			return DeleteResult{}, err
		}
		return *d.deleted, nil
	})
}

// deleteAll ends every replica the deployment has, in batches, records the
// generation on the run and lets the run end. Each batch is at most
// maxStepReplicas (activities in flight).
func (d *deployer) deleteAll(ctx workflow.Context) error {
	req := *d.deletion
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("deployment %s: deleting", d.name))
	if err := d.observe(ctx); err != nil {
		return err
	}
	recs := d.records()
	res := DeleteResult{Deployment: d.name, Replicas: make([]DeletedReplica, 0, len(recs))}
	for _, r := range recs {
		d.st.Generation = max(d.st.Generation, r.Generation)
	}
	res.Generation = d.st.Generation
	for start := 0; start < len(recs); start += maxStepReplicas {
		batch := recs[start:min(start+maxStepReplicas, len(recs))]
		futures := make([]workflow.Future, len(batch))
		for i, r := range batch {
			futures[i] = d.deleteReplica(ctx, r, req)
		}
		for i, r := range batch {
			out := DeletedReplica{Note: "its supervision had ended (Completed); container left as it was"}
			if futures[i] != nil {
				out = d.deleteOutcome(ctx, r, futures[i])
			}
			out.ID, out.Node = r.ID.Ref(), r.Config.Node
			res.Replicas = append(res.Replicas, out)
		}
	}
	d.st.Replicas = map[string]ReplicaRecord{}
	if err := workflow.UpsertMemo(ctx, map[string]any{replica.MemoGeneration: res.Generation}); err != nil {
		workflow.GetLogger(ctx).Warn("generation not recorded in memo", "error", err)
	}
	d.deleted = &res
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("deployment %s: deleted at generation %d", d.name, res.Generation))
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// deleteReplica starts ending one replica: a supervised one is unsupervised
// (DeleteReplica); the container of one whose supervision has ended
// (Completed) is removed on its node, unless kept (nil: nothing to do).
func (d *deployer) deleteReplica(ctx workflow.Context, r ReplicaRecord, req DeleteRequest) workflow.Future {
	ref := r.ID.Ref()
	if !r.Closed {
		what := "delete " + ref + ": stop, remove and unsupervise"
		if req.KeepContainers {
			what = "delete " + ref + ": unsupervise, container kept"
		}
		return workflow.ExecuteActivity(d.controlOptions(ctx, what, r.Config.StopGrace+time.Minute), replica.DeleteReplicaName,
			DeleteReplicaInput{ID: r.ID, KeepContainer: req.KeepContainers, Volumes: req.Volumes})
	}
	if req.KeepContainers {
		return nil
	}
	return d.stopOnNode(ctx, r.Config, "delete the container of "+ref,
		activities.StopInput{ID: r.ID, Grace: r.Config.StopGrace, Remove: true, RemoveVolumes: req.Volumes})
}

// deleteOutcome is what ending one replica did.
func (d *deployer) deleteOutcome(ctx workflow.Context, r ReplicaRecord, f workflow.Future) DeletedReplica {
	if !r.Closed {
		var out DeletedReplica
		if err := f.Get(ctx, &out); err != nil {
			// Control activities retry until they work: only a cancel gets here.
			return DeletedReplica{Note: "NOT unsupervised: " + shortError(err), Left: true}
		}
		return out
	}
	err := f.Get(ctx, nil)
	switch {
	case isNoWorker(err):
		return DeletedReplica{Left: true, Note: fmt.Sprintf("its supervision had ended (Completed); container NOT removed: no worker on node %s took it within %s; remove it with vigil node orphans %s --remove once a worker runs there",
			r.Config.Node, human(NodeScheduleToStart), r.Config.Node)}
	case err != nil:
		return DeletedReplica{Left: true, Note: "its supervision had ended (Completed); container NOT removed: " + shortError(err)}
	}
	return DeletedReplica{Note: "its supervision had ended (Completed); container removed"}
}
