package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"sort"
	"strconv"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Create creates the container unless it exists with the same spec. A
// container whose spec changed is replaced, unless its task is running:
// then it is left alone and the answer is ErrSpecChanged.
func (r *Runtime) Create(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	digest := specDigest(spec)
	health, err := healthLabel(spec)
	if err != nil {
		return &Error{Op: "create", ID: name, Kind: runtime.ErrInvalidSpec, Err: err}
	}

	existing, err := r.client.LoadContainer(ctx, name)
	switch {
	case err == nil:
		labels, err := existing.Labels(ctx)
		if err != nil {
			return wrap("create", name, err, runtime.ErrContainerNotFound)
		}
		if labels[LabelSpec] == digest && !r.vanished(ctx, existing) {
			return nil
		}
		if st, err := r.taskState(ctx, existing); err == nil && !st.Done() {
			if labels[LabelSpec] != digest {
				return &Error{Op: "create", ID: name, Kind: runtime.ErrSpecChanged, Err: runtime.ErrSpecChanged}
			}
			return nil // vanished underneath a running task: left to Start
		}
	case errdefs.IsNotFound(err):
		existing = nil
	default:
		return wrap("create", name, err, nil)
	}

	image, err := r.ensureImage(ctx, spec)
	if err != nil {
		return err // before deleting anything: a bad new image keeps the old container
	}
	// Before deleting anything, as the image.
	security, err := securityOpts(spec.Security)
	if err != nil {
		return &Error{Op: "create", ID: name, Kind: runtime.ErrInvalidSpec, Err: err}
	}
	if existing != nil {
		if err := r.deleteContainer(ctx, existing); err != nil {
			return wrap("create", name, err, nil)
		}
	}
	serving, err := r.servingOpts(id, spec)
	if err != nil {
		return nodeError("create", name, err)
	}
	stopSignal, err := stopSignalOpts(spec)
	if err != nil {
		return &Error{Op: "create", ID: name, Kind: runtime.ErrInvalidSpec, Err: err}
	}
	var nsPath string
	if spec.Network == runtime.NetworkBridge {
		st, err := r.net.ensure(ctx, name, spec.Ports)
		if err != nil {
			return nodeError("create", name, err)
		}
		nsPath = st.NetNS
	} else if err := r.net.release(ctx, name); err != nil {
		// Left by a bridge container of this name deleted behind Vigil's back.
		return nodeError("create", name, err)
	}
	// A snapshot left by a create that failed half-way would block the new one.
	if err := r.client.SnapshotService(r.cfg.Snapshotter).Remove(ctx, name); err != nil && !errdefs.IsNotFound(err) {
		return wrap("create", name, err, nil)
	}
	labels := map[string]string{
		LabelDeployment: id.Deployment,
		LabelService:    id.Service,
		LabelReplica:    strconv.Itoa(id.Replica),
		LabelSpec:       digest,
	}
	maps.Copy(labels, networkLabels(spec))
	if health != "" {
		labels[LabelHealth] = health
	}
	if r := spec.Resources; r != nil && r.MemoryBytes > 0 {
		labels[LabelMemoryLimit] = strconv.FormatInt(r.MemoryBytes, 10)
	}
	if spec.Fence > 0 {
		labels[LabelFence] = spec.Fence.String()
	}
	opts := []containerd.NewContainerOpts{containerd.WithImage(image)}
	if r.cfg.RuncRoot != "" {
		opts = append(opts, containerd.WithRuntime(r.client.Runtime(), &runcoptions.Options{Root: r.cfg.RuncRoot}))
	}
	if r.cfg.Snapshotter != "" {
		opts = append(opts, containerd.WithSnapshotter(r.cfg.Snapshotter))
	}
	opts = append(opts,
		snapshotOpt(name, image, spec.Security),
		containerd.WithContainerLabels(labels),
		containerd.WithImageStopSignal(image, "SIGTERM"), // after the labels, which it adds to
	)
	opts = append(opts, stopSignal...) // after the image's, which it overrides
	specOpts := append(append(specOpts(image, spec, name), security...), networkSpecOpts(spec, nsPath)...)
	opts = append(opts, containerd.WithNewSpec(append(specOpts, serving...)...)) // serving last: the init wraps the final args
	if _, err := r.client.NewContainer(ctx, name, opts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return wrap("create", name, err, nil)
	}
	return nil
}

