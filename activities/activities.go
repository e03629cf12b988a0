// Package activities are Vigil's hands on a node: thin, idempotent adapters
// over runtime.Runtime, run by the worker on the node that owns the containers.
package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Defaults for the zero Options and inputs.
const (
	DefaultHeartbeatInterval = 3 * time.Second
	// startConfirmDelay is the pause before a failed start is tried again
	// to tell a passing failure from a container that cannot run.
	startConfirmDelay = time.Second
)

// DeletedReason is the WaitForExit reason when the container vanished.
const DeletedReason = "container was deleted outside Vigil"

// Options tune the activities. The zero value is usable.
type Options struct {
	// HTTPClient calls isolate webhooks (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// LookupEnv resolves "$E:NAME" env references (default: os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// HeartbeatInterval is how often long activities heartbeat (default: a
	// third of the activity's heartbeat timeout, else DefaultHeartbeatInterval).
	HeartbeatInterval time.Duration
	// Node is reported in isolate webhooks (default: the host name).
	Node string
	// Watched counts the containers watched now (default: not counted).
	Watched Gauge
	// Probes, if set, probes the containers that have liveness or startup
	// probes while they are watched; ReportHealth tells their workflows of
	// each change of health.
	Probes ProbeTarget
	// detail is what the failed probe said, with an unhealthy verdict.
	ReportHealth func(ctx context.Context, id replica.ID, status runtime.HealthStatus, detail string, startedAt time.Time) error
	// Reporter delivers the node watch's exit reports (WatchNode needs it).
	Reporter Reporter
	// Roster, if set, tells the node watch which replicas should run on the
	// node, which it reconciles with the runtime's containers.
	Roster Roster
	// OnWatchEnded, if set, is called when a node watch on this worker ends
	// for any reason but the worker stopping (the worker then makes sure
	// the node still has a watch).
	OnWatchEnded func()
	// Instance is this worker process's instance (see workflows.Claim): a
	// node watch started for another instance's claim ends at once.
	Instance string
	// Renew and LeaseDir renew the node's lease (WatchNodeInput.Lease):
	// Renew sends the watch's heartbeats, and each success is written to
	// the lease file in LeaseDir (package lease; empty: none written).
	Renew    Renewer
	LeaseDir string
}

// Gauge is a value that goes up and down, e.g. a Prometheus gauge.
type Gauge interface {
	Inc()
	Dec()
}

type noGauge struct{}

func (noGauge) Inc() {}
func (noGauge) Dec() {}

// Activities holds the dependencies of every container activity.
type Activities struct {
	rt   runtime.Runtime
	opts Options
	// watched is the number of running containers at the node watch's last scan.
	watched atomic.Int64
	// leases remembers when the node's lease lapsed (lease.go).
	leases *leaseLog
}

// New returns the activities over rt.
func New(rt runtime.Runtime, opts Options) *Activities {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	if opts.Watched == nil {
		opts.Watched = noGauge{}
	}
	return &Activities{rt: rt, opts: opts, leases: newLeaseLog(opts.LeaseDir)}
}

// EnsureRunning creates and starts the container unless its task already
// runs. A task that ended after in.After was started by an earlier attempt
// of this call: it is not started again (ExitedSince), so a retry never
// doubles a restart. A task that cannot start at all (e.g. no such
// executable) is reported the same way; WaitForExit then returns it as
// Failed with the reason.
//
// It heartbeats while it works: pulling an image can take longer than the
// heartbeat timeout.
func (a *Activities) EnsureRunning(ctx context.Context, in EnsureRunningInput) (EnsureRunningResult, error) {
	var res EnsureRunningResult
	err := a.whileHeartbeating(ctx, a.starting(in.Spec.Image), func() (err error) {
		res, err = a.ensureRunning(ctx, in)
		return err
	})
	return res, err
}

