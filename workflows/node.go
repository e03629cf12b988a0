package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
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
}

// NodeCarry is what a continued node workflow keeps.
type NodeCarry struct {
	Claims    int       `json:"claims"`
	LastClaim *Claim    `json:"last_claim,omitempty"`
	Watches   int       `json:"watches"`
	Since     time.Time `json:"since"`
	Runs      int       `json:"runs"`
}

// NodeView answers the "node" query.
type NodeView struct {
	Node string `json:"node"`
	NodeCarry
	// WatchStartedAt is when the current watch was scheduled.
	WatchStartedAt time.Time `json:"watch_started_at"`
}

// NodeWatch keeps one node watch running on in.Node until terminated.
func NodeWatch(ctx workflow.Context, in NodeInput) error {
	// First thing, as in every run. No command of this workflow differs by
	// release yet; the helper whose commands come to differ branches on it.
	_ = readRelease(ctx, nil)
	st := NodeCarry{Since: workflow.Now(ctx)}
	if in.Carry != nil {
		st = *in.Carry
	}
	var watchStarted time.Time
	if err := workflow.SetQueryHandler(ctx, replica.QueryNode, func() (NodeView, error) {
		return NodeView{Node: in.Node, NodeCarry: st, WatchStartedAt: watchStarted}, nil
	}); err != nil {
		return err
	}
	if err := registerLogs(ctx, in.Node); err != nil {
		return err
	}
	claims := workflow.GetSignalChannel(ctx, replica.SignalClaim)
	log := workflow.GetLogger(ctx)
	onClaim := func(c Claim) {
		st.Claims++
		st.LastClaim = &c
		log.Info("node claimed", "node", in.Node, "worker", c.Worker, "claim", c.ID)
	}
	for watchesThisRun := 0; ; watchesThisRun++ {
		if watchesThisRun >= nodeWatchesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// A claim received now is recorded; the new run starts a fresh
			// watch anyway, which is all a claim asks for.
			var c Claim
			for claims.ReceiveAsync(&c) {
				onClaim(c)
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
		future := workflow.ExecuteActivity(nodeWatchOptions(watchCtx, in.Node), replica.WatchNodeName,
			activities.WatchNodeInput{Node: in.Node, Claim: claimID, HeartbeatInterval: NodeHeartbeatInterval})
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
		for !claimed && !watchEnded {
			sel.Select(ctx) // a corrupt claim is skipped: the watch goes on
		}
		cancel()
		if !claimed && watchErr != nil {
			// The watch retries forever by itself; an error here is permanent
			// (e.g. a worker without a reporter). Pause before the next one.
			log.Error("node watch failed; starting another", "node", in.Node, "error", watchErr)
			if err := workflow.Sleep(ctx, 10*time.Second); err != nil {
				return err
			}
		}
	}
}

// nodeWatchOptions: the watch is retried without limit; after a lost
// worker, the retry waits for a heartbeat timeout unless a worker claims the
// node first. It ends by itself after DefaultNodeWatchFor.
func nodeWatchOptions(ctx workflow.Context, node string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           replica.NodeTaskQueue(node),
		StartToCloseTimeout: activities.DefaultNodeWatchFor + 10*time.Minute,
		HeartbeatTimeout:    NodeHeartbeatTimeout,
		WaitForCancellation: false,
		RetryPolicy:         retryDoubling(time.Second, 10*time.Second),
		Summary:             "watch node " + node,
	})
}
