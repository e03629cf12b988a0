// Package replica is the identity of one supervised container replica: its
// ID, every string form other packages use for it (the short name, the
// operator's reference, the workflow ID, the containerd container ID), their
// parsing, and the rules names must follow so that all those forms stay
// valid. It sits at the bottom of the import graph: it imports nothing of
// Vigil, so the CLI, the parser and the worker can all use it.
package replica

import (
	"fmt"
	"regexp"
	"strconv"
)

// ID names one replica of one service of one deployment. Replicas count from 1.
type ID struct {
	Deployment string `json:"deployment"`
	Service    string `json:"service"`
	Replica    int    `json:"replica"`
}

// String is the replica's short name, "<service>-rep-<replica>".
func (id ID) String() string {
	return fmt.Sprintf("%s-rep-%d", id.Service, id.Replica)
}

// Ref is the operator-facing ID used by the CLI: "<deployment>/<service>-rep-<replica>".
func (id ID) Ref() string {
	return id.Deployment + "/" + id.String()
}

// WorkflowID is the ID of the Temporal workflow that supervises the replica:
// "vigil/<deployment>/<service>-rep-<replica>".
func (id ID) WorkflowID() string {
	return "vigil/" + id.Ref()
}

// DeploymentWorkflowID is the ID of the workflow that holds a deployment's
// desired state: "vigil/<deployment>". It cannot be taken for a replica's
// workflow ID, which has one more segment ending in "-rep-<n>".
func DeploymentWorkflowID(deployment string) string {
	return "vigil/" + deployment
}

// ContainerName is the containerd container ID of the replica:
// "<deployment>.<service>-rep-<replica>".
func (id ID) ContainerName() string {
	return id.Deployment + "." + id.String()
}

var refPattern = regexp.MustCompile(`^(?:vigil/)?([^/]+)/([^/]+)-rep-([0-9]+)$`)

// ParseRef parses "<deployment>/<service>-rep-<replica>" (or a full workflow ID).
func ParseRef(ref string) (ID, error) {
	m := refPattern.FindStringSubmatch(ref)
	if m == nil {
		return ID{}, fmt.Errorf("ID %q: want <deployment>/<service>-rep-<replica>, e.g. shop/api-rep-1", ref)
	}
	n, err := strconv.Atoi(m[3])
	if err != nil || n < 1 {
		return ID{}, fmt.Errorf("ID %q: replica must be a number from 1", ref)
	}
	return ID{Deployment: m[1], Service: m[2], Replica: n}, nil
}
