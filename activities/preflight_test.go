package activities_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// Preflight reports each replica's problems, by field, and touches no
// container: an env reference the worker cannot resolve, a missing image.
func TestPreflightReportsProblemsByReplica(t *testing.T) {
	f := runtimetest.New()
	f.MissingImage("docker.io/library/nope:1")
	ok := replica.ID{Deployment: "shop", Service: "api", Replica: 1}
	bad := replica.ID{Deployment: "shop", Service: "web", Replica: 2}
	h := newHarness(t, f, activities.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	var res activities.PreflightResult
	require.NoError(t, h.run(replica.PreflightName, activities.PreflightInput{Replicas: []activities.PreflightReplica{
		{ID: ok, Spec: runtime.ContainerSpec{Image: "docker.io/library/busybox:local"}},
		{ID: bad, Spec: runtime.ContainerSpec{Image: "docker.io/library/nope:1", Env: map[string]string{"TOKEN": "$E:SHOP_TOKEN"}}},
	}}, &res))
	require.Equal(t, []activities.PreflightProblem{
		{ID: bad, Problem: runtime.Problem{Field: "env.TOKEN", Reason: "$E:SHOP_TOKEN is not set in the environment of the worker on this node; export SHOP_TOKEN before starting vigil-worker"}},
		{ID: bad, Problem: runtime.Problem{Field: "image", Reason: "docker.io/library/nope:1 is not on the fake node"}},
	}, res.Problems)
	require.Zero(t, f.Calls(runtimetest.OpCreate)+f.Calls(runtimetest.OpStop)+f.Calls(runtimetest.OpRemove))
	require.Equal(t, 2, f.Calls(runtimetest.OpPreflight))
}

// A host port another container publishes is a problem of ports[i].host,
// checked with the replica's own port (the service's, plus n - 1); the
// replica's own container does not count.
func TestPreflightChecksTheReplicasHostPorts(t *testing.T) {
	f := runtimetest.New()
	bridge := func(host int) runtime.ContainerSpec {
		return runtime.ContainerSpec{Image: "docker.io/library/busybox:local", Serving: runtime.Serving{
			Network: runtime.NetworkBridge, Ports: []runtime.PortMapping{{Container: 80, Host: host, Protocol: runtime.ProtocolTCP}}}}
	}
	other := replica.ID{Deployment: "blog", Service: "web", Replica: 1}
	self := replica.ID{Deployment: "shop", Service: "web", Replica: 2}
	ctx := context.Background()
	require.NoError(t, f.Create(ctx, other, bridge(18081)))
	require.NoError(t, f.Create(ctx, self, bridge(18080)))
	h := newHarness(t, f, activities.Options{})
	check := func(id replica.ID, spec runtime.ContainerSpec) []activities.PreflightProblem {
		var res activities.PreflightResult
		require.NoError(t, h.run(replica.PreflightName, activities.PreflightInput{Replicas: []activities.PreflightReplica{{ID: id, Spec: spec}}}, &res))
		return res.Problems
	}
	got := check(self, bridge(18080)) // replica 2 publishes 18081
	require.Len(t, got, 1)
	require.Equal(t, "ports[0].host", got[0].Field)
	require.Equal(t, "PortInUse: host port 0.0.0.0:18081 is in use by container blog.web-rep-1; stop it or publish another host port", got[0].Reason)
	require.Empty(t, check(self, bridge(18079)), "its own port (18080) does not count")
}
