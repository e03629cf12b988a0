package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Start makes the task run: a running task is left alone, an exited one is
// deleted and a new one started with output appended to the replica's log.
func (r *Runtime) Start(ctx context.Context, id replica.ID) (runtime.StartInfo, error) {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return runtime.StartInfo{}, err
	}
	defer unlock()

	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.StartInfo{}, wrap("start", name, err, runtime.ErrContainerNotFound)
	}
	notBefore := time.Now().UTC()
	prevExit := "" // how the task before ended, for the log's run marker
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		st, err := task.Status(ctx)
		if err != nil {
			return runtime.StartInfo{}, wrap("start", name, err, nil)
		}
		switch st.Status {
		case containerd.Running, containerd.Paused, containerd.Pausing:
			labels, _ := c.Labels(ctx)
			started, _ := time.Parse(time.RFC3339Nano, labels[LabelStartedAt])
			return runtime.StartInfo{AlreadyRunning: true, StartedAt: started, PID: task.Pid(), Network: r.networkStatus(name), NotBefore: notBefore}, nil
		}
		switch st.Status {
		case containerd.Stopped:
			prevExit = fmt.Sprintf("exit code %d at %s", st.ExitStatus, st.ExitTime.UTC().Format(time.RFC3339Nano))
		case containerd.Created:
			prevExit = "never started (a start cut short)"
		}
		// Stopped, or created by a start that failed half-way: begin afresh.
		if err := deleteTask(ctx, task, st.Status); err != nil {
			return runtime.StartInfo{}, wrap("start", name, err, nil)
		}
	case !errdefs.IsNotFound(err):
		return runtime.StartInfo{}, wrap("start", name, err, nil)
	}

	network, err := r.startNetwork(ctx, c)
	if err != nil {
		return runtime.StartInfo{}, nodeError("start", name, err)
	}

	// The task's output goes to Vigil's logger (ctrlog), which the shim
	// starts; the worker makes the log directory, so that a worker that
	// does not run as root owns it and reads the files.
	// Best effort: a log must never keep a container down.
	logDir := r.LogDir(id)
	_ = os.MkdirAll(logDir, 0o750)
	if r.cfg.LoggerPath == "" {
		return runtime.StartInfo{}, nodeError("start", name, errors.New("no logger binary for the task's output: the worker cannot name its own path"))
	}
	taskIO, err := ctrlog.CaptureIO(r.cfg.LoggerPath, ctrlog.CaptureArgs{Dir: logDir, MaxSize: r.cfg.LogMaxSize, MaxFiles: r.cfg.LogMaxFiles,
		StartedAt: time.Now().UTC(), PreviousExit: prevExit})
	if err != nil {
		return runtime.StartInfo{}, nodeError("start", name, err)
	}
	// Exits of the tasks deleted above (killed if they still ran) came before.
	notBefore = time.Now().UTC()
	task, err = c.NewTask(ctx, taskIO)
	if errdefs.IsAlreadyExists(err) {
		// A task containerd no longer reports (Task says not found) still
		// blocks the new one: containerd 1.6 keeps it when the client that
		// deleted it died half-way (a killed worker), across restarts too.
		// The task service still finds it by ID: delete it and try again.
		if derr := deleteStaleTask(ctx, r.client, name); derr == nil {
			notBefore = time.Now().UTC()
			task, err = c.NewTask(ctx, taskIO)
		}
	}
	var startedAt time.Time
	if err == nil {
		// The label names the task before it can exit: the node watch names
		// the task an exit is about by it, and a task that crashes at once
		// must not be taken for the one before.
		startedAt = time.Now().UTC()
		if _, err := c.SetLabels(ctx, map[string]string{LabelStartedAt: startedAt.Format(time.RFC3339Nano), LabelStartError: ""}); err != nil {
			_, _ = task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
			return runtime.StartInfo{}, wrap("start", name, err, nil)
		}
		// Leave no half-made task behind; the next Start begins afresh anyway.
		// But when containerd went away during the call the task may well have
		// started: the next Start finds it running instead of killing a started
		// container (found by the chaos soak, seed 3: one crash, two starts).
		if err = task.Start(ctx); err != nil && !isUnavailable(err) {
			_, _ = task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		}
	}
	if err != nil {
		return runtime.StartInfo{}, r.classifyStartErr(ctx, c, name, err)
	}
	return runtime.StartInfo{StartedAt: startedAt, PID: task.Pid(), Network: network, NotBefore: notBefore}, nil
}

// classifyStartErr says whose fault a failed start is, as the kind of the
// error: the node's (ErrUnavailable: retried with backoff, not counted as a
// crash), the container's absence (ErrContainerNotFound: created again), or
// the container's own (it cannot run as specified; the reason is kept).
func (r *Runtime) classifyStartErr(ctx context.Context, c containerd.Container, name string, err error) error {
	switch {
	case errdefs.IsAlreadyExists(err):
		// A stale task still blocks the new one after Start tried to delete it.
		// Not the container's fault: retry later rather than report a crash.
		return &Error{Op: "start", ID: name, Kind: runtime.ErrUnavailable, Err: err}
	case isShimStartFailure(err):
		// containerd could not start the task's shim, e.g. over the bundle of
		// an earlier task it left behind when it crashed (found by the chaos
		// soak, seed 4): a problem of the node, not of the container. Retried
		// with backoff, the reason shown in status, rather than counted as a
		// crash and restarted at once, over and over.
		return &Error{Op: "start", ID: name, Kind: runtime.ErrUnavailable, Err: err}
	case isUnavailable(err) || errdefs.IsNotFound(err):
		return wrap("start", name, err, runtime.ErrContainerNotFound)
	case r.vanished(ctx, c):
		// Deleted behind Vigil's back while starting (its snapshot goes first):
		// not the container's fault; the next attempt creates it again.
		return &Error{Op: "start", ID: name, Kind: runtime.ErrContainerNotFound, Err: err}
	default:
		// The container cannot run as specified (e.g. no such executable):
		// keep the reason where State and `ctr containers info` show it.
		_, _ = c.SetLabels(ctx, map[string]string{LabelStartError: truncate(err.Error(), 1024)})
		return wrap("start", name, err, runtime.ErrContainerNotFound)
	}
}

