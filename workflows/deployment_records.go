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

// registerQueries serves QueryRollout, QueryDesired, QueryReplicasCompact
// and QueryReplicas (full records, for CLIs older than v0.3.0).
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
	if err := workflow.SetQueryHandler(ctx, replica.QueryReplicasCompact, func() (CompactReplicas, error) {
		return Compact(d.records()), nil
	}); err != nil {
		return err
	}
	return workflow.SetQueryHandler(ctx, replica.QueryReplicas, func() ([]ReplicaRecord, error) {
		return d.records(), nil
	})
}

// observe reads what runs: the replicas this workflow knows and any other
// replica supervised under the deployment's name. Since v0.3.0 it reads
// them in pages (observePages), so that no result nears 2 MiB.
func (d *deployer) observe(ctx workflow.Context) error {
	known := make([]string, 0, len(d.st.Replicas))
	for _, r := range d.records() {
		known = append(known, r.ID.Ref())
	}
	var seen []ReplicaRecord
	if d.rel >= V030 {
		var list ObservePage
		if err := workflow.ExecuteActivity(d.controlOptions(ctx, "list the replicas of "+d.name, time.Minute),
			replica.ObserveReplicaPageName, ObservePageInput{Deployment: d.name, List: true}).Get(ctx, &list); err != nil {
			return err
		}
		have := make(map[string]bool, len(known))
		for _, ref := range known {
			have[ref] = true
		}
		for _, ref := range list.Listed {
			if !have[ref] {
				have[ref] = true
				known = append(known, ref)
			}
		}
		var err error
		if seen, err = d.observePages(ctx, known); err != nil {
			return err
		}
	} else {
		err := workflow.ExecuteActivity(d.controlOptions(ctx, "observe the replicas of "+d.name, time.Minute),
			replica.ObserveReplicasName, ObserveInput{Deployment: d.name, Known: known}).Get(ctx, &seen)
		if err != nil {
			return err
		}
	}
	d.st.Replicas = make(map[string]ReplicaRecord, len(seen))
	for _, r := range seen {
		d.st.Replicas[r.ID.Ref()] = r
	}
	return nil
}

// observePageSize bounds the replicas one observe page reads.
const observePageSize = 500

// observePageTimeout bounds one page: three calls to the server per
// replica, on a busy server; the page heartbeats per replica meanwhile.
const observePageTimeout = 5 * time.Minute

// observePages reads the replicas refs names, observePageSize a page, all
// pages at once.
func (d *deployer) observePages(ctx workflow.Context, refs []string) ([]ReplicaRecord, error) {
	var futures []workflow.Future
	for i := 0; i < len(refs); i += observePageSize {
		page := refs[i:min(i+observePageSize, len(refs))]
		futures = append(futures, workflow.ExecuteActivity(d.controlOptions(ctx,
			fmt.Sprintf("observe %d replicas of %s from %s", len(page), d.name, page[0]), observePageTimeout),
			replica.ObserveReplicaPageName, ObservePageInput{Deployment: d.name, Refs: page}))
	}
	var out []ReplicaRecord
	for _, f := range futures {
		var page ObservePage
		if err := f.Get(ctx, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Replicas.Records(d.name)...)
	}
	return out, nil
}

// reobserve (since v0.3.0) reads the replicas refs names again; one no
// longer supervised is forgotten, so the next step creates it.
func (d *deployer) reobserve(ctx workflow.Context, refs []string) error {
	seen, err := d.observePages(ctx, refs)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		delete(d.st.Replicas, ref)
	}
	for _, r := range seen {
		d.st.Replicas[r.ID.Ref()] = r
	}
	return nil
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
	// A replica a step is changing is not updated until the step is done
	// (its record is read again then): a rollback applied mid-replacement
	// is not complete while the replica in flight is being brought to the
	// spec rolled back from, nor while it is being brought back.
	for _, s := range Plan(d.st.Replicas, *d.st.Desired) {
		_, moving := d.inflight[s.Item.ID]
		if s.Item.Action == ActionUnchanged && !moving {
			st.Updated++
		} else {
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
