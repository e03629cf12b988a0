package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

func TestPlanNamesChangedFields(t *testing.T) {
	base := shopSpec(1, "v1", policy.Policy{})
	running := func(mut func(*ReplicaConfig)) map[string]ReplicaRecord {
		cfg := base.Services[0].Config
		cfg.Spec.Env = map[string]string{}
		cfg.Policy = cfg.Policy.WithDefaults() // as read back from a running replica
		if mut != nil {
			mut(&cfg)
		}
		id := replica.ID{Deployment: "shop", Service: "api", Replica: 1}
		return map[string]ReplicaRecord{id.Ref(): {ID: id, Config: cfg}}
	}
	for _, tc := range []struct {
		name    string
		mut     func(*ReplicaConfig)
		action  PlanAction
		fields  []string
		replace bool
	}{
		{"same (nil and empty env alike, defaults filled in)", nil, ActionUnchanged, []string{}, false},
		{"image", func(c *ReplicaConfig) { c.Spec.Image = "docker.io/library/busybox:old" }, ActionUpdate, []string{"image"}, true},
		{"pull policy and env", func(c *ReplicaConfig) {
			c.Spec.PullPolicy = runtime.PullAlways
			c.Spec.Env = map[string]string{"A": "1"}
		},
			ActionUpdate, []string{"pull_policy", "env"}, true},
		{"command", func(c *ReplicaConfig) { c.Spec.Args = []string{"v0"} }, ActionUpdate, []string{"args"}, true},
		{"security", func(c *ReplicaConfig) { c.Spec.Security = &runtime.Security{ReadOnly: true} }, ActionUpdate, []string{"security"}, true},
		{"stop grace", func(c *ReplicaConfig) { c.StopGrace = time.Minute }, ActionUpdate, []string{"stop_grace"}, true},
		{"node", func(c *ReplicaConfig) { c.Node = "node-b" }, ActionUpdate, []string{"node"}, true},
		{"policy only: in place", func(c *ReplicaConfig) { c.Policy.MaxRestarts = 9 }, ActionUpdate, []string{"on_panic"}, false},
		{"webhook only: in place", func(c *ReplicaConfig) { c.IsolateWebhook = "http://127.0.0.1:9/x" }, ActionUpdate, []string{"on_panic"}, false},
		{"policy and image", func(c *ReplicaConfig) { c.Policy.MaxRestarts = 9; c.Spec.Image = "x" }, ActionUpdate, []string{"image", "on_panic"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := Plan(running(tc.mut), base)
			require.Len(t, steps, 1)
			require.Equal(t, tc.action, steps[0].Item.Action)
			require.Equal(t, tc.fields, steps[0].Item.Fields)
			require.Equal(t, tc.replace, steps[0].Replace)
		})
	}
}

func TestPlanPlacesNewReplicasOnTheFewest(t *testing.T) {
	desired := shopSpec(5, "v1", policy.Policy{})
	desired.Services[0].Config.Node = ""
	desired.Services[0].Config.Placement = []string{"node-a", "node-b", "node-c"}
	at := func(r int, node string) (string, ReplicaRecord) {
		id := replica.ID{Deployment: "shop", Service: "api", Replica: r}
		cfg := desired.Services[0].Config.withDefaults()
		cfg.Node = node
		return id.Ref(), ReplicaRecord{ID: id, Config: cfg}
	}
	current := map[string]ReplicaRecord{}
	for r, node := range map[int]string{1: "node-b", 2: "node-b", 3: "node-x"} {
		ref, rec := at(r, node)
		current[ref] = rec
	}
	var nodes []string
	var actions []PlanAction
	for _, s := range Plan(current, desired) {
		nodes = append(nodes, s.Config.Node)
		actions = append(actions, s.Item.Action)
	}
	// 1 and 2 stay on node-b, unchanged; 3's node left the placement, so it
	// moves (a replacement) to the emptiest node, like the new 4 and 5.
	require.Equal(t, []string{"node-b", "node-b", "node-a", "node-c", "node-a"}, nodes)
	require.Equal(t, []PlanAction{ActionUnchanged, ActionUnchanged, ActionUpdate, ActionCreate, ActionCreate}, actions)

	// Placement and lost_after change in place.
	ref, rec := at(1, "node-b")
	desired.Services[0].Replicas = 1
	desired.Services[0].Config.Placement = []string{"node-b"}
	desired.Services[0].Config.LostAfter = time.Minute
	steps := Plan(map[string]ReplicaRecord{ref: rec}, desired)
	require.Equal(t, []string{"placement", "lost_after"}, steps[0].Item.Fields)
	require.False(t, steps[0].Replace)
}