func (a *Activities) ensureRunning(ctx context.Context, in EnsureRunningInput) (EnsureRunningResult, error) {
	logger := activity.GetLogger(ctx)
	// Every exit of a task this call starts or finds running comes after
	// this moment, on the runtime's clock (this host's).
	notBefore := time.Now().UTC()
	spec, err := a.resolveEnv(in.Spec)
	if err != nil {
		return EnsureRunningResult{}, temporal.NewNonRetryableApplicationError(err.Error(), replica.ErrTypeBadSpec, nil)
	}
	if err := a.leaseFresh(ctx, spec.Fence); err != nil {
		return EnsureRunningResult{}, err
	}
	if err := a.create(ctx, in, spec); err != nil {
		return EnsureRunningResult{}, activityError("create", in.ID, err)
	}
	if !in.After.IsZero() {
		st, err := a.rt.State(ctx, in.ID)
		if err != nil {
			return EnsureRunningResult{}, activityError("state", in.ID, err)
		}
		if st.Status == runtime.StatusExited && st.ExitedAt.After(in.After) {
			logger.Info("Container already ran and exited since; not starting it again",
				"container", in.ID.Ref(), "exit_code", st.ExitCode, "exited_at", st.ExitedAt, "after", in.After)
			return EnsureRunningResult{ExitedSince: true, NotBefore: notBefore, ExitCode: st.ExitCode, ExitedAt: st.ExitedAt}, nil
		}
	}
	info, err := a.rt.Start(ctx, in.ID)
	if errors.Is(err, runtime.ErrInvalidSpec) {
		// The node refuses the spec (e.g. a host port another container
		// publishes): not a crash of the container; the workflow retries
		// with growing delays and shows why.
		return EnsureRunningResult{}, activityError("start", in.ID, err)
	}
	if err != nil && !retryable(ctx, err) {
		// Some failures pass by themselves (containerd still cleaning up a
		// task deleted behind Vigil's back): only a failure that happens
		// again means the container cannot run as specified. Reporting a
		// passing one would count a restart that never happened.
		logger.Info("Container did not start; trying once more", "container", in.ID.Ref(), "error", err)
		select {
		case <-ctx.Done():
			return EnsureRunningResult{}, activityError("start", in.ID, ctx.Err())
		case <-time.After(startConfirmDelay):
		}
		if err := a.create(ctx, in, spec); err != nil {
			return EnsureRunningResult{}, activityError("create", in.ID, err)
		}
		info, err = a.rt.Start(ctx, in.ID)
	}
	if err != nil {
		if retryable(ctx, err) {
			return EnsureRunningResult{}, activityError("start", in.ID, err)
		}
		logger.Warn("Container failed to start", "container", in.ID.Ref(), "error", err)
		return EnsureRunningResult{ExitedSince: true, StartError: err.Error(), NotBefore: notBefore,
			ExitCode: runtime.FailedExitCode, ExitedAt: time.Now().UTC()}, nil
	}
	if info.AlreadyRunning {
		logger.Info("Container already running", "container", in.ID.Ref(), "pid", info.PID)
	} else {
		logger.Info("Container started", "container", in.ID.Ref(), "pid", info.PID, "image", spec.Image)
	}
	return EnsureRunningResult{StartedAt: info.StartedAt, AlreadyRunning: info.AlreadyRunning, Network: info.Network, NotBefore: notBefore, PID: info.PID}, nil
}

// create makes the container of spec. A running task of another spec (a
// supervision started afresh over a container of an older config) is
// stopped, as a stop asks (SIGTERM, then SIGKILL after in.Grace), and
// replaced: adopting it would run a config nobody asked for under the new
// one's name.
func (a *Activities) create(ctx context.Context, in EnsureRunningInput, spec runtime.ContainerSpec) error {
	err := a.rt.Create(ctx, in.ID, spec)
	if !errors.Is(err, runtime.ErrSpecChanged) {
		return err
	}
	grace := in.Grace
	if grace <= 0 {
		grace = runtime.DefaultStopGrace
	}
	activity.GetLogger(ctx).Info("Container runs another spec; stopping it to replace it", "container", in.ID.Ref(), "grace", grace)
	if err := a.rt.Stop(ctx, in.ID, grace); err != nil && !errors.Is(err, runtime.ErrContainerNotFound) {
		return err
	}
	return a.rt.Create(ctx, in.ID, spec)
}

