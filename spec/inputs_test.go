package spec

// Input and Inputs flatten a parsed deployment into one record per replica,
// so that the tests can check every replica's fields at once. Vigil itself
// turns a deployment into the workflows' desired state in the CLI (starter),
// which keeps this parser free of the workflow package and its SDK.

import (
	"time"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Input is what the file decides for one replica on one node.
type Input struct {
	ID             replica.ID            `json:"id"`
	Spec           runtime.ContainerSpec `json:"spec"`
	Policy         policy.Policy         `json:"policy"`
	Node           string                `json:"node"`
	IsolateWebhook string                `json:"isolate_webhook,omitempty"`
	StopGrace      time.Duration         `json:"stop_grace,omitempty"`
}

// Inputs turns the deployment into one supervision input per replica, in file
// order, placed on the service's node, else on defaultNode.
func (d *Deployment) Inputs(defaultNode string) []Input {
	var out []Input
	for _, s := range d.Services {
		node := defaultNode
		if s.Node != "" {
			node = s.Node
		}
		for r := 1; r <= s.Replicas; r++ {
			out = append(out, Input{
				ID:             replica.ID{Deployment: d.Name, Service: s.Name, Replica: r},
				Spec:           cloneSpec(s.Spec),
				Policy:         s.Policy,
				Node:           node,
				IsolateWebhook: s.IsolateWebhook,
				StopGrace:      s.StopGrace,
			})
		}
	}
	return out
}
