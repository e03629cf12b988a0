// Package spec reads deployment files: the YAML format of the original
// supervisor (the in-memory Rust supervisor Vigil ports; see README.md),
// the subset Vigil acts on, strictly validated.
//
// Parsing walks yaml.v3 nodes by hand rather than decoding into structs so
// that every error can name the field's full path and line, and so that
// unknown fields are rejected instead of silently ignored.
package spec

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/runtime"
)

// Version is the only deployment file version understood.
const Version = "v1"

// RTypeService is the only resource type supervised: a long-running container.
const RTypeService = "service"

// ScaleFixed is the only scale mode: a fixed number of replicas.
const ScaleFixed = "fixed"

// Limits that keep a typo from starting thousands of workflows or a
// malicious file from exhausting memory.
const (
	MaxFileSize    = 1 << 20
	MaxReplicas    = 1000
	MaxServices    = 1000
	MaxEnvVars     = 1000
	MaxArgs        = 1000
	MaxStringBytes = 64 << 10
	// MaxMinReady bounds update.min_ready: a rollout waits that long per
	// replaced replica.
	MaxMinReady = time.Hour
)

// Deployment is a parsed, validated deployment file.
type Deployment struct {
	Version string
	Name    string
	// Services in the order the file lists them.
	Services []Service
}

// Service is one service of a deployment.
type Service struct {
	Name     string
	RType    string
	Spec     runtime.ContainerSpec
	Replicas int
	// Policy has the defaults filled in and is valid.
	Policy         policy.Policy
	IsolateWebhook string
	StopGrace      time.Duration
	// Node places every replica of the service on that node; empty means
	// the node `vigil supervise` is given.
	Node string
	// Placement lists the nodes the service's replicas are spread over
	// (placement.nodes); a replica of a lost or drained node moves to
	// another. Empty when the service is pinned (Node).
	Placement []string
	// LostAfter is reschedule.lost_after: the age of a node's lease at
	// which the node counts as lost (0: replica.DefaultLostAfter).
	LostAfter time.Duration
	// Update says how changed containers are rolled out; zero fields take
	// the defaults (workflows.UpdateSettings).
	Update Update
	// claims are the host ports the service publishes, for the file-wide check.
	claims []publishedPort
}

// Nodes are the nodes the service may run on: its placement, else its node
// (empty: the node `vigil supervise` is given).
func (s Service) Nodes() []string {
	if len(s.Placement) > 0 {
		return s.Placement
	}
	return []string{s.Node}
}

// ParseFile reads and parses the deployment file at path. Errors name the
// file, the line and the field.
func ParseFile(path string) (*Deployment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FieldError{File: path, Path: "file", Msg: fmt.Sprintf("cannot read: %v; pass an existing deployment file with -f", errtext.WithoutPath(err))}
	}
	defer f.Close()
	return ParseReader(path, f)
}

// ParseReader reads and parses a deployment file from r (e.g. stdin); name
// stands for the file in errors.
func ParseReader(name string, r io.Reader) (*Deployment, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, &FieldError{File: name, Path: "file", Msg: fmt.Sprintf("cannot read: %v; pass a readable deployment file with -f", errtext.WithoutPath(err))}
	}
	d, err := Parse(data)
	if fe, ok := err.(*FieldError); ok {
		fe.File = name
	}
	return d, err
}

// Parse parses and validates a deployment file's contents. The error, if
// any, is a *FieldError naming one field.
func Parse(data []byte) (*Deployment, error) {
	return parse(data)
}

// Update is a service's rollout settings: update: { max_unavailable, min_ready }.
type Update struct {
	MaxUnavailable int
	MinReady       time.Duration
}

// CloneSpec copies the slices and maps of a container spec, so specs taken
// from one parsed file never share memory.
func CloneSpec(s runtime.ContainerSpec) runtime.ContainerSpec { return cloneSpec(s) }

// cloneSpec copies the slices and map so inputs never share memory.
func cloneSpec(s runtime.ContainerSpec) runtime.ContainerSpec {
	c := s
	c.Entrypoint = append([]string(nil), s.Entrypoint...)
	c.Args = append([]string(nil), s.Args...)
	c.Ports = slices.Clone(s.Ports)
	c.Volumes = slices.Clone(s.Volumes)
	if s.Env != nil {
		c.Env = make(map[string]string, len(s.Env))
		for k, v := range s.Env {
			c.Env[k] = v
		}
	}
	if s.Resources != nil {
		r := *s.Resources
		c.Resources = &r
	}
	if s.Security != nil {
		sec := *s.Security
		sec.Tmpfs = slices.Clone(s.Security.Tmpfs)
		sec.CapAdd = slices.Clone(s.Security.CapAdd)
		sec.CapDrop = slices.Clone(s.Security.CapDrop)
		if p := s.Security.NoNewPrivileges; p != nil {
			v := *p
			sec.NoNewPrivileges = &v
		}
		c.Security = &sec
	}
	if s.Health != nil {
		h := runtime.Health{Liveness: cloneProbe(s.Health.Liveness), Startup: cloneProbe(s.Health.Startup), StopGrace: s.Health.StopGrace}
		c.Health = &h
	}
	return c
}

// ReplicaCount is the number of supervised replicas in the deployment.
func (d *Deployment) ReplicaCount() int {
	n := 0
	for _, s := range d.Services {
		n += s.Replicas
	}
	return n
}

func cloneProbe(p *runtime.Probe) *runtime.Probe {
	if p == nil {
		return nil
	}
	c := *p
	c.Exec = append([]string(nil), p.Exec...)
	if p.HTTP != nil {
		h := *p.HTTP
		c.HTTP = &h
	}
	if p.TCP != nil {
		t := *p.TCP
		c.TCP = &t
	}
	return &c
}
