package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
)

// The node workflow keeps one watch running on its node: a long-lived
// WatchNode activity on the node's queue that reports every container exit
// to its replica's workflow. A worker claims its node when it starts: the
// workflow then drops the watch it had (its worker may be dead) and starts
// a new one at once, which the live worker picks up, instead of waiting for
// the old one's heartbeat to time out. The heartbeat only tells operators
// whether the node is reachable, so it is slow and cheap.

const (
	// NodeHeartbeatInterval is how often a node watch heartbeats: about 60
	// requests per node-hour. NodeHeartbeatTimeout is when the server
	// considers the watch lost (the node unreachable) and retries it.
	NodeHeartbeatInterval = time.Minute
	NodeHeartbeatTimeout  = 3 * time.Minute
	// NodeLiveHeartbeat is the watch's heartbeat since v0.3.0, which is
	// the node's lease renewal (package lease; activities/lease.go): a
	// claimant whose watch showed it alive within NodeClaimLiveFor holds
	// the node. A heartbeat adds no history.
	NodeLiveHeartbeat = lease.Renewal
	NodeClaimLiveFor  = time.Minute
	// nodeWatchesPerRun bounds the watches one run starts before it
	// continues as new (each adds about ten events).
	nodeWatchesPerRun = 100
)

// NodeInput starts (or continues) a node's workflow.
type NodeInput struct {
	Node string `json:"node"`
	// Carry is the state carried across continue-as-new; nil on first start.
	Carry *NodeCarry `json:"carry,omitempty"`
}

// Claim is a worker's claim of its node.
type Claim struct {
	// ID is unique per claim (a uuid); Worker is the claiming worker's identity.
	ID     string    `json:"id"`
	Worker string    `json:"worker"`
	At     time.Time `json:"at"`
	// NodeID is the node's persistent identity (a uuid kept in the
	// worker's state dir), Instance the claiming worker process's (a uuid
	// per process), Host its host name. Empty in a claim by signal (versions.go).
	NodeID   string `json:"node_id,omitempty"`
	Instance string `json:"instance,omitempty"`
	Host     string `json:"host,omitempty"`
	// Replaces is the instance of the node's previous worker process on
	// this host, which the claimant knows has ended (a restart).
	Replaces string `json:"replaces,omitempty"`
	// HolderWorker and HolderSeen are the claimant's reading of the node's
	// current watch: the worker running it and when it last showed that
	// worker alive (its start or last heartbeat, the server's clock); empty
	// when no watch runs.
	HolderWorker string    `json:"holder_worker,omitempty"`
	HolderSeen   time.Time `json:"holder_seen,omitzero"`
	// Logs is where the claimant serves its containers' logs (`vigil
	// logs` reads them there); nil from a worker that serves none.
	Logs *LogsEndpoint `json:"logs,omitempty"`
}

// LogsEndpoint is a node's logs endpoint: its address and the SHA-256 (hex)
// of its certificate, which a reader trusts alone. Nothing in it is secret:
// a reader also needs the node's token, which never leaves the hosts.
type LogsEndpoint struct {
	Address    string `json:"address"`
	CertSHA256 string `json:"cert_sha256"`
}

// NodeCarry is what a continued node workflow keeps.
type NodeCarry struct {
	Claims    int       `json:"claims"`
	LastClaim *Claim    `json:"last_claim,omitempty"`
	Watches   int       `json:"watches"`
	Since     time.Time `json:"since"`
	Runs      int       `json:"runs"`
	// TakenOver: `vigil node takeover` released the node; the next claim
	// is accepted whoever makes it.
	TakenOver bool `json:"taken_over,omitempty"`
	// Cordoned: no replica moves here (`vigil node cordon`); Draining: its
	// movable replicas are moving off it (`vigil node drain`; since v0.3.0).
	Cordoned bool `json:"cordoned,omitempty"`
	Draining bool `json:"draining,omitempty"`
	// LapsedRenewal: the last renewal of a lease that lapsed (since
	// v0.3.0). The next watch has not started, so no claimant can read the
	// holder's liveness from it: the validator reads this instead.
	LapsedRenewal time.Time `json:"lapsed_renewal,omitzero"`
}

// NodeView answers the "node" query.
type NodeView struct {
	Node string `json:"node"`
	NodeCarry
	// WatchStartedAt is when the current watch was scheduled.
	WatchStartedAt time.Time `json:"watch_started_at"`
	// Release is the run's release (0 from a worker that does not say):
	// it decides whether claims are updates (versions.go).
	Release Release `json:"release,omitempty"`
}