// deleteStaleTask deletes a container's task through the task service,
// which finds tasks the client's Container.Task no longer does.
func deleteStaleTask(ctx context.Context, client *containerd.Client, name string) error {
	_, err := client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: name})
	return ignoreNotFound(errgrpc.ToNative(err))
}

// State reports the container's state from containerd's own records.
// A container without a task (never started, task deleted, or the host
// rebooted) is Failed: nothing of it is running.
func (r *Runtime) State(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return runtime.ContainerState{}, err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.ContainerState{}, wrap("state", name, err, runtime.ErrContainerNotFound)
	}
	st, err := r.taskState(ctx, c)
	return st, wrap("state", name, err, runtime.ErrContainerNotFound)
}

const noTaskReason = "container has no task (never started, task deleted, or the host restarted)"

// noTask is the state of a container without a task: Failed, with the reason
// its last start failed when there is one.
func noTask(ctx context.Context, c containerd.Container) runtime.ContainerState {
	if labels, err := c.Labels(ctx); err == nil && labels[LabelStartError] != "" {
		return runtime.Failed("task failed to start: " + labels[LabelStartError])
	}
	return runtime.Failed(noTaskReason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (r *Runtime) taskState(ctx context.Context, c containerd.Container) (runtime.ContainerState, error) {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, err
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, err
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		return runtime.Running(), nil
	case containerd.Created:
		return runtime.ContainerState{Status: runtime.StatusInitializing}, nil
	case containerd.Stopped:
		labels, _ := c.Labels(ctx)
		return explain(runtime.Exited(int(st.ExitStatus), st.ExitTime), labels), nil
	default:
		return runtime.ContainerState{}, fmt.Errorf("task status %q: %w", st.Status, runtime.ErrUnavailable)
	}
}

// Wait blocks until the current task is no longer running. It rides out
// containerd restarts: the task lives on in its shim, so Wait reconnects and
// keeps waiting rather than inventing an exit. It returns an error only for
// a missing container or when ctx ends.
func (r *Runtime) Wait(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return runtime.ContainerState{}, err
	}
	backoff := 200 * time.Millisecond
	for {
		// Any failure other than a missing container is looked at again: the
		// daemon may be restarting, or the shim died and the next look finds
		// the task gone (Failed) rather than an invented exit.
		st, err := r.waitOnce(ctx, name)
		if err == nil || errors.Is(err, runtime.ErrContainerNotFound) || ctx.Err() != nil {
			return st, err
		}
		select {
		case <-ctx.Done():
			return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

func (r *Runtime) waitOnce(ctx context.Context, name string) (runtime.ContainerState, error) {
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, nil)
	}
	// Wait answers at once for a task that already exited.
	exitc, err := task.Wait(ctx)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, nil)
	}
	select {
	case es := <-exitc:
		if err := es.Error(); err != nil {
			if ctx.Err() != nil {
				return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
			}
			if errdefs.IsNotFound(err) {
				return noTask(ctx, c), nil
			}
			return runtime.ContainerState{}, wrap("wait", name, err, nil)
		}
		return explainExit(ctx, c, runtime.Exited(int(es.ExitCode()), es.ExitTime())), nil
	case <-ctx.Done():
		return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
	}
}

// Stop sends SIGTERM (or the image's STOPSIGNAL), then SIGKILL to every
// process of the task after grace.
func (r *Runtime) Stop(ctx context.Context, id replica.ID, grace time.Duration) error {
	return r.stopIf(ctx, id, grace, nil)
}

// stopIf is Stop once check, if set, has agreed, both under the
// container's lock.
func (r *Runtime) stopIf(ctx context.Context, id replica.ID, grace time.Duration, check func(context.Context, containerd.Container) error) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return wrap("stop", name, err, runtime.ErrContainerNotFound)
	}
	if check != nil {
		if err := check(ctx, c); err != nil {
			return err
		}
	}
	return wrap("stop", name, r.stopTask(ctx, c, grace), nil)
}

func (r *Runtime) stopTask(ctx context.Context, c containerd.Container, grace time.Duration) error {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st.Status == containerd.Created {
		// Never started: nothing to terminate gracefully.
		grace = 0
	}
	if grace > 0 {
		// The image's STOPSIGNAL if it has one (e.g. SIGQUIT for nginx), else SIGTERM.
		sig, err := containerd.GetStopSignal(ctx, c, syscall.SIGTERM)
		if err != nil {
			return err
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exitc:
			return nil
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	select {
	case <-exitc:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteTask deletes a task, killing it first unless it has stopped: a kill
// of a stopped task costs the 1.6 shim about a second, most of a restart.
func deleteTask(ctx context.Context, task containerd.Task, status containerd.ProcessStatus) error {
	var opts []containerd.ProcessDeleteOpts
	if status != containerd.Stopped {
		opts = append(opts, containerd.WithProcessKill)
	}
	_, err := task.Delete(ctx, opts...)
	return ignoreNotFound(err)
}
