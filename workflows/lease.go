package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// A node's lease is its watch's renewal (the lease's home: the node watch).
// Since v0.3.0 the node's workflow follows it from any worker: when the
// lease lapses it tells the node's replicas (signal node-lease, Lost), and
// again when it comes back. A movable replica then moves by its own durable
// timer once the lease is its lost_after old (move.go), and a pinned one
// shows NodeLost. A healthy node costs no history and no request beyond its
// renewals: the server itself notices a lapse (the watch's heartbeat times
// out); only while the lease is lapsed does an activity read it, to tell
// its return.

// NodeLeaseLapse is the lease age at which the node's replicas hear that it
// lapsed, and a node is no longer Ready to take moved replicas: one renewal
// missed and a half (below replica.MinLostAfter, so that every replica hears
// it before its lost_after). It is the watch's heartbeat timeout.
const NodeLeaseLapse = NodeLiveHeartbeat + NodeLiveHeartbeat/2

// NodeLeaseInput is AwaitNodeLease's argument: return once the lease of
// Node was renewed after RenewedAfter.
type NodeLeaseInput struct {
	Node         string    `json:"node"`
	RenewedAfter time.Time `json:"renewed_after,omitzero"`
}

// NodeLease is what the server knows of a node's lease: when it was last
// renewed (the server's clock; zero: no watch has run).
type NodeLease struct {
	LastRenewal time.Time `json:"last_renewal,omitzero"`
}

// NodeLeaseNotice is the node-lease signal: Node's lease, last renewed at
// LastRenewal, lapsed (Lost) or came back (!Lost); or, with State, what an
// operator made of the node (Cordoned, Draining, Ready again).
type NodeLeaseNotice struct {
	Node        string    `json:"node"`
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	Lost        bool      `json:"lost,omitempty"`
	State       NodeState `json:"state,omitempty"`
}

// NotifyNodeReplicasInput sends Notice to every replica supervised on Node.
type NotifyNodeReplicasInput struct {
	Node   string          `json:"node"`
	Notice NodeLeaseNotice `json:"notice"`
}

// leaseHeartbeat: a lease wait is retried on another worker this soon after
// its worker is lost (it may be the lost node's own).
const leaseHeartbeat = 10 * time.Second

// leaseOptions are the options of the node workflow's lease activities, on
// the workflow task queue (any worker).
func leaseOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           workflow.GetInfo(ctx).TaskQueueName,
		StartToCloseTimeout: 48 * time.Hour, // the run continues as new before
		HeartbeatTimeout:    leaseHeartbeat,
		RetryPolicy:         retryDoubling(time.Second, 10*time.Second),
		Summary:             summary,
	})
}

// followLease tells the node's replicas each time its lease lapses (the
// watch timed out: lapses) and comes back, for the node workflow's run
// (since v0.3.0). Only a lapsed lease is read, once per renewal, until it
// is back: a healthy node costs nothing here.
func followLease(ctx workflow.Context, node string, lapses workflow.ReceiveChannel) {
	log := workflow.GetLogger(ctx)
	notify := func(n NodeLeaseNotice) {
		what := "tell the replicas of " + node + " its lease came back"
		if n.Lost {
			what = "tell the replicas of " + node + " its lease lapsed"
		}
		if err := workflow.ExecuteActivity(leaseOptions(ctx, what), replica.NotifyNodeReplicasName,
			NotifyNodeReplicasInput{Node: node, Notice: n}).Get(ctx, nil); err != nil {
			log.Warn("node replicas not told of the lease", "node", node, "error", err)
		}
	}
	for {
		var lapsed NodeLease
		if !lapses.Receive(ctx, &lapsed) {
			return
		}
		notify(NodeLeaseNotice{Node: node, LastRenewal: lapsed.LastRenewal, Lost: true})
		var back NodeLease
		for {
			err := workflow.ExecuteActivity(leaseOptions(ctx, "await the return of the lease of "+node), replica.AwaitNodeLeaseName,
				NodeLeaseInput{Node: node, RenewedAfter: lapsed.LastRenewal}).Get(ctx, &back)
			if err == nil || temporal.IsCanceledError(err) {
				break
			}
			_ = workflow.Sleep(ctx, leaseHeartbeat)
		}
		if ctx.Err() != nil {
			return
		}
		log.Info("node lease back", "node", node, "last_renewal", back.LastRenewal)
		notify(NodeLeaseNotice{Node: node, LastRenewal: back.LastRenewal})
	}
}