func TestPlanOrdersRemovalsHighestFirst(t *testing.T) {
	current := map[string]ReplicaRecord{}
	for _, svc := range []string{"api", "web"} {
		for r := 1; r <= 3; r++ {
			id := replica.ID{Deployment: "shop", Service: svc, Replica: r}
			current[id.Ref()] = ReplicaRecord{ID: id, Config: shopSpec(1, "v1", policy.Policy{}).Services[0].Config}
		}
	}
	// api scaled to 1; web removed from the file.
	steps := Plan(current, shopSpec(1, "v1", policy.Policy{}))
	require.Equal(t, []string{
		"shop/api-rep-1 unchanged []", "shop/api-rep-3 remove []", "shop/api-rep-2 remove []",
		"shop/web-rep-3 remove []", "shop/web-rep-2 remove []", "shop/web-rep-1 remove []",
	}, actions(Items(steps)))
}

func TestDeploymentWorkflowIDCannotBeAReplica(t *testing.T) {
	wid := replica.DeploymentWorkflowID("shop")
	require.Equal(t, "vigil/shop", wid)
	_, err := replica.ParseRef(wid)
	require.Error(t, err, "a deployment's workflow ID never parses as a replica's")
	require.NotEqual(t, wid, replica.ID{Deployment: "shop", Service: "api", Replica: 1}.WorkflowID())
}

// The budget: max_unavailable counts the replicas that are down; those
// are replaced first and take no budget; with none left the rollout waits.
func TestReplaceBatchCountsWhatIsDown(t *testing.T) {
	const running, crashing, pending = StateRunning, StateCrashLoopBackOff, StatePending
	type rep struct {
		state  State
		health runtime.HealthStatus
	}
	for _, tc := range []struct {
		name     string
		replicas []rep // replica n+1's observed state; every one has the old spec
		maxUnav  int
		batch    []int // the replicas replaced next
		wait     string
	}{
		{"all up: max_unavailable at a time", []rep{{running, ""}, {running, ""}, {running, ""}}, 2, []int{1, 2}, ""},
		{"one down: replaced first, no budget left", []rep{{running, ""}, {crashing, ""}, {running, ""}}, 1, []int{2}, ""},
		{"one down, budget 2: it and one serving", []rep{{running, ""}, {crashing, ""}, {running, ""}}, 2, []int{2, 1}, ""},
		{"all down: all replaced", []rep{{crashing, ""}, {pending, ""}}, 1, []int{1, 2}, ""},
		{"only healthy one of a crash-looping service is kept", []rep{{crashing, ""}, {running, ""}}, 1, []int{1}, ""},
		{"unhealthy counts as down", []rep{{running, runtime.HealthHealthy}, {running, runtime.HealthUnhealthy}}, 1, []int{2}, ""},
		{"starting counts as down", []rep{{running, runtime.HealthStarting}, {running, runtime.HealthHealthy}}, 1, []int{1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desired := shopSpec(len(tc.replicas), "v2", policy.Policy{})
			desired.Services[0].Update.MaxUnavailable = tc.maxUnav
			records := map[string]ReplicaRecord{}
			for i, r := range tc.replicas {
				id := replica.ID{Deployment: "shop", Service: "api", Replica: i + 1}
				records[id.Ref()] = ReplicaRecord{ID: id, Config: shopSpec(1, "v1", policy.Policy{}).Services[0].Config, State: r.state, Health: r.health}
			}
			batch, update, wait := replaceBatch(Plan(records, desired), records, desired)
			var got []int
			for _, s := range batch {
				got = append(got, s.ID.Replica)
			}
			require.Equal(t, tc.batch, got)
			require.Equal(t, tc.wait, wait)
			require.Equal(t, tc.maxUnav, update.MaxUnavailable)
		})
	}
}

// A replica already updated but down uses the budget: the serving ones
// wait, and the reason names the replica that is down.
func TestReplaceBatchWaitsWithNoBudget(t *testing.T) {
	desired := shopSpec(3, "v2", policy.Policy{})
	records := map[string]ReplicaRecord{}
	for r := 1; r <= 3; r++ {
		id := replica.ID{Deployment: "shop", Service: "api", Replica: r}
		rec := ReplicaRecord{ID: id, Config: shopSpec(1, "v1", policy.Policy{}).Services[0].Config, State: StateRunning}
		if r == 1 {
			rec.Config, rec.State = desired.Services[0].Config, StateCrashLoopBackOff
		}
		records[id.Ref()] = rec
	}
	batch, _, wait := replaceBatch(Plan(records, desired), records, desired)
	require.Empty(t, batch)
	require.Equal(t, "waiting: 1 of 3 replicas of service api are down (shop/api-rep-1: CrashLoopBackOff) and max_unavailable is 1; the next replacement starts when one is back", wait)

	// Nothing to replace: no batch, no wait.
	batch, _, wait = replaceBatch(nil, records, desired)
	require.Empty(t, batch)
	require.Empty(t, wait)
}
