package activities

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The node watch: one long-lived activity per node follows the runtime's
// task events for every container on the node and reports each exit to its
// replica's workflow, so a healthy container costs nothing: no activity, no
// heartbeat. Its own heartbeat only tells operators the node is reachable.
const (
	// DefaultNodeScanInterval is how often the watch compares every
	// container's state with what it reported, in case an event was missed
	// (a runtime restart drops the stream). Scans cost runtime calls only.
	DefaultNodeScanInterval = 10 * time.Second
	// DefaultNodeWatchFor is how long one watch runs before it ends and the
	// node workflow starts the next, so its history stays short.
	DefaultNodeWatchFor = time.Hour
	// DefaultReconcileInterval is how often the watch compares the replicas
	// that should run on the node with the runtime's containers (besides at
	// its start): one visibility query per node each time.
	DefaultReconcileInterval = time.Minute
	// reportConcurrency bounds reports in flight: a storm of exits is
	// reported in parallel, not one after another.
	reportConcurrency = 16
)

// ExitReport is the exit signal's payload: one exit of a container, as the
// node watch reports it to the replica's workflow. The runtime's own exit
// code and time identify the exit (the workflow acts on each exit time
// once).
type ExitReport struct {
	ID replica.ID `json:"id"`
	// Node is the node whose watch reported it (since v0.3.0): a replica
	// moved to another node ignores reports from its old one.
	Node string `json:"node,omitempty"`
	runtime.Exit
	// OOMKilled repeats Cause == OOMKilled: the key stays in the payload and
	// in carried state, whose JSON never changes.
	OOMKilled bool `json:"oom_killed,omitempty"`
}

// Reporter delivers exits to the replicas' workflows (the worker signals
// them). Takeover is true for exits found when a watch starts: the worker
// that watched before may be dead, with the replica's workflow still cached
// on it, so the report must not wait for that worker.
type Reporter interface {
	ReportExit(ctx context.Context, r ExitReport, takeover bool) error
}

// Roster is Temporal's record of what should run on a node. The replicas
// themselves keep it (each publishes its node and state as search
// attributes), so it is right after a reboot, a wiped containerd or a
// rebuilt host, which the node's own memory would not be, and it costs the
// replicas no message.
type Roster interface {
	// Running lists the replicas on node whose state is Running: each should
	// have a live task there.
	Running(ctx context.Context, node string) ([]replica.ID, error)
	// Owns reports whether a replica owns the container id on node: its
	// supervision runs there, or ended with the container completed.
	Owns(ctx context.Context, id replica.ID, node string) (bool, error)
	// PendingStops lists the stops unsupervise --stop could not do on node
	// because no worker took them: each replica's supervision has ended, and
	// its last run keeps the stop (memo replica.MemoStopPending). With an
	// error, the stops it could tell are still listed.
	PendingStops(ctx context.Context, node string) ([]StopInput, error)
	// MovedTo is the node the replica id is supervised on now when that is
	// not node (it moved away while node was lost or drained), else "".
	MovedTo(ctx context.Context, id replica.ID, node string) (string, error)
}

// WatchNodeInput starts one node watch.
type WatchNodeInput struct {
	Node string `json:"node"`
	// Claim is the claim that started this watch (for logs and the Web UI).
	Claim string `json:"claim,omitempty"`
	// Instance is the claimant worker process's instance (since v0.3.0):
	// the watch runs on that worker only.
	Instance string `json:"instance,omitempty"`
	// For is how long the watch runs before it returns (default DefaultNodeWatchFor).
	For time.Duration `json:"for,omitempty"`
	// ScanInterval is the fallback comparison of every container's state
	// (default DefaultNodeScanInterval).
	ScanInterval time.Duration `json:"scan_interval,omitempty"`
	// HeartbeatInterval is how often the watch tells the server the node is
	// alive (default: a third of the heartbeat timeout).
	HeartbeatInterval time.Duration `json:"heartbeat_interval,omitempty"`
	// ReconcileInterval is how often the watch reconciles (default
	// DefaultReconcileInterval); it also does when it starts.
	ReconcileInterval time.Duration `json:"reconcile_interval,omitempty"`
	// Lease: the heartbeats renew the node's lease (since v0.3.0; see
	// lease.go), sent at once and then every HeartbeatInterval by a worker
	// that can (Options.Renew), else as before.
	Lease bool `json:"lease,omitempty"`
}

