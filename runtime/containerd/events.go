package containerd

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// ParseContainerName is the inverse of ContainerName. Deployment and service
// names cannot contain '.', so the first '.' separates them.
func ParseContainerName(name string) (replica.ID, bool) {
	dep, rest, ok := strings.Cut(name, ".")
	if !ok || dep == "" {
		return replica.ID{}, false
	}
	i := strings.LastIndex(rest, "-rep-")
	if i <= 0 {
		return replica.ID{}, false
	}
	n, err := strconv.Atoi(rest[i+len("-rep-"):])
	if err != nil || n < 1 {
		return replica.ID{}, false
	}
	id := replica.ID{Deployment: dep, Service: rest[:i], Replica: n}
	return id, id.ContainerName() == name
}

// Events follows containerd's /tasks/start, /tasks/exit and /tasks/oom events in the
// runtime's namespace. Exits of exec'd processes are left out: only a
// container's own task counts. Names that are not Vigil's are skipped.
func (r *Runtime) Events(ctx context.Context) (<-chan runtime.TaskEvent, <-chan error) {
	out := make(chan runtime.TaskEvent)
	errc := make(chan error, 1)
	ns := ",namespace==" + r.cfg.Namespace
	subCtx, cancel := context.WithCancel(r.nsCtx(ctx))
	envs, errs := r.client.Subscribe(subCtx, `topic=="/tasks/exit"`+ns, `topic=="/tasks/oom"`+ns, `topic=="/tasks/start"`+ns)
	go func() {
		defer close(out)
		defer close(errc)
		defer cancel()
		for {
			select {
			case env := <-envs:
				ev, ok := taskEvent(env.Event)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-errs:
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = errors.New("event stream ended")
				}
				errc <- wrap("events", r.cfg.Namespace, err, nil)
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

// taskEvent decodes the events Vigil acts on.
func taskEvent(any typeurl.Any) (runtime.TaskEvent, bool) {
	if any == nil {
		return runtime.TaskEvent{}, false
	}
	v, err := typeurl.UnmarshalAny(any)
	if err != nil {
		return runtime.TaskEvent{}, false
	}
	switch e := v.(type) {
	case *apievents.TaskExit:
		id, ok := ParseContainerName(e.ContainerID)
		if !ok || e.ID != e.ContainerID { // an exec'd process, not the task
			return runtime.TaskEvent{}, false
		}
		return runtime.TaskEvent{Kind: runtime.TaskExited, ID: id, Exit: runtime.Exit{ExitCode: int(e.ExitStatus), ExitedAt: e.ExitedAt.AsTime(), PID: e.Pid}}, true
	case *apievents.TaskStart:
		id, ok := ParseContainerName(e.ContainerID)
		return runtime.TaskEvent{Kind: runtime.TaskStarted, ID: id}, ok
	case *apievents.TaskOOM:
		id, ok := ParseContainerName(e.ContainerID)
		return runtime.TaskEvent{Kind: runtime.TaskOOM, ID: id}, ok
	}
	return runtime.TaskEvent{}, false
}

// List reports every Vigil container in the namespace with its task's state,
// in two calls to containerd however many containers there are.
func (r *Runtime) List(ctx context.Context) ([]runtime.ContainerInfo, error) {
	ctx = r.nsCtx(ctx)
	cs, err := r.client.ContainerService().List(ctx)
	if err != nil {
		return nil, wrap("list", r.cfg.Namespace, err, nil)
	}
	resp, err := r.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, wrap("list", r.cfg.Namespace, errgrpc.ToNative(err), nil)
	}
	procs := make(map[string]*tasktypes.Process, len(resp.Tasks))
	for _, p := range resp.Tasks {
		// containerd 1.6 leaves ContainerID empty: a task's ID is its container's.
		switch {
		case p.ContainerID == "":
			procs[p.ID] = p
		case p.ID == "" || p.ID == p.ContainerID:
			procs[p.ContainerID] = p
		}
	}
	out := make([]runtime.ContainerInfo, 0, len(cs))
	for _, c := range cs {
		id, ok := ParseContainerName(c.ID)
		if !ok || c.Labels[LabelDeployment] == "" {
			continue
		}
		info := runtime.ContainerInfo{ID: id}
		info.StartedAt, _ = time.Parse(time.RFC3339Nano, c.Labels[LabelStartedAt])
		info.ReportedAt, _ = time.Parse(time.RFC3339Nano, c.Labels[LabelExitReported])
		p := procs[c.ID]
		if p != nil {
			info.PID = p.Pid
		}
		switch {
		case p == nil:
			info.State = runtime.Failed(noTaskReason)
			if reason := c.Labels[LabelStartError]; reason != "" {
				info.State = runtime.Failed("task failed to start: " + reason)
			}
		case p.Status == tasktypes.Status_STOPPED:
			info.State = explain(runtime.Exited(int(p.ExitStatus), p.ExitedAt.AsTime()), c.Labels)
		case p.Status == tasktypes.Status_CREATED:
			info.State = runtime.ContainerState{Status: runtime.StatusInitializing}
		default:
			info.State = runtime.Running()
		}
		out = append(out, info)
	}
	return out, nil
}
