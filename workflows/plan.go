package workflows

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Planning: Plan compares what runs with a deployment file, replica by
// replica, for `vigil apply --dry-run` and for the deployment workflow,
// which takes the steps of what is left (pending) one at a time.

// PlanItem is one line of an apply's plan (`vigil apply --dry-run --json`).
type PlanItem struct {
	ID     string     `json:"id"`
	Action PlanAction `json:"action"`
	// Fields are the changed fields of an update, e.g. ["args", "env"].
	Fields []string `json:"fields"`
	// Problems are what the preflight on the replica's node found (a dry
	// run's only): the rollout would pause there.
	Problems []runtime.Problem `json:"problems,omitempty"`
}

// PlanAction is what an apply does to one replica.
type PlanAction string

const (
	// ActionCreate supervises a new replica (or one whose supervision ended).
	ActionCreate PlanAction = "create"
	// ActionUpdate changes a replica's config: its policy in place, anything
	// else by a new container.
	ActionUpdate PlanAction = "update"
	// ActionRemove stops a replica the file no longer wants and removes it.
	ActionRemove PlanAction = "remove"
	// ActionUnchanged: the replica already runs as the file wants.
	ActionUnchanged PlanAction = "unchanged"
)

// Step is a plan item with what carrying it out takes.
type Step struct {
	Item    PlanItem
	ID      replica.ID
	Config  ReplicaConfig // the desired config (create, update)
	Replace bool          // update: needs a new container (otherwise applied in place)
	Closed  bool          // remove or create of a replica whose supervision has ended
}

// inPlaceFields are the changes applied to a running container without
// replacing it: the restart policy and where the replica may move.
var inPlaceFields = []string{"on_panic", "placement", "lost_after"}

// inPlaceField is the restart policy's field.
const inPlaceField = "on_panic"

// Plan compares the replicas that exist with the desired deployment. Items
// come in file order (services, then replicas from 1), then the replicas to
// remove, highest-numbered first.
func Plan(current map[string]ReplicaRecord, desired DeploymentSpec) []Step {
	steps := make([]Step, 0, max(desired.ReplicaCount(), len(current)))
	kept := 0 // wanted replicas that exist
	diffs := diffMemo{}
	wanted := make(map[string]bool, desired.ReplicaCount())
	for _, svc := range desired.Services {
		place := newPlacer(current, desired.Name, svc)
		// A record whose digest is the service's (and on its node) is
		// unchanged without comparing field by field: 10,000 replicas plan
		// in milliseconds.
		digest := ConfigDigest(svc.Config)
		for r := 1; r <= svc.Replicas; r++ {
			id := replica.ID{Deployment: desired.Name, Service: svc.Name, Replica: r}
			ref := id.Ref()
			wanted[ref] = true
			want := svc.Config.withDefaults()
			rec, ok := current[ref]
			if ok {
				kept++
			}
			if want.Movable() {
				want.Node = place.node(rec, ok)
			}
			switch {
			case !ok:
				steps = append(steps, Step{Item: PlanItem{ID: ref, Action: ActionCreate, Fields: []string{}}, ID: id, Config: want})
				continue
			}
			var fields []string
			if rec.Digest != digest || rec.Config.Node != want.Node {
				fields = diffs.of(rec, want, digest)
			}
			switch {
			case len(fields) == 0:
				steps = append(steps, Step{Item: PlanItem{ID: ref, Action: ActionUnchanged, Fields: []string{}}, ID: id, Config: want, Closed: rec.Closed})
			case rec.Closed:
				// Supervision has ended: start it afresh with the new config.
				steps = append(steps, Step{Item: PlanItem{ID: ref, Action: ActionCreate, Fields: fields}, ID: id, Config: want, Closed: true})
			default:
				replace := slices.ContainsFunc(fields, func(f string) bool { return !slices.Contains(inPlaceFields, f) })
				steps = append(steps, Step{Item: PlanItem{ID: ref, Action: ActionUpdate, Fields: fields}, ID: id, Config: want, Replace: replace})
			}
		}
	}
	var gone []ReplicaRecord
	if kept < len(current) { // (sorting 10,000 keys for none is not free)
		for _, ref := range workflow.DeterministicKeys(current) {
			if !wanted[ref] {
				gone = append(gone, current[ref])
			}
		}
	}
	sort.Slice(gone, func(i, j int) bool {
		a, b := gone[i].ID, gone[j].ID
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Replica > b.Replica
	})
	for _, rec := range gone {
		steps = append(steps, Step{Item: PlanItem{ID: rec.ID.Ref(), Action: ActionRemove, Fields: []string{}}, ID: rec.ID, Config: rec.Config, Closed: rec.Closed})
	}
	return steps
}

// diffMemo remembers diffConfig by the configs' digests and nodes within
// one plan: the replicas of a service share a few configs.
type diffMemo map[[4]string][]string

func (m diffMemo) of(rec ReplicaRecord, want ReplicaConfig, wantDigest string) []string {
	if rec.Digest == "" {
		return diffConfig(rec.Config.withDefaults(), want)
	}
	key := [4]string{rec.Digest, rec.Config.Node, wantDigest, want.Node}
	if f, ok := m[key]; ok {
		return f
	}
	f := diffConfig(rec.Config.withDefaults(), want)
	m[key] = f
	return f
}

// placer chooses the node of each replica of a service with placement: a
// replica on one of its nodes stays there; a new one (or one whose node left
// the placement) goes to the node with the fewest of the service's replicas,
// the first listed on a tie.
type placer struct {
	nodes  []string
	counts map[string]int
}

