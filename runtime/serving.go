package runtime

import (
	"errors"
	"time"
)

// NetworkMode says how a container is connected to the network.
type NetworkMode string

const (
	// NetworkBridge gives the container its own network namespace on the
	// node's bridge, with an address from the node's subnet and the ports it
	// publishes (the deployment file's default).
	NetworkBridge NetworkMode = "bridge"
	// NetworkHost shares the node's network namespace.
	NetworkHost NetworkMode = "host"
	// NetworkNone gives the container a network namespace with loopback only.
	// An empty mode means the same (containers made before networking existed).
	NetworkNone NetworkMode = "none"
)

// Port protocols.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// PortMapping publishes a container port on the node: traffic to
// HostIP:Host (every address of the node when HostIP is empty) reaches the
// container's port.
type PortMapping struct {
	Container int    `json:"container"`
	Host      int    `json:"host"`
	Protocol  string `json:"protocol"`
	HostIP    string `json:"host_ip,omitempty"`
}

// Volume is a bind mount of a node path (Source) or a named volume kept by
// the node (Name), mounted at Target.
type Volume struct {
	Source   string `json:"source,omitempty"`
	Name     string `json:"name,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readonly,omitempty"`
}

// Serving is what a container needs to serve: its network, published
// ports, volumes, an init and its stop signal. Its zero value is a
// container with no network but loopback and no mounts, and every field is
// omitted from JSON when zero, so a spec that sets none of them keeps its
// JSON and digest.
type Serving struct {
	Network NetworkMode   `json:"network,omitempty"`
	Ports   []PortMapping `json:"ports,omitempty"`
	Volumes []Volume      `json:"volumes,omitempty"`
	// Init runs a minimal init (tini) as PID 1: it reaps zombies and
	// forwards signals to the command.
	Init bool `json:"init,omitempty"`
	// StopSignal is sent first on stop (default: the image's, else SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// Fence, when set, runs the command under the node's fence
	// (vigil-fence), which ends the container once the node's lease is
	// this old: a movable replica's, so that it never runs on a node that
	// lost the server while it starts elsewhere (see package lease).
	Fence time.Duration `json:"fence,omitempty"`
}

// NetworkStatus is where a running container can be reached.
type NetworkStatus struct {
	IP    string        `json:"ip,omitempty"`
	Ports []PortMapping `json:"ports,omitempty"`
}

// ErrInvalidSpec marks a spec the node cannot run as written (e.g. a bind
// mount source missing on the node, or a host port another container on the
// node already publishes). Retrying the same call cannot help.
var ErrInvalidSpec = errors.New("invalid container spec")

// ReplicaPorts are the ports replica n (from 1) publishes: a service's host
// port is replica 1's, and replica n's is that plus n - 1, so the replicas
// of one service never share a host port. The supervisor applies it when it
// starts a replica; files and deployments keep the service's ports.
func ReplicaPorts(ports []PortMapping, n int) []PortMapping {
	if len(ports) == 0 {
		return nil
	}
	out := make([]PortMapping, len(ports))
	for i, p := range ports {
		p.Host += n - 1
		out[i] = p
	}
	return out
}
