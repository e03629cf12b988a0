package workflows

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

func digestConfig() ReplicaConfig {
	return ReplicaConfig{
		Spec: runtime.ContainerSpec{Image: "docker.io/library/busybox:1.36", Args: []string{"sleep", "3600"},
			Env: map[string]string{"A": "1"}},
		Node: "n1",
	}
}

// Equal configs name one digest: defaults applied or not, after a JSON
// round trip, nil or empty slices and maps.
func TestConfigDigestSameConfig(t *testing.T) {
	c := digestConfig()
	d := ConfigDigest(c)
	require.Len(t, d, 24)
	require.Equal(t, d, ConfigDigest(c.withDefaults()), "defaults applied")

	var back ReplicaConfig
	raw, err := json.Marshal(c)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, d, ConfigDigest(back), "after a JSON round trip")

	empty := c
	empty.Spec.Entrypoint = []string{}
	empty.Policy.Rules = []policy.Rule{}
	require.Equal(t, d, ConfigDigest(empty), "empty and nil slices")

	seeded := c
	seeded.Policy.Seed = 42
	require.Equal(t, d, ConfigDigest(seeded), "the seed is the workflow's, not the file's")

	placed, moved := c, c
	placed.Placement = []string{"node-a", "node-b"}
	moved.Placement, moved.Node = placed.Placement, "node-b"
	require.Equal(t, ConfigDigest(placed), ConfigDigest(moved), "a movable replica's node is not config")
	require.NotEqual(t, d, ConfigDigest(placed), "its placement is")
}

// Any change the file can make changes the digest, the policy too.
func TestConfigDigestDifferentConfig(t *testing.T) {
	base := digestConfig()
	seen := map[string]string{ConfigDigest(base): "base"}
	for name, change := range map[string]func(*ReplicaConfig){
		"args":       func(c *ReplicaConfig) { c.Spec.Args = []string{"sleep", "60"} },
		"env":        func(c *ReplicaConfig) { c.Spec.Env["A"] = "2" },
		"image":      func(c *ReplicaConfig) { c.Spec.Image = "docker.io/library/busybox:1.37" },
		"node":       func(c *ReplicaConfig) { c.Node = "n2" },
		"stop_grace": func(c *ReplicaConfig) { c.StopGrace = time.Minute },
		"policy":     func(c *ReplicaConfig) { c.Policy.MaxRestarts = 9 },
		"webhook":    func(c *ReplicaConfig) { c.IsolateWebhook = "http://127.0.0.1:1/x" },
	} {
		c := digestConfig()
		change(&c)
		d := ConfigDigest(c)
		require.NotContains(t, seen, d, "%s: same digest as %s", name, seen[d])
		seen[d] = name
	}
}

// replaceOnce supervises in, sends req while the container runs, and
// returns the answer, the node and the state once the replica watches again.
func replaceOnce(t *testing.T, in SupervisionInput, req ReconfigureRequest) (ReconfigureResult, *node, StateView) {
	t.Helper()
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	var after StateView
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateReconfigure, req, res) })
	whenWatching(env, n, 2, 0, func() {
		after = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())
	return reconfigureResult(t, res), n, after
}

// Since v0.3.0 a replacement at a generation the replica already holds,
// with another config, is carried out: "already done" means this exact
// config (a rollback applied while the replacement to the new spec was in
// flight).
func TestReplaceSameGenerationOtherConfig(t *testing.T) {
	in := input(policy.Policy{})
	in.Generation = 4
	next := in
	next.Spec.Args = []string{"echo rolled back"}
	res, n, after := replaceOnce(t, in, ReconfigureRequest{Generation: 4, Config: next.ReplicaConfig, Replace: true})
	require.True(t, res.Ready)
	require.Len(t, n.stops, 1, "the old container is replaced")
	require.Equal(t, []string{"echo rolled back"}, n.specs[len(n.specs)-1].Args)
	require.Equal(t, 4, after.Generation)
}

// The same config at a higher generation is already done: nothing is
// replaced, and the replica holds the higher generation.
func TestReplaceSameConfigTakesGeneration(t *testing.T) {
	in := input(policy.Policy{})
	in.Generation = 2
	res, n, after := replaceOnce(t, in, ReconfigureRequest{Generation: 5, Config: in.ReplicaConfig, Replace: true})
	require.True(t, res.Ready)
	require.Empty(t, n.stops)
	require.Equal(t, 5, after.Generation)
}

// The verdict of a replacement survives continue-as-new: the same request
// retried to the next run (its activity lost the first answer) is answered
// as the first was, not from the state the replica has since reached.
func TestReplacementVerdictSurvivesContinueAsNew(t *testing.T) {
	n := &node{watchAt: map[int]runtime.Exit{1: crash(3)}}
	env := newEnv(t, n)
	in := input(policy.Policy{})
	in.ContinueAsNewAfter = 1
	next := input(policy.Policy{})
	next.Spec.Args = []string{"exit 1"}
	req := ReconfigureRequest{Generation: 2, Config: next.ReplicaConfig, Replace: true, MinReady: time.Second}
	first := &updateResult{}
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateReconfigure, req, first) })
	env.ExecuteWorkflow(Supervise, in)
	require.False(t, reconfigureResult(t, first).Ready)
	cont := continuedInput(t, env)

	n2 := &node{}
	env2 := newEnv(t, n2)
	again := &updateResult{}
	whenWatching(env2, n2, 1, 0, func() { sendUpdate(env2, replica.UpdateReconfigure, req, again) })
	unsuperviseWhenWatching(env2, n2, 2, 0)
	env2.ExecuteWorkflow(Supervise, cont)
	require.NoError(t, env2.GetWorkflowError())
	r := reconfigureResult(t, again)
	require.False(t, r.Ready, "the same verdict")
	require.Contains(t, r.Reason, "exited within min_ready")
	require.Empty(t, n2.stops, "nothing replaced again")
}