// NodeWatch keeps one node watch running on in.Node until terminated.
func NodeWatch(ctx workflow.Context, in NodeInput) error {
	// First thing, as in every run.
	rel := readRelease(ctx, nil)
	st := NodeCarry{Since: workflow.Now(ctx)}
	if in.Carry != nil {
		st = *in.Carry
	}
	var watchStarted time.Time
	if err := workflow.SetQueryHandler(ctx, replica.QueryNode, func() (NodeView, error) {
		return NodeView{Node: in.Node, NodeCarry: st, WatchStartedAt: watchStarted, Release: rel}, nil
	}); err != nil {
		return err
	}
	if rel < V030 {
		if err := registerLogs(ctx, in.Node); err != nil {
			return err
		}
	}
	if err := registerOrphans(ctx, in.Node); err != nil {
		return err
	}
	if err := registerPreflight(ctx, in.Node); err != nil {
		return err
	}
	claims := workflow.GetSignalChannel(ctx, replica.SignalClaim)
	log := workflow.GetLogger(ctx)
	onClaim := func(c Claim) {
		st.Claims++
		st.LastClaim = &c
		st.TakenOver = false
		log.Info("node claimed", "node", in.Node, "worker", c.Worker, "claim", c.ID, "host", c.Host, "instance", c.Instance)
	}
	// accepted wakes the loop for a claim the update accepted (v0.3.0).
	accepted := workflow.NewBufferedChannel(ctx, 1)
	// lapses carries each lapse of the lease the watch saw to followLease (v0.3.0).
	lapses := workflow.NewBufferedChannel(ctx, nodeWatchesPerRun)
	if rel >= V030 {
		if err := registerClaims(ctx, in.Node, &st, onClaim, accepted); err != nil {
			return err
		}
		workflow.Go(ctx, func(ctx workflow.Context) { followLease(ctx, in.Node, lapses) })
		if err := registerAdmin(ctx, in.Node, &st); err != nil {
			return err
		}
	}
	for watchesThisRun := 0; ; watchesThisRun++ {
		if watchesThisRun >= nodeWatchesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// A claim received now is recorded; the new run starts a fresh
			// watch anyway, which is all a claim asks for.
			var c Claim
			for claims.ReceiveAsync(&c) {
				onClaim(c)
			}
			for accepted.ReceiveAsync(nil) {
			}
			st.Runs++
			// A logs request in progress is answered first.
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			return workflow.NewContinueAsNewError(ctx, replica.NodeWorkflowName, NodeInput{Node: in.Node, Carry: &st})
		}
		claimID := ""
		if st.LastClaim != nil {
			claimID = st.LastClaim.ID
		}
		watchCtx, cancel := workflow.WithCancel(ctx)
		watchStarted = workflow.Now(ctx)
		st.Watches++
		workflow.SetCurrentDetails(ctx, "watching node "+in.Node+" (claim "+claimID+")")
		future := workflow.ExecuteActivity(nodeWatchOptions(watchCtx, rel, in.Node), replica.WatchNodeName,
			watchInput(rel, in.Node, st.LastClaim))
		var watchErr error
		claimed, watchEnded := false, false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(future, func(f workflow.Future) { watchErr, watchEnded = f.Get(ctx, nil), true })
		sel.AddReceive(claims, func(c workflow.ReceiveChannel, _ bool) {
			var cl Claim
			if receiveSignal(c, &cl) {
				onClaim(cl)
				claimed = true
			}
		})
		if rel >= V030 {
			// The update handler recorded the claim already.
			sel.AddReceive(accepted, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				claimed = true
			})
		}
		for !claimed && !watchEnded {
			sel.Select(ctx) // a corrupt claim is skipped: the watch goes on
		}
		cancel()
		if !claimed && rel >= V030 && leaseLapsed(watchErr) {
			// The server timed the watch out: no renewal for NodeLeaseLapse.
			// The next watch starts at once; the node's worker takes it
			// when it can reach the server again.
			last := workflow.Now(ctx).Add(-NodeLeaseLapse)
			st.LapsedRenewal = last
			log.Info("node lease lapsed", "node", in.Node, "last_renewal", last)
			lapses.SendAsync(NodeLease{LastRenewal: last})
			continue
		}
		if !claimed && watchErr != nil {
			// The watch retries forever by itself; an error here is permanent
			// (e.g. a worker without a reporter). Pause before the next one.
			log.Error("node watch failed; starting another", "node", in.Node, "error", watchErr)
			if err := workflow.Sleep(ctx, watchFailedPause(rel, watchErr)); err != nil {
				return err
			}
		}
	}
}

// watchInput is the input of the next watch. Since v0.3.0 it names the
// claimant's instance, so that an older claim's watch retried on a newer
// worker ends at once, and it heartbeats often enough to show the claimant
// alive (NodeClaimLiveFor) and to renew the node's lease.
func watchInput(rel Release, node string, c *Claim) activities.WatchNodeInput {
	in := activities.WatchNodeInput{Node: node, HeartbeatInterval: NodeHeartbeatInterval}
	if c != nil {
		in.Claim = c.ID
	}
	if rel >= V030 {
		in.HeartbeatInterval, in.Lease = NodeLiveHeartbeat, true
		if c != nil {
			in.Instance = c.Instance
		}
	}
	return in
}