// retryable reports whether a Start error may pass: the runtime was
// unreachable, the container vanished meanwhile, or the call was cut short.
// Any other Start error means the task could not run as specified.
func retryable(ctx context.Context, err error) bool {
	return errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrContainerNotFound) ||
		ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// resolveEnv replaces "$E:NAME" values with the worker's own environment, so
// secrets never enter workflow history. Values are never logged.
func (a *Activities) resolveEnv(spec runtime.ContainerSpec) (runtime.ContainerSpec, error) {
	if len(spec.Env) == 0 {
		return spec, nil
	}
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make(map[string]string, len(spec.Env))
	for _, k := range keys {
		v := spec.Env[k]
		if name, ok := strings.CutPrefix(v, runtime.EnvRefPrefix); ok {
			resolved, found := a.opts.LookupEnv(name)
			if !found {
				return spec, &runtime.Problem{Field: "env." + k, Reason: fmt.Sprintf("%s%s is not set in the environment of the worker on this node; export %s before starting vigil-worker", runtime.EnvRefPrefix, name, name)}
			}
			v = resolved
		}
		env[k] = v
	}
	spec.Env = env
	return spec, nil
}

// WaitForExit blocks until the container leaves Running and returns its exit
// from the runtime's own records. It heartbeats while waiting, polls State
// every PollInterval in case an exit event is missed, and keeps waiting
// through runtime outages (a containerd restart leaves tasks running).
func (a *Activities) WaitForExit(ctx context.Context, in WaitForExitInput) (runtime.Exit, error) {
	logger := activity.GetLogger(ctx)
	a.opts.Watched.Inc()
	defer a.opts.Watched.Dec()
	poll := in.PollInterval
	if poll <= 0 {
		poll = policy.DefaultPollInterval
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type waited struct {
		st  runtime.ContainerState
		err error
	}
	exits := make(chan waited, 1)
	startWait := func() {
		go func() {
			st, err := a.rt.Wait(waitCtx, in.ID)
			exits <- waited{st, err}
		}()
	}
	startWait()
	if a.opts.Probes != nil {
		a.startProbes(waitCtx, logger, in.ID)
	}

	pollTicker := time.NewTicker(poll)
	defer pollTicker.Stop()
	heartbeat := time.NewTicker(a.heartbeatInterval(ctx))
	defer heartbeat.Stop()
	workerStop := activity.GetWorkerStopChannel(ctx)
	var rewait <-chan time.Time
	status := "waiting"
	for {
		select {
		case w := <-exits:
			if w.err == nil {
				return a.exitResult(ctx, in.ID, w.st), nil
			}
			if errors.Is(w.err, runtime.ErrContainerNotFound) {
				return a.deleted(ctx, in.ID), nil
			}
			if ctx.Err() != nil {
				return runtime.Exit{}, ctx.Err()
			}
			logger.Warn("Waiting for container failed; retrying", "container", in.ID.Ref(), "error", w.err)
			status = "runtime unavailable: " + w.err.Error()
			rewait = time.After(time.Second)
		case <-rewait:
			rewait = nil
			startWait()
		case <-pollTicker.C:
			st, err := a.rt.State(ctx, in.ID)
			switch {
			case err == nil && st.Done():
				return a.exitResult(ctx, in.ID, st), nil
			case errors.Is(err, runtime.ErrContainerNotFound):
				return a.deleted(ctx, in.ID), nil
			case err != nil:
				status = "runtime unavailable: " + err.Error()
			default:
				status = "waiting"
			}
		case <-heartbeat.C:
			activity.RecordHeartbeat(ctx, status)
		case <-workerStop:
			// Hand the watch over at once instead of holding up the worker's
			// shutdown: the retry runs on the node's next worker, and a retry
			// adds nothing to history.
			logger.Info("Worker stopping; the watch continues on the next worker", "container", in.ID.Ref())
			return runtime.Exit{}, temporal.NewApplicationError("worker stopping", replica.ErrTypeWorkerStopping)
		case <-ctx.Done():
			return runtime.Exit{}, ctx.Err()
		}
	}
}

func (a *Activities) exitResult(ctx context.Context, id replica.ID, st runtime.ContainerState) runtime.Exit {
	res := st.Exit
	if st.Status == runtime.StatusFailed && res.ExitedAt.IsZero() {
		// The runtime has no exit of its own to report: this is when it was found.
		res.ExitedAt = time.Now().UTC()
	}
	activity.GetLogger(ctx).Info("Container exited", "container", id.Ref(), "exit_code", res.ExitCode, "cause", res.Cause,
		"signal", res.Signal, "exited_at", res.ExitedAt, "reason", res.Reason)
	return res
}

func (a *Activities) deleted(ctx context.Context, id replica.ID) runtime.Exit {
	return a.exitResult(ctx, id, runtime.Failed(DeletedReason))
}

func (a *Activities) heartbeatInterval(ctx context.Context) time.Duration {
	if a.opts.HeartbeatInterval > 0 {
		return a.opts.HeartbeatInterval
	}
	if timeout := activity.GetInfo(ctx).HeartbeatTimeout; timeout > 0 {
		return max(timeout/3, 100*time.Millisecond)
	}
	return DefaultHeartbeatInterval
}

// StartProgress is EnsureRunning's heartbeat: what the start does, and
// while it pulls the image, the bytes received so far (vigil status shows
// them).
type StartProgress struct {
	Doing     string `json:"doing"`
	PullImage string `json:"pull_image,omitempty"`
	PullBytes int64  `json:"pull_bytes,omitempty"`
}

// starting is EnsureRunning's heartbeat for a start of image.
func (a *Activities) starting(image string) func() any {
	pr, ok := a.rt.(runtime.PullReporter)
	return func() any {
		if ok {
			if n, pulling := pr.PullProgress(image); pulling {
				return StartProgress{Doing: "pulling", PullImage: image, PullBytes: n}
			}
		}
		return StartProgress{Doing: "starting"}
	}
}

// doing is a heartbeat that does not change.
func doing(what string) func() any { return func() any { return what } }

// whileHeartbeating runs fn, heartbeating what it does until it returns, so
// a long pull or stop grace period does not look like a dead worker.
func (a *Activities) whileHeartbeating(ctx context.Context, details func() any, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	ticker := time.NewTicker(a.heartbeatInterval(ctx))
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ticker.C:
			activity.RecordHeartbeat(ctx, details())
		}
	}
}