// specOpts build an OCI spec with no host mounts: the image's config,
// overridden by the spec's command, workdir, env and limits
// (securityOpts confine it).
func specOpts(image containerd.Image, spec runtime.ContainerSpec, hostname string) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(image)}
	switch {
	case len(spec.Entrypoint) > 0:
		// As in Docker: a new entrypoint drops the image's CMD.
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, spec.Entrypoint...), spec.Args...)...))
	case len(spec.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(image, spec.Args))
	}
	if spec.WorkDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkDir))
	}
	if len(spec.Env) > 0 {
		keys := make([]string, 0, len(spec.Env))
		for k := range spec.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		env := make([]string, 0, len(keys))
		for _, k := range keys {
			env = append(env, k+"="+spec.Env[k])
		}
		opts = append(opts, oci.WithEnv(env))
	}
	if r := spec.Resources; r != nil {
		if r.MemoryBytes > 0 {
			opts = append(opts, oci.WithMemoryLimit(uint64(r.MemoryBytes)))
		}
		if q := r.CPUQuota(); q > 0 {
			opts = append(opts, oci.WithCPUCFS(q, runtime.CPUPeriod))
		}
		if r.Pids > 0 {
			opts = append(opts, oci.WithPidsLimit(r.Pids))
		}
	}
	return append(opts, oci.WithHostname(hostname))
}

// specDigest identifies a spec without revealing it (env may hold resolved secrets).
func specDigest(spec runtime.ContainerSpec) string {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// vanished reports whether the container or its snapshot is gone.
func (r *Runtime) vanished(ctx context.Context, c containerd.Container) bool {
	info, err := c.Info(ctx)
	if errdefs.IsNotFound(err) {
		return true
	}
	if err != nil || info.SnapshotKey == "" {
		return false
	}
	_, err = r.client.SnapshotService(info.Snapshotter).Stat(ctx, info.SnapshotKey)
	return errdefs.IsNotFound(err)
}

// Remove kills and deletes the task, the container and its snapshot. The
// log stays: `vigil logs` still shows a removed replica's last output, and
// a container created again for the replica appends to it (bounded by
// MaxLogBytes like any log).
func (r *Runtime) Remove(ctx context.Context, id replica.ID) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.client.LoadContainer(ctx, name)
	if errdefs.IsNotFound(err) {
		// Deleted behind Vigil's back: its network may still hold an address.
		return nodeError("remove", name, r.net.release(ctx, name))
	}
	if err != nil {
		return wrap("remove", name, err, nil)
	}
	if err := r.deleteContainer(ctx, c); err != nil {
		return wrap("remove", name, err, nil)
	}
	return nil
}

func (r *Runtime) deleteContainer(ctx context.Context, c containerd.Container) error {
	if task, err := c.Task(ctx, nil); err == nil {
		st, err := task.Status(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if err := deleteTask(ctx, task, st.Status); err != nil {
			return err
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	// No process is left in the namespace: release its address and ports.
	if err := r.net.release(ctx, c.ID()); err != nil {
		return err
	}
	return ignoreNotFound(c.Delete(ctx, containerd.WithSnapshotCleanup))
}

// Isolate labels the container vigil.isolated=true. Its exited task and its
// log stay in place for debugging.
func (r *Runtime) Isolate(ctx context.Context, id replica.ID) error {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return wrap("isolate", name, err, runtime.ErrContainerNotFound)
	}
	_, err = c.SetLabels(ctx, map[string]string{LabelIsolated: "true"})
	return wrap("isolate", name, err, runtime.ErrContainerNotFound)
}

// removeFile removes path; a missing file is not an error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
