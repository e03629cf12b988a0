package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/moby/sys/signal"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Defaults for the node's state and the init.
const (
	DefaultStateDir = "/var/lib/vigil"
	// DefaultInitPath is Debian's static tini (package tini): static, so it
	// runs in any image, mounted read-only from the node.
	DefaultInitPath = "/usr/bin/tini-static"
	// initTarget is where the init is mounted in the container (Docker uses
	// /sbin/docker-init).
	initTarget = "/sbin/vigil-init"
	// fenceTarget and fenceLeaseTarget are where a movable container gets
	// the fence and the node's lease directory.
	fenceTarget      = "/sbin/vigil-fence"
	fenceLeaseTarget = "/run/vigil-lease"
)

// VolumeDir is where a replica's named volume lives on the node:
// <state>/volumes/<containerd namespace>/<deployment>/<service>-rep-<n>/<name>.
// A named volume belongs to one replica, like a StatefulSet's claim, so
// replicas never share (and corrupt) each other's data.
func (r *Runtime) VolumeDir(id replica.ID, name string) string {
	return filepath.Join(r.replicaVolumes(id), name)
}

func (r *Runtime) replicaVolumes(id replica.ID) string {
	return filepath.Join(r.cfg.StateDir, "volumes", r.cfg.Namespace, id.Deployment, id.String())
}

// servingOpts are the OCI spec options of the spec's volumes and init. It
// checks what only the node can (a bind source exists, the init is
// installed) and creates named volumes that do not exist yet.
func (r *Runtime) servingOpts(id replica.ID, spec runtime.ContainerSpec) ([]oci.SpecOpts, error) {
	if p := r.servingProblems(spec); len(p) > 0 {
		return nil, invalidSpec(&p[0])
	}
	var mounts []specs.Mount
	for i, v := range spec.Volumes {
		src := v.Source
		if v.Name != "" {
			src = r.VolumeDir(id, v.Name)
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("volumes[%d]: named volume %s: %w", i, src, err)
			}
		}
		opt := "rw"
		if v.ReadOnly {
			opt = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: v.Target, Type: "bind", Source: src, Options: []string{"rbind", opt}})
	}
	var opts []oci.SpecOpts
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	if spec.Fence > 0 {
		// Before the init's: the init wraps the fence.
		opts = append(opts, withFence(r.cfg.FencePath, lease.Dir(r.cfg.StateDir), spec.Fence))
	}
	if spec.Init {
		opts = append(opts, withInit(r.cfg.InitPath))
	}
	return opts, nil
}

// servingProblems are what only the node can check of the spec's volumes
// and init: the paths, that each bind source exists, that the init is
// installed.
func (r *Runtime) servingProblems(spec runtime.ContainerSpec) []runtime.Problem {
	var out []runtime.Problem
	add := func(field, format string, args ...any) {
		out = append(out, runtime.Problem{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	for i, v := range spec.Volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		if !cleanAbs(v.Target) {
			add(field+".target", "%q is not a clean absolute path; write e.g. /data", v.Target)
		}
		switch {
		case v.Name != "" && v.Source == "":
			if v.Name != filepath.Base(v.Name) || strings.HasPrefix(v.Name, ".") {
				add(field+".name", "%q is not a plain name; use letters, digits, '-' and '_'", v.Name)
			}
		case v.Source != "" && v.Name == "":
			if !cleanAbs(v.Source) {
				add(field+".source", "%q is not a clean absolute path on the node", v.Source)
			} else if _, err := os.Stat(v.Source); err != nil {
				add(field+".source", "%s does not exist on this node (%v); create it or fix the path", v.Source, errReason(err))
			}
		default:
			add(field, "give either source (a bind mount) or name (a named volume)")
		}
	}
	if spec.Init {
		if _, err := os.Stat(r.cfg.InitPath); err != nil {
			add("init", "%s is missing on this node (%v); install Debian's tini package there, or set init: false", r.cfg.InitPath, errReason(err))
		}
	}
	if spec.Fence > 0 {
		if r.cfg.FencePath == "" {
			add("placement", "this node's worker has no vigil-fence for movable replicas; install it beside vigil-worker or give --fence-path")
		} else if _, err := os.Stat(r.cfg.FencePath); err != nil {
			add("placement", "the fence %s is missing on this node (%v); install vigil-fence beside vigil-worker or give --fence-path", r.cfg.FencePath, errReason(err))
		}
	}
	return out
}

// withFence runs the container's command under the fence, mounted
// read-only with the node's lease directory (the directory, not the file:
// the worker replaces the file by a rename). It must come after every
// option that sets the process's arguments, before the init's.
func withFence(path, leaseDir string, after time.Duration) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil || len(s.Process.Args) == 0 {
			return invalid("placement: the container has no command to run under the fence")
		}
		if err := os.MkdirAll(leaseDir, 0o755); err != nil {
			return fmt.Errorf("lease dir: %w", err)
		}
		s.Process.Args = append([]string{fenceTarget, "--lease-dir", fenceLeaseTarget, "--after", after.String(), "--"}, s.Process.Args...)
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: fenceTarget, Type: "bind", Source: path, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: fenceLeaseTarget, Type: "bind", Source: leaseDir, Options: []string{"rbind", "ro"}})
		return nil
	}
}

// withInit runs the container's command under the init, mounted read-only.
// It must come after every option that sets the process's arguments.
func withInit(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil || len(s.Process.Args) == 0 {
			return invalid("init: the container has no command to run under the init")
		}
		s.Process.Args = append([]string{initTarget, "--"}, s.Process.Args...)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: initTarget, Type: "bind", Source: path, Options: []string{"rbind", "ro"}})
		return nil
	}
}

// stopSignalOpts override the image's STOPSIGNAL with the spec's.
func stopSignalOpts(spec runtime.ContainerSpec) ([]containerd.NewContainerOpts, error) {
	if spec.StopSignal == "" {
		return nil, nil
	}
	if _, err := signal.ParseSignal(spec.StopSignal); err != nil {
		return nil, invalid("stop_signal: %q is not a signal; use a name such as SIGTERM or SIGQUIT", spec.StopSignal)
	}
	return []containerd.NewContainerOpts{containerd.WithAdditionalContainerLabels(map[string]string{containerd.StopSignalLabel: spec.StopSignal})}, nil
}

// RemoveVolumes deletes the replica's named volumes. Only an explicit
// request (unsupervise --stop --volumes) calls it.
func (r *Runtime) RemoveVolumes(ctx context.Context, id replica.ID) error {
	if err := validateID(id); err != nil {
		return err
	}
	if err := os.RemoveAll(r.replicaVolumes(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove volumes of %s: %w", id.Ref(), err)
	}
	return nil
}

func cleanAbs(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && !strings.Contains(p, "..")
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), runtime.ErrInvalidSpec)
}

// invalidSpec is p as an ErrInvalidSpec.
func invalidSpec(p *runtime.Problem) error {
	return fmt.Errorf("%w: %w", p, runtime.ErrInvalidSpec)
}

// errReason drops the path from file system errors; the caller names the file.
func errReason(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