// Stop stops the container (SIGTERM, then SIGKILL after the grace period)
// and reports its exit. A missing container counts as stopped.
func (a *Activities) Stop(ctx context.Context, in StopInput) (runtime.Exit, error) {
	grace := in.Grace
	if grace <= 0 {
		grace = runtime.DefaultStopGrace
	}
	// A task that exited by itself before the stop is a crash whose report
	// may still be on its way: the result says so (an operator's restart
	// must not swallow its decision).
	before, beforeErr := a.rt.State(ctx, in.ID)
	err := a.whileHeartbeating(ctx, doing("stopping"), func() error { return a.rt.Stop(ctx, in.ID, grace) })
	res := runtime.Exit{ExitCode: runtime.FailedExitCode}
	switch {
	case errors.Is(err, runtime.ErrContainerNotFound):
		// Already gone; its volumes may not be.
	case err != nil:
		return runtime.Exit{}, activityError("stop", in.ID, err)
	case beforeErr == nil && before.Status == runtime.StatusExited:
		res = before.Exit
		res.ExitedBeforeStop = true
	default:
		res = runtime.Exit{}
		if st, err := a.rt.State(ctx, in.ID); err == nil {
			// The code and time only: the keys a Stop result has always had.
			res = runtime.Exit{ExitCode: st.ExitCode, ExitedAt: st.ExitedAt}
		}
	}
	if in.Remove {
		if err := a.rt.Remove(ctx, in.ID); err != nil {
			return runtime.Exit{}, activityError("remove", in.ID, err)
		}
		if in.RemoveVolumes {
			if err := a.rt.RemoveVolumes(ctx, in.ID); err != nil {
				return runtime.Exit{}, activityError("remove volumes", in.ID, err)
			}
		}
	}
	activity.GetLogger(ctx).Info("Container stopped", "container", in.ID.Ref(), "exit_code", res.ExitCode, "removed", in.Remove)
	return res, nil
}

