package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The address and ports a start reports are in the state query (vigil
// status), and a continued run keeps them.
func TestStateShowsNetwork(t *testing.T) {
	net := &runtime.NetworkStatus{IP: "10.213.0.7", Ports: []runtime.PortMapping{{Container: 8080, Host: 18080, Protocol: "tcp", HostIP: "127.0.0.1"}}}
	n := &node{network: net}
	env := newEnv(t, n)
	var view StateView
	whenWatching(env, n, 1, 0, func() {
		view = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, net.IP, view.IP)
	require.Equal(t, net.Ports, view.Ports)
}

// Replica n publishes the service's host ports plus n - 1.
func TestReplicaPublishesItsOwnHostPort(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	in := input(policy.Default())
	in.ID.Replica = 3
	in.Spec.Network = runtime.NetworkBridge
	in.Spec.Ports = []runtime.PortMapping{{Container: 8080, Host: 18080, Protocol: "tcp"}}
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) })
	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())
	require.NotEmpty(t, n.specs)
	require.Equal(t, 18082, n.specs[0].Ports[0].Host)
}

// Named volumes outlive supervision unless the operator asks: unsupervise
// --stop stops and removes the container; --stop --volumes also deletes its
// volumes; --volumes alone is refused before it reaches history.
func TestUnsuperviseVolumes(t *testing.T) {
	for _, tc := range []struct {
		req      UnsuperviseRequest
		rejected string
		want     []activities.StopInput
	}{
		{UnsuperviseRequest{Stop: true}, "", []activities.StopInput{{ID: replicaID, Grace: runtime.DefaultStopGrace, Remove: true}}},
		{UnsuperviseRequest{Stop: true, Volumes: true}, "", []activities.StopInput{{ID: replicaID, Grace: runtime.DefaultStopGrace, Remove: true, RemoveVolumes: true}}},
		{UnsuperviseRequest{Volumes: true}, "needs stop too", nil},
	} {
		n := &node{}
		env := newEnv(t, n)
		res := &updateResult{}
		whenWatching(env, n, 1, 0, func() {
			sendUpdate(env, replica.UpdateUnsupervise, tc.req, res)
			if tc.rejected != "" {
				env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{}) }, time.Second)
			}
		})
		env.ExecuteWorkflow(Supervise, input(policy.Default()))
		require.NoError(t, env.GetWorkflowError())
		if tc.rejected != "" {
			require.ErrorContains(t, res.rejected, tc.rejected)
		} else {
			require.NoError(t, res.err)
		}
		require.Equal(t, tc.want, n.stops, "%+v", tc.req)
	}
}
