package workflows

import (
	"slices"
	"time"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// DeploymentInput starts (or continues) a deployment's workflow.
type DeploymentInput struct {
	Name string `json:"name"`
	// ContinueAsNewAfter is the number of steps one run takes before it
	// continues as new (default deploymentContinueAfter).
	ContinueAsNewAfter int              `json:"continue_as_new_after,omitempty"`
	Carry              *DeploymentCarry `json:"carry,omitempty"`
	// AfterGeneration is the generation a deleted deployment of the same
	// name had reached (its closed run's memo replica.MemoGeneration): a
	// new run counts on from it.
	AfterGeneration int `json:"after_generation,omitempty"`
}

// DeploymentCarry is everything a continued run of the deployment workflow needs.
type DeploymentCarry struct {
	Generation int                      `json:"generation"`
	Desired    *DeploymentSpec          `json:"desired,omitempty"`
	Replicas   map[string]ReplicaRecord `json:"replicas"`
	// Compact holds the replicas instead of Replicas since v0.3.0: a
	// deployment of 10,000 replicas carries far less than 2 MiB.
	Compact *CompactReplicas `json:"compact,omitempty"`
	// Paused is why the rollout stopped ("" while it runs or is complete).
	Paused string `json:"paused,omitempty"`
	Runs   int    `json:"runs"`
}

// ApplyRequest is the "apply" update's argument: the whole deployment file.
type ApplyRequest struct {
	Spec DeploymentSpec `json:"spec"`
}

// ApplyResult is what an apply decided.
type ApplyResult struct {
	Generation int        `json:"generation"`
	Plan       []PlanItem `json:"plan"`
}

// Rollout defaults, per service (`update: { max_unavailable: 1, min_ready: 5s }`).
const (
	DefaultMaxUnavailable = 1
	DefaultMinReady       = 5 * time.Second
)

// UpdateSettings say how a service's changed containers are replaced.
type UpdateSettings struct {
	// MaxUnavailable is how many replicas of the service may be down for a
	// replacement at once.
	MaxUnavailable int `json:"max_unavailable"`
	// MinReady is how long a new container must run without exiting before
	// the rollout moves on.
	MinReady time.Duration `json:"min_ready"`
}

// WithDefaults fills in the defaults.
func (u UpdateSettings) WithDefaults() UpdateSettings {
	if u.MaxUnavailable <= 0 {
		u.MaxUnavailable = DefaultMaxUnavailable
	}
	if u.MinReady <= 0 {
		u.MinReady = DefaultMinReady
	}
	return u
}

// ReplicaConfig is everything a replica is supervised with that a deployment
// file decides.
type ReplicaConfig struct {
	Spec   runtime.ContainerSpec `json:"spec"`
	Policy policy.Policy         `json:"policy"`
	// IsolateWebhook, if set, is called when the container is isolated.
	IsolateWebhook string `json:"isolate_webhook,omitempty"`
	// StopGrace is the time between SIGTERM and SIGKILL (default 10s).
	StopGrace time.Duration `json:"stop_grace,omitempty"`
	// Node is the host whose containerd runs the container; its worker polls
	// NodeTaskQueue(Node).
	Node string `json:"node"`
	// Placement lists the nodes the replica may run on (placement.nodes):
	// Node is then one of them, chosen by the plan, and the replica moves
	// to another when Node is lost or drained. Empty: pinned to Node.
	Placement []string `json:"placement,omitempty"`
	// LostAfter is the age of Node's lease at which the node counts as lost
	// (reschedule.lost_after; 0: replica.DefaultLostAfter).
	LostAfter time.Duration `json:"lost_after,omitempty"`
}

// NodeLostAfter is the lease age at which the replica's node counts as lost.
func (c ReplicaConfig) NodeLostAfter() time.Duration {
	if c.LostAfter > 0 {
		return c.LostAfter
	}
	return replica.DefaultLostAfter
}

// Nodes are the nodes the replica may run on.
func (c ReplicaConfig) Nodes() []string {
	if c.Movable() {
		return c.Placement
	}
	return []string{c.Node}
}

// Movable reports whether the replica may move to another node.
func (c ReplicaConfig) Movable() bool { return len(c.Placement) > 0 }

// Eligible reports whether the replica may run on node.
func (c ReplicaConfig) Eligible(node string) bool {
	return slices.Contains(c.Placement, node) || (!c.Movable() && node == c.Node)
}

// withDefaults fills in the defaults, the one place they are applied: the
// supervisor runs with them, and a config read back from a running replica
// then compares equal to the file it came from.
func (c ReplicaConfig) withDefaults() ReplicaConfig {
	c.Policy = c.Policy.WithDefaults()
	if c.StopGrace <= 0 {
		c.StopGrace = runtime.DefaultStopGrace
	}
	return c
}

// ServiceSpec is one service of a deployment as a file wants it.
type ServiceSpec struct {
	Name     string         `json:"name"`
	Replicas int            `json:"replicas"`
	Config   ReplicaConfig  `json:"config"`
	Update   UpdateSettings `json:"update"`
}

// DeploymentSpec is a deployment file as desired state.
type DeploymentSpec struct {
	Name     string        `json:"name"`
	Services []ServiceSpec `json:"services"`
}

// ReplicaCount is the number of replicas the spec wants.
func (d DeploymentSpec) ReplicaCount() int {
	n := 0
	for _, s := range d.Services {
		n += s.Replicas
	}
	return n
}

func (d DeploymentSpec) service(name string) (ServiceSpec, bool) {
	for _, s := range d.Services {
		if s.Name == name {
			return s, true
		}
	}
	return ServiceSpec{}, false
}

// ReplicaRecord is what is known of one supervised replica.
type ReplicaRecord struct {
	ID     replica.ID    `json:"id"`
	Config ReplicaConfig `json:"config"`
	// Generation is the deployment generation its container was made from.
	Generation int   `json:"generation"`
	State      State `json:"state"`
	// Health is what its probes last said (empty without probes).
	Health runtime.HealthStatus `json:"health,omitempty"`
	// Closed: its supervision has ended (the container completed); the
	// container may still exist.
	Closed bool `json:"closed,omitempty"`
	// Digest is ConfigDigest(Config), where known ("" from older workers;
	// whoever changes Config empties it).
	Digest string `json:"digest,omitempty"`
}

// ObserveInput asks for what runs of a deployment: the replicas known by ID
// (read directly, so they are never missed) and any others supervised under
// its name (found through visibility: replicas supervised before the
// deployment workflow existed).
type ObserveInput struct {
	Deployment string   `json:"deployment"`
	Known      []string `json:"known"`
}

// ObservePageInput (since v0.3.0) asks for one page of what runs of a
// deployment: the replicas Refs names or, with List, the refs of every
// replica supervised under its name (found through visibility).
type ObservePageInput struct {
	Deployment string   `json:"deployment"`
	Refs       []string `json:"refs,omitempty"`
	List       bool     `json:"list,omitempty"`
}

// ObservePage is one page of what runs: the replicas asked for that are
// supervised (or completed), or the refs listed.
type ObservePage struct {
	Replicas CompactReplicas `json:"replicas"`
	Listed   []string        `json:"listed,omitempty"`
}

// StartReplicasInput starts a batch of replicas' supervisors (since v0.3.0).
type StartReplicasInput struct {
	Replicas []SupervisionInput `json:"replicas"`
}

// ReconfigureReplicaInput sends one reconfigure update.
type ReconfigureReplicaInput struct {
	ID       replica.ID         `json:"id"`
	UpdateID string             `json:"update_id"`
	Request  ReconfigureRequest `json:"request"`
}

// ReconfigureReplicaResult is the replica's answer, or that it is gone.
type ReconfigureReplicaResult struct {
	ReconfigureResult
	// Missing: the replica is not supervised (any more).
	Missing bool `json:"missing,omitempty"`
}

// ReplicaRequest names a replica for unsupervise and shutdown.
type ReplicaRequest struct {
	ID    replica.ID `json:"id"`
	Cause string     `json:"cause,omitempty"`
	// By is the replica whose exit shut the service down (shutdown; since
	// v0.3.0).
	By string `json:"by,omitempty"`
}

// controlHeartbeat: a control activity waits for another workflow (a
// replacement lasts its stop grace plus min_ready), heartbeating, so a lost
// worker's attempt moves to another worker soon.
const controlHeartbeat = 10 * time.Second
