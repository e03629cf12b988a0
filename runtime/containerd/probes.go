package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
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
// exec does, and returns its exit code and the first line of its output
// (of stdout, else of stderr: the two are copied apart, so their order is
// lost). It kills the process at timeout.
func (r *Runtime) Exec(ctx context.Context, id replica.ID, args []string, timeout time.Duration) (int, string, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return 0, "", err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return 0, "", wrap("exec", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, "", wrap("exec", name, err, runtime.ErrContainerNotFound)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return 0, "", wrap("exec", name, err, nil)
	}
	pspec := *spec.Process
	pspec.Args = args
	pspec.Terminal = false
	execID := "probe-" + uuid.NewString()[:8]
	stdout, stderr := &headBuffer{max: maxExecOutput}, &headBuffer{max: maxExecOutput}
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, stdout, stderr)))
	if err != nil {
		return 0, "", wrap("exec", name, err, nil)
	}
	defer func() { _, _ = proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) }()
	exitc, err := proc.Wait(ctx)
	if err != nil {
		return 0, "", wrap("exec", name, err, nil)
	}
	if err := proc.Start(ctx); err != nil {
		return 0, "", wrap("exec", name, err, nil)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case es := <-exitc:
		code, _, err := es.Result()
		// The output is copied until the process's end of the pipes
		// closes: briefly, unless a child it left behind keeps them open.
		copied := make(chan struct{})
		go func() { proc.IO().Wait(); close(copied) }()
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		first := stdout.firstLine()
		if first == "" {
			first = stderr.firstLine()
		}
		return int(code), first, err
	case <-timer.C:
		_ = proc.Kill(ctx, syscall.SIGKILL)
		return 0, "", fmt.Errorf("exec %v in %s: no answer within %s", args, name, timeout)
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
}

// maxExecOutput bounds what a probe's exec keeps of its output.
const maxExecOutput = 512

// headBuffer keeps the first max bytes written to it and drops the rest
// (a probe's output is read for its first line only).
type headBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *headBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// firstLine is the first non-empty line written, trimmed.
func (b *headBuffer) firstLine() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(string(b.buf), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
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
