package replica

// Every name Vigil gives a thing on the Temporal server: workflow IDs, task
// queues, workflow and activity types, signals, queries, updates, memo keys,
// search attributes and error types. Clients (the CLI) and workers take
// them from here. The values are on the wire and in recorded histories:
// they never change.

// NodeWorkflowID is the ID of node's workflow: "vigil-node/<node>".
func NodeWorkflowID(node string) string { return "vigil-node/" + node }

// DefaultTaskQueue is the workflow task queue; workflows can run on any worker.
const DefaultTaskQueue = "vigil"

// NodeTaskQueue is the activity task queue of the worker on node.
// containerd is host-local, so every container activity runs there.
func NodeTaskQueue(node string) string { return "vigil-node-" + node }

// Workflow types.
const (
	SupervisorWorkflowName = "Supervise"
	DeploymentWorkflowName = "Deployment"
	NodeWorkflowName       = "NodeWatch"
	FetchLogsWorkflowName  = "FetchLogs"
)

// Container activities, on the node's task queue.
const (
	EnsureRunningName = "EnsureRunning"
	WaitForExitName   = "WaitForExit"
	StopName          = "Stop"
	IsolateName       = "Isolate"
	LogsName          = "Logs"
	WatchNodeName     = "WatchNode"
	// OrphansName lists (and removes) the node's containers no replica owns.
	OrphansName = "Orphans"
	// PreflightName checks that the node can make replicas' containers
	// before a rollout stops anything for them.
	PreflightName = "Preflight"
)

// Control activities: the deployment workflow's hands on other workflows.
// They run on the workflow task queue (any worker), with a Temporal client.
const (
	ObserveReplicasName = "ObserveReplicas"
	// ObserveReplicaPageName (since v0.3.0) reads one page of them, configs by digest.
	ObserveReplicaPageName = "ObserveReplicaPage"
	StartReplicaName       = "StartReplica"
	// StartReplicasName (since v0.3.0) starts a batch of them in one activity.
	StartReplicasName      = "StartReplicas"
	ReconfigureReplicaName = "ReconfigureReplica"
	UnsuperviseReplicaName = "UnsuperviseReplica"
	ShutdownReplicaName    = "ShutdownReplica"
	// Since v0.3.0, a node's lease: its workflow waits for the lease to
	// lapse or come back (AwaitNodeLease) and tells the node's replicas
	// (NotifyNodeReplicas); a movable replica of a lost node chooses where
	// to go (PlanMove).
	AwaitNodeLeaseName     = "AwaitNodeLease"
	NotifyNodeReplicasName = "NotifyNodeReplicas"
	PlanMoveName           = "PlanMove"
	// DeleteReplicaName ends a replica's supervision for vigil delete.
	DeleteReplicaName = "DeleteReplica"
	// DrainNodeName moves a drained node's movable replicas one at a time.
	DrainNodeName = "DrainNode"
)

// The replica workflow's queries, updates and signals.
const (
	QueryState  = "state"
	QueryConfig = "config"

	UpdateRelease     = "release"
	UpdateRestart     = "restart"
	UpdateUnsupervise = "unsupervise"
	// UpdateRollover moves supervision to a new run now (continue-as-new),
	// carrying everything; the container is not touched.
	UpdateRollover = "rollover"
	// UpdateReconfigure brings a replica to a new generation of its
	// deployment: a new policy in place, or a new container.
	UpdateReconfigure = "reconfigure"
	// UpdateShutdown stops a replica because its service is shut down.
	UpdateShutdown = "shutdown"
	// UpdateMove moves a movable replica off a drained node (since v0.3.0).
	UpdateMove = "move"

	// SignalHealth carries a health report from the node's probes.
	SignalHealth = "health"
	// SignalExit carries a container's exit from the node watch.
	SignalExit = "exit"
	// SignalNodeLease (since v0.3.0) tells a replica that its node's lease
	// lapsed, or came back: from the node's workflow.
	SignalNodeLease = "node-lease"
)

// The deployment workflow's update, queries and signal.
const (
	UpdateApply   = "apply"
	QueryRollout  = "rollout"
	QueryReplicas = "replicas"
	// QueryReplicasCompact (since v0.3.0) answers the same records as
	// QueryReplicas, each config once by digest (workflows.CompactReplicas):
	// 10,000 replicas' full records exceed what a query may answer.
	QueryReplicasCompact = "replicas-compact"
	// QueryDesired answers the deployment file being rolled out (null
	// before the first apply).
	QueryDesired = "desired"
	// UpdateDelete ends every replica of the deployment, then its workflow.
	UpdateDelete          = "delete"
	SignalServiceShutdown = "service-shutdown"
)