// IsolationEvent is the JSON body POSTed to an isolate webhook.
type IsolationEvent struct {
	Event      string    `json:"event"` // always "ContainerIsolated"
	Ref        string    `json:"ref"`   // "<deployment>/<service>-rep-<replica>"
	Deployment string    `json:"deployment"`
	Service    string    `json:"service"`
	Replica    int       `json:"replica"`
	ExitCode   int       `json:"exit_code"`
	Node       string    `json:"node"`
	Time       time.Time `json:"time"`
}

// Isolate marks a crashed container isolated, keeping its exited task and
// logs for debugging, and calls the webhook. A failed webhook is logged and
// does not fail the activity: isolation must not hinge on a third party.
func (a *Activities) Isolate(ctx context.Context, in IsolateInput) error {
	logger := activity.GetLogger(ctx)
	if err := a.rt.Isolate(ctx, in.ID); err != nil && !errors.Is(err, runtime.ErrContainerNotFound) {
		return activityError("isolate", in.ID, err)
	}
	logger.Info("Container isolated", "container", in.ID.Ref(), "exit_code", in.ExitCode)
	if in.Webhook == "" {
		return nil
	}
	event := IsolationEvent{
		Event: "ContainerIsolated", Ref: in.ID.Ref(), Deployment: in.ID.Deployment, Service: in.ID.Service,
		Replica: in.ID.Replica, ExitCode: in.ExitCode, Node: a.opts.Node, Time: time.Now().UTC(),
	}
	if err := a.postWebhook(ctx, in.Webhook, event); err != nil {
		logger.Warn("Isolate webhook failed", "container", in.ID.Ref(), "error", err)
	}
	return nil
}

func (a *Activities) postWebhook(ctx context.Context, url string, event IsolationEvent) error {
	body, err := json.Marshal(event)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// Logs returns the tail of the container's captured output.
func (a *Activities) Logs(ctx context.Context, in LogsInput) (LogsResult, error) {
	out, err := a.rt.Logs(ctx, in.ID, in.Tail)
	if errors.Is(err, runtime.ErrContainerNotFound) {
		msg := fmt.Sprintf("logs %s: %v", in.ID.Ref(), err)
		return LogsResult{}, temporal.NewNonRetryableApplicationError(msg, replica.ErrTypeContainerNotFound, err)
	}
	if err != nil {
		return LogsResult{}, activityError("logs", in.ID, err)
	}
	return LogsResult{Output: string(out)}, nil
}

// activityError marks a missing image, a spec the node refuses, a host
// port in use (ErrTypePortInUse) and refused registry credentials
// (ErrTypeImagePullUnauthorized) non-retryable; the rest, a stalled pull
// (ErrTypeImagePullStalled) among them, are retried
// by the activity's retry policy (a container that vanished between calls is
// simply created again by the retry).
func activityError(op string, id replica.ID, err error) error {
	if errors.Is(err, runtime.ErrImageNotFound) {
		msg := fmt.Sprintf("%s %s: %v", op, id.Ref(), err)
		return temporal.NewNonRetryableApplicationError(msg, replica.ErrTypeImageNotFound, err)
	}
	var inUse *runtime.PortInUse
	if errors.As(err, &inUse) {
		// The replica shows it as it is: its text begins with its type.
		return temporal.NewNonRetryableApplicationError(inUse.Error(), replica.ErrTypePortInUse, err)
	}
	var pull *runtime.PullFailed
	switch {
	case errors.As(err, &pull) && pull.Kind == runtime.ErrImagePullUnauthorized:
		return temporal.NewNonRetryableApplicationError(pull.Error(), replica.ErrTypeImagePullUnauthorized, err)
	case errors.As(err, &pull) && pull.Kind == runtime.ErrImagePullStalled:
		return temporal.NewApplicationErrorWithCause(pull.Error(), replica.ErrTypeImagePullStalled, err)
	}
	if errors.Is(err, runtime.ErrInvalidSpec) {
		msg := fmt.Sprintf("%s %s: %v", op, id.Ref(), err)
		return temporal.NewNonRetryableApplicationError(msg, replica.ErrTypeBadSpec, err)
	}
	return fmt.Errorf("%s %s: %w", op, id.Ref(), err)
}