// WatchNode watches every container of the node until in.For has passed
// (it then returns nil), the worker stops, or the node workflow cancels it
// (a new worker claimed the node). When it starts, it reports every exit it
// finds that no watch delivered (runtime.ContainerInfo.ReportedAt): exits
// that happened while no watch ran reach their replicas, and a restarted
// worker does not signal every parked replica again. With a Roster it also
// reconciles, then and every in.ReconcileInterval: a replica that should
// run here and has no container is reported Lost.
func (a *Activities) WatchNode(ctx context.Context, in WatchNodeInput) error {
	if a.opts.Reporter == nil {
		return temporal.NewNonRetryableApplicationError("this worker cannot report exits (no Reporter)", replica.ErrTypeBadSpec, nil)
	}
	if in.Instance != "" && a.opts.Instance != "" && in.Instance != a.opts.Instance {
		// An older claim's watch retried here, or the current claim's watch
		// reaching this worker after another claimed the node: either way
		// the worker checks whose node it is (OnWatchEnded).
		a.watchEnded()
		return temporal.NewNonRetryableApplicationError("this watch belongs to worker instance "+in.Instance+", not to this one ("+a.opts.Instance+")", replica.ErrTypeNotNodeOwner, nil)
	}
	logger := activity.GetLogger(ctx)
	w := &nodeWatch{a: a, node: in.Node, reported: map[replica.ID]time.Time{}, oom: map[replica.ID]bool{},
		sem: make(chan struct{}, reportConcurrency), reconcileEvery: in.ReconcileInterval}
	if w.reconcileEvery <= 0 {
		w.reconcileEvery = DefaultReconcileInterval
	}
	w.status.Store("starting")
	// Liveness and startup probes of the running containers run here too,
	// one prober per task, following the scans.
	w.probes = NewProbeSet(a, logger)
	defer w.probes.Stop()
	scanEvery := in.ScanInterval
	if scanEvery <= 0 {
		scanEvery = DefaultNodeScanInterval
	}
	runFor := in.For
	if runFor <= 0 {
		runFor = DefaultNodeWatchFor
	}
	heartbeatEvery := in.HeartbeatInterval
	if heartbeatEvery <= 0 {
		heartbeatEvery = a.heartbeatInterval(ctx)
	}
	logger.Info("Node watch started", "node", in.Node, "claim", in.Claim, "attempt", activity.GetInfo(ctx).Attempt)
	defer a.setWatched(0)
	if in.Lease && a.opts.Renew != nil {
		var endWatch context.CancelFunc
		ctx, endWatch = context.WithCancel(ctx)
		r := &leaseRenewal{renew: a.opts.Renew, dir: a.opts.LeaseDir, node: in.Node, every: heartbeatEvery,
			token: activity.GetInfo(ctx).TaskToken, end: endWatch, status: func() any { return w.status.Load() }, log: a.leases}
		renewed := make(chan struct{})
		go func() { defer close(renewed); r.run(ctx) }()
		// No renewal outlives the watch: a later one would renew a lease
		// the node no longer holds through this watch.
		defer func() { endWatch(); <-renewed }()
	}

	end := time.NewTimer(runFor)
	defer end.Stop()
	scan := time.NewTicker(scanEvery)
	defer scan.Stop()
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	workerStop := activity.GetWorkerStopChannel(ctx)
	takeover := true
	var soon <-chan time.Time // a scan soon after a task started
	w.stopPending(ctx)
	for {
		subCtx, cancel := context.WithCancel(ctx)
		events, errs := a.rt.Events(subCtx)
		// After subscribing: an exit between the scan and the subscription
		// would otherwise be missed.
		w.scan(ctx, takeover)
		takeover = false
		resubscribe := false
		for !resubscribe {
			select {
			case ev, ok := <-events:
				if !ok {
					err := <-errs
					if ctx.Err() != nil {
						// Cancelled (another claim): as below, whichever case
						// the select took.
						cancel()
						w.wait()
						a.watchEnded()
						return ctx.Err()
					}
					logger.Warn("Runtime event stream ended; subscribing again", "node", in.Node, "error", err)
					w.status.Store("runtime unavailable")
					resubscribe = true
					continue
				}
				w.event(ctx, ev)
				if ev.Kind == runtime.TaskStarted && soon == nil {
					// Probe a new task from its start, not from the next scan.
					soon = time.After(200 * time.Millisecond)
				}
			case <-soon:
				soon = nil
				w.scan(ctx, false)
			case <-scan.C:
				w.scan(ctx, false)
			case <-heartbeat.C:
				if !in.Lease || a.opts.Renew == nil {
					activity.RecordHeartbeat(ctx, w.status.Load())
				}
			case <-end.C:
				cancel()
				w.wait()
				a.watchEnded()
				return nil
			case <-workerStop:
				cancel()
				w.wait()
				logger.Info("Worker stopping; the node watch continues on the next worker", "node", in.Node)
				return temporal.NewApplicationError("worker stopping", replica.ErrTypeWorkerStopping)
			case <-ctx.Done():
				cancel()
				w.wait()
				a.watchEnded()
				return ctx.Err()
			}
		}
		cancel()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			w.wait()
			a.watchEnded()
			return ctx.Err()
		}
	}
}

