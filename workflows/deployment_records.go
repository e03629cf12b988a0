package workflows

import (
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// Records: what the deployment knows of its replicas (read by observe, kept
// up to date by the steps) and what it answers about them.

// RolloutState is where a deployment's rollout stands.
type RolloutState string

const (
	// RolloutProgressing: steps are left to take.
	RolloutProgressing RolloutState = "progressing"
	// RolloutPaused: a step failed (or the service was shut down); nothing
	// moves until the next apply.
	RolloutPaused RolloutState = "paused"
	// RolloutComplete: every replica runs the desired config.
	RolloutComplete RolloutState = "complete"
)

// RolloutStatus is the "rollout" query's answer and `vigil rollout status --json`.
type RolloutStatus struct {
	Deployment string       `json:"deployment"`
	Generation int          `json:"generation"`
	State      RolloutState `json:"state"`
	// Updated counts the desired replicas that run the desired config; Total
	// is how many the deployment wants.
	Updated int `json:"updated"`
	Total   int `json:"total"`
	// Reason is why the rollout is paused, or why it waits.
	Reason string `json:"reason,omitempty"`
}

// registerQueries serves QueryRollout, QueryDesired and QueryReplicas.
// (Registering a query issues no command.)
func (d *deployer) registerQueries(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, replica.QueryRollout, func() (RolloutStatus, error) {
		return d.status(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, replica.QueryDesired, func() (*DeploymentSpec, error) {
		return d.st.Desired, nil
	}); err != nil {
		return err
	}
	return workflow.SetQueryHandler(ctx, replica.QueryReplicas, func() ([]ReplicaRecord, error) {
		return d.records(), nil
	})
}

// observe reads what runs: the replicas this workflow knows and any other
// replica supervised under the deployment's name.
func (d *deployer) observe(ctx workflow.Context) error {
	known := make([]string, 0, len(d.st.Replicas))
	for _, r := range d.records() {
		known = append(known, r.ID.Ref())
	}
	seen, err := d.observeReplicas(ctx, "observe the replicas of "+d.name, ObserveInput{Deployment: d.name, Known: known})
	if err != nil {
		return err
	}
	d.st.Replicas = make(map[string]ReplicaRecord, len(seen))
	for _, r := range seen {
		d.st.Replicas[r.ID.Ref()] = r
	}
	return nil
}

// reobserve reads the replicas refs name again (Only); one no longer
// supervised is forgotten, so the next step creates it.
func (d *deployer) reobserve(ctx workflow.Context, refs []string) error {
	seen, err := d.observeReplicas(ctx, fmt.Sprintf("observe the %d replicas the step changed", len(refs)),
		ObserveInput{Deployment: d.name, Known: refs, Only: true})
	if err != nil {
		return err
	}
	byRef := make(map[string]ReplicaRecord, len(seen))
	for _, r := range seen {
		byRef[r.ID.Ref()] = r
	}
	for _, ref := range refs {
		// (A worker that knows no Only lists them all: take only refs.)
		if r, ok := byRef[ref]; ok {
			d.st.Replicas[ref] = r
		} else {
			delete(d.st.Replicas, ref)
		}
	}
	return nil
}

func (d *deployer) observeReplicas(ctx workflow.Context, summary string, in ObserveInput) ([]ReplicaRecord, error) {
	var seen []ReplicaRecord
	err := workflow.ExecuteActivity(d.controlOptions(ctx, summary, time.Minute), replica.ObserveReplicasName, in).Get(ctx, &seen)
	return seen, err
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
		st.State, st.Reason = RolloutProgressing, d.waiting
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
