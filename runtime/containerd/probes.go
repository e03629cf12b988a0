package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/uuid"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// LabelHealth holds the container's probes (JSON of runtime.Health), so the
// node can probe it with nothing from the workflow's history.
const LabelHealth = "vigil.health"

// maxLabelBytes is containerd's limit on a label's key and value together.
const maxLabelBytes = 4096

// healthLabel renders spec's probes for LabelHealth ("" without probes).
func healthLabel(spec runtime.ContainerSpec) (string, error) {
	if spec.Health == nil || (spec.Health.Liveness == nil && spec.Health.Startup == nil) {
		return "", nil
	}
	b, err := json.Marshal(spec.Health)
	if err != nil {
		return "", err
	}
	if len(b)+len(LabelHealth) > maxLabelBytes {
		return "", fmt.Errorf("health: the probes take %d bytes, more than containerd's %d for a label; shorten the exec commands", len(b), maxLabelBytes)
	}
	return string(b), nil
}

// Health returns the container's probes and when its running task started
// (nil without probes).
func (r *Runtime) Health(ctx context.Context, id replica.ID) (*runtime.Health, time.Time, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return nil, time.Time{}, wrap("health", name, err, runtime.ErrContainerNotFound)
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return nil, time.Time{}, wrap("health", name, err, runtime.ErrContainerNotFound)
	}
	started, _ := time.Parse(time.RFC3339Nano, labels[LabelStartedAt])
	if labels[LabelHealth] == "" {
		return nil, started, nil
	}
	var h runtime.Health
	if err := json.Unmarshal([]byte(labels[LabelHealth]), &h); err != nil {
		return nil, started, fmt.Errorf("health of %s: label %s: %w", name, LabelHealth, err)
	}
	return &h, started, nil
}

// Exec runs args in the container's running task, as containerd's task
// exec does, and returns its exit code. It kills the process at timeout.
func (r *Runtime) Exec(ctx context.Context, id replica.ID, args []string, timeout time.Duration) (int, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return 0, err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return 0, wrap("exec", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, wrap("exec", name, err, runtime.ErrContainerNotFound)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return 0, wrap("exec", name, err, nil)
	}
	pspec := *spec.Process
	pspec.Args = args
	pspec.Terminal = false
	execID := "probe-" + uuid.NewString()[:8]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NullIO)
	if err != nil {
		return 0, wrap("exec", name, err, nil)
	}
	defer func() { _, _ = proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) }()
	exitc, err := proc.Wait(ctx)
	if err != nil {
		return 0, wrap("exec", name, err, nil)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, wrap("exec", name, err, nil)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case es := <-exitc:
		code, _, err := es.Result()
		return int(code), err
	case <-timer.C:
		_ = proc.Kill(ctx, syscall.SIGKILL)
		return 0, fmt.Errorf("exec %v in %s: no answer within %s", args, name, timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Dial connects to port on the container's loopback, from inside its
// network namespace: it works with every network mode, a container without
// networking included, and the traffic never leaves the container.
func (r *Runtime) Dial(ctx context.Context, id replica.ID, port int, timeout time.Duration) (net.Conn, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return nil, wrap("dial", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, wrap("dial", name, err, runtime.ErrContainerNotFound)
	}
	var conn net.Conn
	path := "/proc/" + strconv.Itoa(int(task.Pid())) + "/ns/net"
	err = ns.WithNetNSPath(path, func(ns.NetNS) error {
		// The socket belongs to the namespace it is created in, whichever
		// thread uses it afterwards.
		d := net.Dialer{Timeout: timeout}
		var derr error
		conn, derr = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return derr
	})
	return conn, err
}