// watchFailedPause is the pause after a watch failed for good. Since
// v0.3.0 a watch that reached a worker which no longer holds the node (it
// has yet to notice) is started again soon: the claimant's worker takes it.
func watchFailedPause(rel Release, err error) time.Duration {
	var appErr *temporal.ApplicationError
	if rel >= V030 && errors.As(err, &appErr) && appErr.Type() == replica.ErrTypeNotNodeOwner {
		return time.Second
	}
	return 10 * time.Second
}

// registerClaims takes claims as updates (since v0.3.0): a worker polls its
// node's queue only once its claim is accepted. The validator refuses a
// claim while another worker holds the node (refuseClaim); a refusal adds no
// history. A v0.2.0 worker's claim signal is still taken as before.
func registerClaims(ctx workflow.Context, node string, st *NodeCarry, onClaim func(Claim), accepted workflow.Channel) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateClaim, func(ctx workflow.Context, c Claim) (string, error) {
		onClaim(c)
		accepted.SendAsync(true) // one wake-up is enough for any number of claims
		return c.ID, nil
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, c Claim) error {
		return refuseClaim(node, st.LastClaim, st.TakenOver, st.LapsedRenewal, c, workflow.Now(ctx))
	}})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandler(ctx, replica.UpdateTakeover, func(ctx workflow.Context) (NodeView, error) {
		st.TakenOver = true
		workflow.GetLogger(ctx).Info("node released for takeover", "node", node)
		return NodeView{Node: node, NodeCarry: *st}, nil
	})
}

// refuseClaim is why c may not claim node now, or nil. The node is held
// by its current claimant while that one's watch showed it alive within
// NodeClaimLiveFor: against another node identity (two hosts with one
// node name) and against another instance of the same identity (a copied
// state dir), unless the claim replaces that instance (a restart on the
// same host) or `vigil node takeover` released the node.
func refuseClaim(node string, cur *Claim, takenOver bool, lapsedRenewal time.Time, c Claim, now time.Time) error {
	if c.NodeID == "" || c.Instance == "" {
		return temporal.NewNonRetryableApplicationError("a claim names the node identity and the worker instance", replica.ErrTypeBadSpec, nil)
	}
	if cur == nil || cur.NodeID == "" || takenOver || cur.Instance == c.Instance || c.Replaces == cur.Instance {
		return nil
	}
	seen := time.Time{}
	switch c.HolderWorker {
	case cur.Worker:
		seen = c.HolderSeen
	case "":
		// No watch running: after a lapse, the holder was last alive at its
		// last renewal, which it may still be within a partition's minute.
		seen = lapsedRenewal
	}
	if seen.IsZero() || now.Sub(seen) >= NodeClaimLiveFor {
		return nil
	}
	if cur.NodeID != c.NodeID {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"node %s is held by host %s (node identity %s, alive %s ago); stop the worker there, or if that host is gone for good run `vigil node takeover %s`",
			node, cur.Host, cur.NodeID, now.Sub(seen).Round(time.Second), node), replica.ErrTypeNodeClaimed, nil)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"node %s is held by another worker with this node identity %s on host %s (a copied --state-dir?); stop one of them, or give this one its own --state-dir and --node",
		node, c.NodeID, cur.Host), replica.ErrTypeNodeClaimed, nil)
}

// nodeWatchOptions: the watch is retried without limit; after a lost
// worker, the retry waits for a heartbeat timeout unless a worker claims the
// node first. It ends by itself after DefaultNodeWatchFor. Since v0.3.0 its
// heartbeat is the node's lease: the server times a watch out once the lease
// is NodeLeaseLapse old, and that timeout is not retried but ends the watch
// in the workflow, which is how it learns of a lapse (leaseLapsed) at no cost
// per renewal.
func nodeWatchOptions(ctx workflow.Context, rel Release, node string) workflow.Context {
	opts := workflow.ActivityOptions{
		TaskQueue:           replica.NodeTaskQueue(node),
		StartToCloseTimeout: activities.DefaultNodeWatchFor + 10*time.Minute,
		HeartbeatTimeout:    NodeHeartbeatTimeout,
		WaitForCancellation: false,
		RetryPolicy:         retryDoubling(time.Second, 10*time.Second),
		Summary:             "watch node " + node,
	}
	if rel >= V030 {
		opts.HeartbeatTimeout = NodeLeaseLapse
		opts.RetryPolicy.NonRetryableErrorTypes = []string{heartbeatTimeoutType}
	}
	return workflow.WithActivityOptions(ctx, opts)
}

// heartbeatTimeoutType names a heartbeat timeout in a retry policy.
var heartbeatTimeoutType = "TemporalTimeout:" + enumspb.TIMEOUT_TYPE_HEARTBEAT.String()

// leaseLapsed reports whether a watch ended because its heartbeat, the
// node's lease, timed out on the server.
func leaseLapsed(err error) bool {
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout) && timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_HEARTBEAT
}