// The node workflow's signal, query and update.
const (
	// SignalClaim is sent (with start) by a worker when it starts on a node.
	SignalClaim = "claim"
	// QueryNode answers the node's view.
	QueryNode = "node"
	// UpdateLogs returns a replica's captured output: the Logs activity
	// runs on the node, and `vigil logs` makes no workflow per call
	// (FetchLogs serves the clients that still start one).
	UpdateLogs = "logs"
	// UpdateClaim is a worker's claim of its node (since v0.3.0; before,
	// SignalClaim); its validator refuses a claim while another worker
	// holds the node.
	UpdateClaim = "claim"
	// UpdateTakeover lets the next claim in, whoever makes it.
	UpdateTakeover = "takeover"
	// UpdateOrphans lists (and, asked to, removes) the containers on the
	// node that no replica owns: the Orphans activity runs on the node.
	UpdateOrphans = "orphans"
	// UpdateCordon, UpdateUncordon and UpdateDrain (since v0.3.0): no
	// replica moves to a cordoned node; a drained one is cordoned and its
	// movable replicas move off it.
	UpdateCordon   = "cordon"
	UpdateUncordon = "uncordon"
	UpdateDrain    = "drain"
	// UpdatePreflight checks that the node can make replicas' containers
	// (`vigil apply --dry-run`): the Preflight activity runs on the node.
	UpdatePreflight = "preflight"
)

// Memo keys, shown in the Web UI: the last supervision event, and the error of
// a start that keeps failing (removed once a start works).
const (
	MemoLastEvent  = "vigil.last_event"
	MemoStartError = "vigil.start_error"
	// MemoStopPending (since v0.3.0) is the stop (activities.StopInput)
	// that unsupervise --stop could not do because no worker on the node
	// took it: the replica's closed run carries it, so that the node, once
	// a worker runs there, can tell this orphaned container was meant to
	// be stopped and removed.
	MemoStopPending = "vigil.stop_pending"
	// MemoGeneration (since v0.3.0) is the generation a deleted
	// deployment's workflow had reached, kept on its closed run: the next
	// apply of the name starts above it.
	MemoGeneration = "vigil.generation"
)

// Names of the Keyword search attributes every replica workflow keeps up to
// date, so that the CLI and the Web UI can find replicas by them.
const (
	SearchAttrState      = "VigilState"
	SearchAttrService    = "VigilService"
	SearchAttrDeployment = "VigilDeployment"
	// SearchAttrNode is the replica's node (since v0.3.0): the node's
	// reconciliation lists what should run there by it.
	SearchAttrNode = "VigilNode"
)

// SearchAttributeNames are the names a worker registers when they are missing.
var SearchAttributeNames = []string{SearchAttrState, SearchAttrService, SearchAttrDeployment, SearchAttrNode}

// SearchStateContinuedAsNew is the VigilState of a run that continued as
// new: not a replica's state, so that counting a state counts each replica
// once.
const SearchStateContinuedAsNew = "ContinuedAsNew"

// Error types of application errors.
const (
	// ErrTypeBusy marks an update refused because another request is in
	// progress: retrying later can work.
	ErrTypeBusy = "Busy"
	// ErrTypePinned marks a move refused because the replica is pinned to
	// its node (node:, not placement).
	ErrTypePinned = "Pinned"
	// ErrTypeImageNotFound and ErrTypeBadSpec are permanent: retrying the
	// same call cannot help.
	ErrTypeImageNotFound = "ImageNotFound"
	ErrTypeBadSpec       = "BadSpec"
	// ErrTypePortInUse marks a start or preflight refused because a host
	// port the container publishes is taken (runtime.PortInUse): by another
	// container or a host process. Retrying works once the port is free.
	ErrTypePortInUse = "PortInUse"
	// ErrTypeImagePullUnauthorized marks a pull the registry refused the
	// node's credentials for: permanent until the node's registry config
	// is fixed. ErrTypeImagePullStalled marks a pull that received nothing
	// for the node's stall timeout; it is retried.
	ErrTypeImagePullUnauthorized = "ImagePullUnauthorized"
	ErrTypeImagePullStalled      = "ImagePullStalled"
	// ErrTypeContainerNotFound marks a call about a container that does not
	// exist (e.g. logs of an unknown replica); retrying cannot help.
	ErrTypeContainerNotFound = "ContainerNotFound"
	// ErrTypeWorkerStopping marks a watch handed over because its worker is
	// shutting down; it is retried on the next worker.
	ErrTypeWorkerStopping = "WorkerStopping"
	// ErrTypeNodeClaimed marks a claim refused because another worker
	// holds the node.
	ErrTypeNodeClaimed = "NodeClaimed"
	// ErrTypeNotNodeOwner marks a node activity that reached a worker which
	// is not (or no longer) the node's accepted claimant.
	ErrTypeNotNodeOwner = "NotNodeOwner"
	// ErrTypeLeaseStale marks a start of a movable replica put off because
	// the node's lease is too old for its fence (retried: it is renewed
	// every 5 s while the node reaches the server).
	ErrTypeLeaseStale = "LeaseStale"
)
