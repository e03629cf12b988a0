package replica

import "testing"

// The names are on the wire and in recorded histories: a changed value
// strands every run that uses the old one.
func TestTemporalNamesNeverChange(t *testing.T) {
	for got, want := range map[string]string{
		NodeWorkflowID("n1"): "vigil-node/n1", NodeTaskQueue("n1"): "vigil-node-n1", DefaultTaskQueue: "vigil",
		SupervisorWorkflowName: "Supervise", DeploymentWorkflowName: "Deployment", NodeWorkflowName: "NodeWatch", FetchLogsWorkflowName: "FetchLogs",
		EnsureRunningName: "EnsureRunning", WaitForExitName: "WaitForExit", StopName: "Stop", IsolateName: "Isolate", LogsName: "Logs", WatchNodeName: "WatchNode", OrphansName: "Orphans", PreflightName: "Preflight",
		ObserveReplicasName: "ObserveReplicas", StartReplicaName: "StartReplica", StartReplicasName: "StartReplicas", ReconfigureReplicaName: "ReconfigureReplica",
		UnsuperviseReplicaName: "UnsuperviseReplica", ShutdownReplicaName: "ShutdownReplica",
		QueryState: "state", QueryConfig: "config", UpdateRelease: "release", UpdateRestart: "restart", UpdateUnsupervise: "unsupervise",
		UpdateRollover: "rollover", UpdateReconfigure: "reconfigure", UpdateShutdown: "shutdown", SignalHealth: "health", SignalExit: "exit",
		UpdateApply: "apply", QueryRollout: "rollout", QueryReplicas: "replicas", QueryReplicasCompact: "replicas-compact", QueryDesired: "desired", UpdateDelete: "delete", DeleteReplicaName: "DeleteReplica", MemoGeneration: "vigil.generation", SignalServiceShutdown: "service-shutdown",
		SignalClaim: "claim", QueryNode: "node", UpdateLogs: "logs", UpdateOrphans: "orphans", UpdatePreflight: "preflight",
		MemoLastEvent: "vigil.last_event", MemoStartError: "vigil.start_error",
		SearchAttrState: "VigilState", SearchAttrService: "VigilService", SearchAttrDeployment: "VigilDeployment", SearchAttrNode: "VigilNode", SearchStateContinuedAsNew: "ContinuedAsNew",
		ErrTypeBusy: "Busy", ErrTypeImageNotFound: "ImageNotFound", ErrTypeBadSpec: "BadSpec", ErrTypeContainerNotFound: "ContainerNotFound", ErrTypeWorkerStopping: "WorkerStopping", ErrTypePortInUse: "PortInUse",
	} {
		if got != want {
			t.Errorf("name %q, want %q", got, want)
		}
	}
}
