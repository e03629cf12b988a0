package workflows

import (
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Since v0.3.0 the deployment carries and observes its replicas compactly:
// each replica's config is named by its digest, and each distinct config is
// sent once. 10,000 replicas take about 700 KB, far below Temporal's 2 MiB
// payload limit, whatever their configs are.

// CompactReplica is a replica's record with its config named by digest.
// Every field of ReplicaRecord but the config is here (add new ones here too).
type CompactReplica struct {
	Service string `json:"s"`
	Replica int    `json:"r"`
	// Digest is ConfigDigest of its config, the key in CompactReplicas.Configs.
	Digest string `json:"d"`
	// Node is the config's node (the digest leaves out a movable replica's).
	Node       string               `json:"n,omitempty"`
	Generation int                  `json:"g,omitempty"`
	State      State                `json:"st,omitempty"`
	Health     runtime.HealthStatus `json:"h,omitempty"`
	Closed     bool                 `json:"c,omitempty"`
}

// CompactReplicas are some replicas of one deployment and their configs.
type CompactReplicas struct {
	Replicas []CompactReplica         `json:"replicas"`
	Configs  map[string]ReplicaConfig `json:"configs"`
}

// Compact writes records compactly.
func Compact(records []ReplicaRecord) CompactReplicas {
	out := CompactReplicas{Replicas: make([]CompactReplica, 0, len(records)), Configs: map[string]ReplicaConfig{}}
	for _, r := range records {
		d := r.Digest
		if d == "" {
			d = ConfigDigest(r.Config)
		}
		if _, ok := out.Configs[d]; !ok {
			out.Configs[d] = r.Config
		}
		out.Replicas = append(out.Replicas, CompactReplica{Service: r.ID.Service, Replica: r.ID.Replica, Digest: d, Node: r.Config.Node,
			Generation: r.Generation, State: r.State, Health: r.Health, Closed: r.Closed})
	}
	return out
}

// Records reads compact replicas of deployment back as records.
func (c CompactReplicas) Records(deployment string) []ReplicaRecord {
	out := make([]ReplicaRecord, 0, len(c.Replicas))
	for _, r := range c.Replicas {
		cfg := c.Configs[r.Digest]
		cfg.Node = r.Node
		out = append(out, ReplicaRecord{ID: replica.ID{Deployment: deployment, Service: r.Service, Replica: r.Replica},
			Config: cfg, Digest: r.Digest, Generation: r.Generation, State: r.State, Health: r.Health, Closed: r.Closed})
	}
	return out
}