func newPlacer(current map[string]ReplicaRecord, deployment string, svc ServiceSpec) *placer {
	p := &placer{nodes: svc.Config.Placement, counts: map[string]int{}}
	for r := 1; r <= svc.Replicas && svc.Config.Movable(); r++ {
		id := replica.ID{Deployment: deployment, Service: svc.Name, Replica: r}
		if rec, ok := current[id.Ref()]; ok && svc.Config.Eligible(rec.Config.Node) {
			p.counts[rec.Config.Node]++
		}
	}
	return p
}

// node is where the replica (rec, if it exists) runs in the plan.
func (p *placer) node(rec ReplicaRecord, exists bool) string {
	if exists && slices.Contains(p.nodes, rec.Config.Node) {
		return rec.Config.Node
	}
	best := p.nodes[0]
	for _, n := range p.nodes[1:] {
		if p.counts[n] < p.counts[best] {
			best = n
		}
	}
	p.counts[best]++
	return best
}

// Replaces reports whether the step replaces a replica's container: what
// a rollout preflights before it stops the old one.
func (s Step) Replaces() bool { return s.Item.Action == ActionUpdate && s.Replace }

// Items are the plan's lines.
func Items(steps []Step) []PlanItem {
	out := make([]PlanItem, len(steps))
	for i, s := range steps {
		out[i] = s.Item
	}
	return out
}

// Changes reports whether carrying out the plan would change anything.
func Changes(items []PlanItem) bool {
	for _, it := range items {
		if it.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Planning in the workflow: what is left of the rollout.

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

// deepEqual is reflect.DeepEqual, a pure comparison (see diffConfig).
//
//workflowcheck:ignore
func deepEqual(a, b any) bool { return reflect.DeepEqual(a, b) }

// diffConfig names the fields that differ: the container spec's fields by
// their JSON names (so fields added to the spec later are named without a
// change here), then stop_grace, node and on_panic. It is deterministic
// (reflection over one struct type, fields in declaration order), though
// workflowcheck flags reflect's internals (allocation, panics) as not.
//
//workflowcheck:ignore
func diffConfig(have, want ReplicaConfig) []string {
	var fields []string
	hv, wv := reflect.ValueOf(have.Spec), reflect.ValueOf(want.Spec)
	t := hv.Type()
	for i := 0; i < t.NumField(); i++ {
		a, b := hv.Field(i).Interface(), wv.Field(i).Interface()
		if !deepEqual(a, b) && !(isEmpty(hv.Field(i)) && isEmpty(wv.Field(i))) {
			fields = append(fields, jsonName(t.Field(i)))
		}
	}
	if have.StopGrace != want.StopGrace {
		fields = append(fields, "stop_grace")
	}
	if have.Node != want.Node {
		fields = append(fields, "node")
	}
	if !deepEqual(have.Policy, want.Policy) || have.IsolateWebhook != want.IsolateWebhook {
		fields = append(fields, inPlaceField)
	}
	if !slices.Equal(have.Placement, want.Placement) {
		fields = append(fields, "placement")
	}
	if have.LostAfter != want.LostAfter {
		fields = append(fields, "lost_after")
	}
	return fields
}

// isEmpty treats nil and empty slices and maps alike (JSON round trips turn
// one into the other).
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" || name == "-" {
		return strings.ToLower(f.Name)
	}
	return name
}

// The unavailability budget: max_unavailable counts every
// replica of the service that is down, not only those being replaced.

// Up reports whether the replica serves: its container Running and, where
// probes exist, healthy.
func (r ReplicaRecord) Up() bool {
	return r.State == StateRunning && (r.Health == "" || r.Health == runtime.HealthHealthy)
}

// replaceBatch picks the next replacements among pending, those of the
// first service that has any, against the observed records: the
// replacements of replicas already down all go (replacing them takes
// nothing down), then as many serving ones as the budget leaves
// (max_unavailable less the service's replicas down). With none left it
// returns no batch and why the rollout waits.
func replaceBatch(pending []Step, records map[string]ReplicaRecord, desired DeploymentSpec) (batch []Step, update UpdateSettings, wait string) {
	var service string
	for _, s := range pending {
		if s.Replaces() {
			service = s.ID.Service
			break
		}
	}
	if service == "" {
		return nil, UpdateSettings{}, ""
	}
	svc, _ := desired.service(service)
	update = svc.Update.WithDefaults()
	var down []string
	for r := 1; r <= svc.Replicas; r++ {
		ref := replica.ID{Deployment: desired.Name, Service: service, Replica: r}.Ref()
		if rec, ok := records[ref]; !ok || !rec.Up() {
			down = append(down, ref)
		}
	}
	budget := update.MaxUnavailable - len(down)
	var serving []Step
	for _, s := range pending {
		if s.ID.Service != service || !s.Replaces() {
			continue
		}
		if rec := records[s.ID.Ref()]; rec.Up() {
			serving = append(serving, s)
			continue
		}
		batch = append(batch, s)
	}
	if budget > 0 {
		batch = append(batch, serving[:min(budget, len(serving))]...)
	}
	if len(batch) == 0 {
		rec := records[down[0]]
		state := string(rec.State)
		if rec.State == StateRunning {
			state = string(rec.Health)
		}
		wait = fmt.Sprintf("waiting: %d of %d replicas of service %s are down (%s: %s) and max_unavailable is %d; the next replacement starts when one is back",
			len(down), svc.Replicas, service, down[0], orUnknown(state), update.MaxUnavailable)
	}
	return batch, update, wait
}

func orUnknown(s string) string {
	if s == "" {
		return "not supervised"
	}
	return s
}
