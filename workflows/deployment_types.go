package workflows

import (
	"time"

	"github.com/vigil-run/vigil/runtime"
)

// Control activities: the deployment workflow's hands on other workflows.
// They run on the workflow task queue (any worker), with a Temporal client.
const (
	ObserveReplicasName    = "ObserveReplicas"
	StartReplicaName       = "StartReplica"
	ReconfigureReplicaName = "ReconfigureReplica"
	UnsuperviseReplicaName = "UnsuperviseReplica"
	ShutdownReplicaName    = "ShutdownReplica"
)

// DeploymentInput starts (or continues) a deployment's workflow.
type DeploymentInput struct {
	Name string `json:"name"`
	// ContinueAsNewAfter is the number of steps one run takes before it
	// continues as new (default deploymentContinueAfter).
	ContinueAsNewAfter int              `json:"continue_as_new_after,omitempty"`
	Carry              *DeploymentCarry `json:"carry,omitempty"`
}

// DeploymentCarry is everything a continued run of the deployment workflow needs.
type DeploymentCarry struct {
	Generation int                      `json:"generation"`
	Desired    *DeploymentSpec          `json:"desired,omitempty"`
	Replicas   map[string]ReplicaRecord `json:"replicas"`
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

// ObserveInput asks for what runs of a deployment: the replicas known by ID
// (read directly, so they are never missed) and any others supervised under
// its name (found through visibility: replicas supervised before the
// deployment workflow existed).
type ObserveInput struct {
	Deployment string   `json:"deployment"`
	Known      []string `json:"known"`
}

// ReconfigureReplicaInput sends one reconfigure update.
type ReconfigureReplicaInput struct {
	ID       runtime.ContainerID `json:"id"`
	UpdateID string              `json:"update_id"`
	Request  ReconfigureRequest  `json:"request"`
}

// ReconfigureReplicaResult is the replica's answer, or that it is gone.
type ReconfigureReplicaResult struct {
	ReconfigureResult
	// Missing: the replica is not supervised (any more).
	Missing bool `json:"missing,omitempty"`
}

// ReplicaRequest names a replica for unsupervise and shutdown.
type ReplicaRequest struct {
	ID    runtime.ContainerID `json:"id"`
	Cause string              `json:"cause,omitempty"`
}

// controlHeartbeat: a control activity waits for another workflow (a
// replacement lasts its stop grace plus min_ready), heartbeating, so a lost
// worker's attempt moves to another worker soon.
const controlHeartbeat = 10 * time.Second