// setWatched records the running containers the watch follows, in the
// Watched gauge too.
func (a *Activities) setWatched(n int64) {
	for d := n - a.watched.Swap(n); d != 0; {
		if d > 0 {
			a.opts.Watched.Inc()
			d--
		} else {
			a.opts.Watched.Dec()
			d++
		}
	}
}

// WatchedContainers is the number of running containers a's node watch
// followed at its last scan (0 when no watch runs on this worker). A
// function, not a method: every exported method of Activities is registered
// as an activity.
func WatchedContainers(a *Activities) int { return int(a.watched.Load()) }

func (a *Activities) watchEnded() {
	if a.opts.OnWatchEnded != nil {
		a.opts.OnWatchEnded()
	}
}

// nodeWatch is one watch's memory: the last exit reported per container, so
// each exit is reported once per watch, and the OOM kills seen.
type nodeWatch struct {
	a        *Activities
	node     string
	mu       sync.Mutex
	reported map[replica.ID]time.Time
	oom      map[replica.ID]bool
	probes   *ProbeSet
	// noTask holds the containers the last scan found without a task.
	noTask   map[replica.ID]time.Time
	inflight sync.WaitGroup
	sem      chan struct{}
	status   atomic.Value
	// reconcileEvery and reconciledAt pace reconcile (zero: not yet).
	reconcileEvery time.Duration
	reconciledAt   time.Time
}

func (w *nodeWatch) event(ctx context.Context, ev runtime.TaskEvent) {
	switch ev.Kind {
	case runtime.TaskOOM:
		w.mu.Lock()
		w.oom[ev.ID] = true
		w.mu.Unlock()
	case runtime.TaskExited:
		w.probes.Exited(ev.ID)
		w.report(ctx, ev.ID, ev.Exit, "", false)
	}
}

// scan reports every exit the runtime holds that this watch has not
// reported. A container without a task (two scans in a row) counts as
// failed at the time its last task was started: a replica that started a
// task since ignores it.
func (w *nodeWatch) scan(ctx context.Context, takeover bool) {
	expected, reconciling := w.expected(ctx)
	listedAt := time.Now()
	list, err := w.a.rt.List(ctx)
	if err != nil {
		w.status.Store("runtime unavailable: " + err.Error())
		activity.GetLogger(ctx).Warn("Node scan failed", "error", err)
		return
	}
	if reconciling {
		w.reconcile(ctx, expected, list, listedAt, takeover)
	}
	running := 0
	seen := make(map[replica.ID]bool, len(list))
	noTask := map[replica.ID]time.Time{}
	for _, c := range list {
		seen[c.ID] = true
		switch {
		case c.State.Status == runtime.StatusExited && c.ReportedAt.Equal(c.State.ExitedAt):
			// Delivered by an earlier watch. Equal, not "not after": an exit
			// dated earlier (the node's clock stepped back) is a new one.
		case c.State.Status == runtime.StatusExited:
			w.report(ctx, c.ID, runtime.Exit{ExitCode: c.State.ExitCode, ExitedAt: c.State.ExitedAt, PID: c.PID}, "", takeover)
		case c.State.Status == runtime.StatusFailed && !c.StartedAt.IsZero():
			// Only when a second scan still finds it so: a runtime that has
			// just restarted may not list a live task yet. The task is lost:
			// the report names it by its start (the runtime kept no exit
			// time, so that dates it too), which an adopted task's replica
			// knows as its own.
			if w.noTask[c.ID].Equal(c.StartedAt) {
				w.report(ctx, c.ID, runtime.Exit{ExitCode: runtime.FailedExitCode, ExitedAt: c.StartedAt, StartedAt: c.StartedAt, Reason: c.State.Reason}, runtime.ExitLost, false)
			}
			noTask[c.ID] = c.StartedAt
		case c.State.Status == runtime.StatusRunning:
			running++
		}
	}
	w.mu.Lock()
	for id := range w.reported {
		if !seen[id] {
			delete(w.reported, id)
			delete(w.oom, id)
		}
	}
	w.mu.Unlock()
	w.noTask = noTask
	w.probes.Sync(ctx, list)
	w.a.setWatched(int64(running))
	w.status.Store("watching")
}

// expected asks the roster, when a reconciliation is due, which replicas
// should have a live task on the node; false if none is due or the answer
// did not come (asked again a reconcile interval later: a lasting error,
// e.g. VigilNode not registered, is logged once a minute, not every scan).
func (w *nodeWatch) expected(ctx context.Context) ([]replica.ID, bool) {
	r := w.a.opts.Roster
	if r == nil || (!w.reconciledAt.IsZero() && time.Since(w.reconciledAt) < w.reconcileEvery) {
		return nil, false
	}
	w.reconciledAt = time.Now()
	ids, err := r.Running(ctx, w.node)
	if err != nil {
		activity.GetLogger(ctx).Warn("Reconciliation skipped: the replicas of the node are not known", "node", w.node, "error", err)
		return nil, false
	}
	return ids, true
}

// reconcile reports as Lost each replica that should run here and has no
// container: removed by hand while no watch ran, or lost with containerd's
// state (a replica whose container has no task is the scan's). The roster
// was read before the list, and the report is dated just before the list:
// a replica that started its task since has a later WatchAfter and ignores
// it, and a replica that acted on it already has a later LastExitAt.
func (w *nodeWatch) reconcile(ctx context.Context, expected []replica.ID, list []runtime.ContainerInfo, listedAt time.Time, takeover bool) {
	have := make(map[replica.ID]bool, len(list))
	for _, c := range list {
		have[c.ID] = true
	}
	want := make(map[replica.ID]bool, len(expected))
	for _, id := range expected {
		want[id] = true
	}
	w.removeMoved(ctx, list, want)
	for _, id := range expected {
		if !have[id] {
			w.report(ctx, id, runtime.Exit{ExitCode: runtime.FailedExitCode, ExitedAt: listedAt,
				Reason: "container not found on node " + w.node}, runtime.ExitLost, takeover)
		}
	}
}

// report delivers the exit of the container id unless this watch already
// did, in the background; a failed report is tried again by the next scan.
// The exit's code, time, PID and (code -1) reason are the runtime's; its
// cause is worked out here: marked is what the watch knows beyond the code
// (runtime.ExitLost, or ""; see runtime.Exit.Classify), an OOM kill seen wins.
func (w *nodeWatch) report(ctx context.Context, id replica.ID, exit runtime.Exit, marked runtime.ExitReason, takeover bool) {
	exit.ExitedAt = exit.ExitedAt.UTC()
	w.mu.Lock()
	if last, ok := w.reported[id]; ok && !exit.ExitedAt.After(last) {
		w.mu.Unlock()
		return
	}
	w.reported[id] = exit.ExitedAt
	if w.oom[id] {
		marked = runtime.ExitOOMKilled
	}
	delete(w.oom, id)
	w.mu.Unlock()
	r := ExitReport{ID: id, Node: w.node, Exit: exit.Classify(marked)}
	lost := marked == runtime.ExitLost // no task to record it on

	w.inflight.Add(1)
	w.sem <- struct{}{}
	go func() {
		defer w.inflight.Done()
		defer func() { <-w.sem }()
		if !w.explain(ctx, &r.Exit, id) {
			activity.GetLogger(ctx).Info("Exit not reported: not the container's last task", "container", r.ID.Ref(), "exit_code", r.ExitCode, "exited_at", r.ExitedAt, "pid", r.PID)
			return
		}
		r.OOMKilled = r.Cause == runtime.ExitOOMKilled
		err := w.a.opts.Reporter.ReportExit(ctx, r, takeover)
		log := activity.GetLogger(ctx)
		if err != nil {
			log.Warn("Exit not reported; the next scan tries again", "container", r.ID.Ref(), "exited_at", r.ExitedAt, "error", err)
			w.mu.Lock()
			if w.reported[r.ID].Equal(r.ExitedAt) {
				delete(w.reported, r.ID)
			}
			w.mu.Unlock()
			return
		}
		log.Info("Exit reported", "container", r.ID.Ref(), "exit_code", r.ExitCode, "exited_at", r.ExitedAt, "oom_killed", r.OOMKilled)
		if lost {
			return
		}
		// The signal is in the replica's history: later watches skip this
		// exit. Unrecorded, it is reported again, which the replica ignores.
		if err := w.a.rt.MarkReported(ctx, r.ID, r.ExitedAt); err != nil {
			log.Warn("Reported exit not recorded on the container; a later watch reports it again", "container", r.ID.Ref(), "exited_at", r.ExitedAt, "error", err)
		}
	}()
}

// explain takes the runtime's own account of the exit when it still has
// it: why the task ended (e.g. stopped by a failing liveness probe, or OOM
// killed: the runtime's labels say so) and when it had started.
//
// It reports false for an exit that is not of the container's last task:
// a task runs again (its replica already started it, having learned of the
// exit otherwise), or containerd reported an exit without a process (PID 0,
// code 255: the cleanup of a shim that died with containerd) while the
// container's task exited otherwise.
func (w *nodeWatch) explain(ctx context.Context, r *runtime.Exit, id replica.ID) bool {
	st, err := w.a.rt.State(ctx, id)
	if err != nil {
		return true
	}
	if st.Status == runtime.StatusRunning || st.Status == runtime.StatusInitializing {
		return false
	}
	if st.Status != runtime.StatusExited || !st.ExitedAt.Equal(r.ExitedAt) {
		return r.PID != 0 || st.Status != runtime.StatusExited
	}
	r.StartedAt = st.StartedAt
	// The runtime's labels may know more (a probe's stop, an OOM kill the
	// stream delivered late); an OOM kill this watch saw stays one.
	if st.Cause != "" && r.Cause != runtime.ExitOOMKilled {
		r.Cause, r.Signal = st.Cause, st.Signal
	}
	if w.a.fenced(*r, st.Fence) {
		r.Cause, r.Signal = runtime.ExitFenced, ""
	}
	return true
}

// stopPending does, once when the watch starts, the stops unsupervise
// --stop could not do while no worker served the node: each such container
// is stopped and removed (its volumes deleted if the unsupervise asked; its
// log kept), in the background like a report. Nothing else is removed: an
// orphan without a pending stop stays for `vigil node orphans`. A stop done
// leaves no container, so the next watch finds nothing to do; a failed one
// is tried again by the next watch.
func (w *nodeWatch) stopPending(ctx context.Context) {
	r := w.a.opts.Roster
	if r == nil {
		return
	}
	log := activity.GetLogger(ctx)
	if list, err := w.a.rt.List(ctx); err == nil {
		w.removeMoved(ctx, list, nil)
	}
	stops, err := r.PendingStops(ctx, w.node)
	if err != nil {
		log.Warn("Pending stops not (all) known; the next watch asks again", "node", w.node, "error", err)
	}
	if len(stops) == 0 {
		return
	}
	list, err := w.a.rt.List(ctx)
	if err != nil {
		log.Warn("Pending stops not done: the containers cannot be listed", "node", w.node, "error", err)
		return
	}
	have := make(map[replica.ID]bool, len(list))
	for _, c := range list {
		have[c.ID] = true
	}
	for _, in := range stops {
		if !have[in.ID] {
			continue
		}
		w.inflight.Add(1)
		w.sem <- struct{}{}
		go func() {
			defer w.inflight.Done()
			defer func() { <-w.sem }()
			if _, err := w.a.Stop(ctx, in); err != nil {
				log.Warn("Pending stop failed; the next watch tries again", "container", in.ID.Ref(), "error", err)
				return
			}
			log.Info("Pending stop done: the container of an unsupervised replica is stopped and removed", "container", in.ID.Ref(),
				"volumes_deleted", in.RemoveVolumes, "node", w.node)
		}()
	}
}

// movedGrace is the stop grace of a container whose replica moved away:
// its replacement runs on another node, so it goes at once.
const movedGrace = 100 * time.Millisecond

// removeMoved stops and removes the containers in list whose replicas now
// live on another node (moved while this node was lost or drained), so
// they never run here again: when a watch starts, before its first scan,
// and at each reconciliation. Only containers not expected here are asked
// about.
func (w *nodeWatch) removeMoved(ctx context.Context, list []runtime.ContainerInfo, expected map[replica.ID]bool) {
	r := w.a.opts.Roster
	if r == nil {
		return
	}
	log := activity.GetLogger(ctx)
	for _, c := range list {
		if expected[c.ID] {
			continue
		}
		to, err := r.MovedTo(ctx, c.ID, w.node)
		if err != nil {
			log.Warn("Not known whether the replica moved; asked again at the next reconciliation", "container", c.ID.Ref(), "error", err)
			continue
		}
		if to == "" {
			continue
		}
		if _, err := w.a.Stop(ctx, StopInput{ID: c.ID, Grace: movedGrace, Remove: true}); err != nil {
			log.Warn("The container of a replica that moved away was not removed; tried again later", "container", c.ID.Ref(), "now_on", to, "error", err)
			continue
		}
		log.Info("Removed the container of a replica that moved away", "container", c.ID.Ref(), "now_on", to, "node", w.node)
	}
}

// wait waits for the reports in flight.
func (w *nodeWatch) wait() { w.inflight.Wait() }
