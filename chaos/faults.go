package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"go.temporal.io/api/serviceerror"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// faultKind is one kind of injected failure.
type faultKind string

const (
	faultWorkerKill        faultKind = "worker-sigkill"
	faultServerRestart     faultKind = "devserver-restart"
	faultContainerdRestart faultKind = "containerd-restart"
	faultTaskKill          faultKind = "task-sigkill"
	faultContainerDelete   faultKind = "container-delete"
	// faultContainerdCrash kills containerd with SIGKILL and keeps it down a
	// few seconds, so start attempts fail and the workflow retries them.
	faultContainerdCrash faultKind = "containerd-sigkill"
	// faultKillDuringRestart SIGKILLs a task, then the worker a moment later,
	// while its EnsureRunning for the restart is likely under way.
	faultKillDuringRestart faultKind = "task+worker-sigkill"
	// faultNodeWatchKill terminates the node's watch workflow (vigil-node/<node>):
	// the worker notices at the watch's next heartbeat and claims the node
	// again; exits meanwhile are found by the new watch.
	faultNodeWatchKill faultKind = "node-watch-kill"
	// faultTwoWorkers starts a second worker for the same node (a second
	// instance of its identity) while a task is killed: the node refuses it
	// (it exits 1) and the first keeps the node, or, right after the node
	// workflow was terminated, one of the two gives way to the other.
	faultTwoWorkers faultKind = "two-workers"
	// faultDeleteWhileDown SIGKILLs the worker, deletes one to three running
	// containers while no worker runs, and starts a worker again: the node's
	// reconciliation must report them Lost.
	faultDeleteWhileDown faultKind = "delete-while-down"
	// faultReboot is a host reboot: the worker, containerd, every shim and
	// container process SIGKILLed, containerd's state directory wiped
	// (Daemon.Crash), then containerd and a worker started again.
	faultReboot faultKind = "host-reboot"
	// faultWorkerLoop kills the worker again soon after each start, a few times.
	faultWorkerLoop faultKind = "worker-restart-loop"
	// faultCorruptSignal sends an undecodable payload to a replica's exit
	// signal, the node workflow's claim and the deployment's service-shutdown.
	faultCorruptSignal faultKind = "corrupt-signal"
	// faultOtherIdentity starts a second worker for the node with another
	// node identity (its own state dir: another host of the same name): it
	// must be refused (exit 1) and the first keeps the node (or, as for
	// two-workers, one of the two gives way).
	faultOtherIdentity faultKind = "other-identity-worker"
	// faultPartition cuts node-b (a second node, its worker behind a
	// proxy) off from the server while a replica placed over both nodes
	// runs there, until the replica runs on the soak's node, with the
	// default lost_after: its copy on node-b must be fenced first, and a
	// checker reading both containerds every 100 ms must never see both.
	faultPartition faultKind = "node-partition"
)

// allFaults in a fixed order; the first faults of a soak are a seeded
// permutation of them, so even a short soak injects every kind.
var allFaults = []faultKind{faultWorkerKill, faultServerRestart, faultContainerdRestart, faultTaskKill, faultContainerDelete,
	faultContainerdCrash, faultKillDuringRestart, faultNodeWatchKill, faultTwoWorkers,
	faultDeleteWhileDown, faultReboot, faultWorkerLoop, faultCorruptSignal, faultOtherIdentity, faultPartition}

// firstShuffled is how many of allFaults open a soak in a seeded order; the
// faults added later follow them in a fixed order, so a seed replays the
// same opening it did before they existed.
const firstShuffled = 7

// faultWeights: the cheap container faults come more often than the daemon ones.
var faultWeights = map[faultKind]int{
	faultWorkerKill: 2, faultServerRestart: 1, faultContainerdRestart: 1, faultTaskKill: 4, faultContainerDelete: 2,
	faultContainerdCrash: 1, faultKillDuringRestart: 2, faultNodeWatchKill: 1, faultTwoWorkers: 1,
	faultDeleteWhileDown: 1, faultReboot: 1, faultWorkerLoop: 1, faultCorruptSignal: 1, faultOtherIdentity: 1,
	faultPartition: 1,
}

// fault is one injected failure, as logged.
type fault struct {
	N      int
	At     time.Time
	Kind   faultKind
	Target string // container, or the process restarted
	// Hit are the containers whose task the fault killed (when they are
	// not just Target).
	Hit  []string
	Took time.Duration
	Err  string
}

func (f fault) String() string {
	s := fmt.Sprintf("#%d %s %-21s %-28s took %s", f.N, f.At.UTC().Format("15:04:05.000"), f.Kind, f.Target, f.Took.Round(time.Millisecond))
	if f.Err != "" {
		s += " error: " + f.Err
	}
	return s
}

// driver injects faults at seeded random times.
type driver struct {
	st *stack.Stack
	// b is node-b, the partition fault's node (nil when it cannot be picked).
	b        *stack.Node
	rng      *rand.Rand
	replicas []soakReplica
	// MinGap and MaxGap bound the pause between faults.
	MinGap, MaxGap time.Duration
	MaxFaults      int
	// Kinds, when set, are the only faults injected (--faults), in a
	// seeded order first, then picked by weight.
	Kinds []faultKind
	logf  func(string, ...any)

	// serverDown is set when the dev server could not be started again.
	serverDown bool

	mu  sync.Mutex
	log []fault
}

// run injects faults until the deadline or MaxFaults were injected. A fault
// under way at the deadline is carried out to the end (ctx ends it only when
// the soak is cancelled), so no daemon is left down.
func (d *driver) run(ctx context.Context, deadline time.Time) {
	order, shuffled := allFaults, firstShuffled
	if d.Kinds != nil {
		order, shuffled = d.Kinds, len(d.Kinds)
	}
	order = append([]faultKind(nil), order...)
	d.rng.Shuffle(shuffled, func(i, j int) { order[i], order[j] = order[j], order[i] })
	for n := 1; n <= d.MaxFaults; n++ {
		gap := d.MinGap + time.Duration(d.rng.Int64N(int64(d.MaxGap-d.MinGap)+1))
		if time.Now().Add(gap).After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		kind := d.pick()
		if n <= len(order) {
			kind = order[n-1]
		}
		f := d.inject(ctx, n, kind)
		d.mu.Lock()
		d.log = append(d.log, f)
		d.mu.Unlock()
		d.logf("fault %s", f)
	}
}

func (d *driver) pick() faultKind {
	kinds := allFaults
	if d.Kinds != nil {
		kinds = d.Kinds
	}
	total := 0
	for _, k := range kinds {
		total += faultWeights[k]
	}
	n := d.rng.IntN(total)
	for _, k := range kinds {
		if n -= faultWeights[k]; n < 0 {
			return k
		}
	}
	return kinds[0]
}

// parseFaults reads --faults: fault kinds separated by commas.
func parseFaults(list []string) ([]faultKind, error) {
	var out []faultKind
	for _, s := range list {
		k := faultKind(strings.TrimSpace(s))
		if _, ok := faultWeights[k]; !ok {
			return nil, fmt.Errorf("--faults: unknown fault %q; the faults are %v", s, allFaults)
		}
		out = append(out, k)
	}
	return out, nil
}

// hits counts the faults that killed each container's task, and marks the
// containers hit by a fault that failed half-way (count unknown).
func hits(faults []fault) (killed map[string]int, uncertain map[string]bool) {
	killed, uncertain = map[string]int{}, map[string]bool{}
	for _, f := range faults {
		hit := f.Hit
		switch f.Kind {
		case faultTaskKill, faultContainerDelete, faultKillDuringRestart, faultTwoWorkers, faultOtherIdentity:
			hit = []string{f.Target}
		}
		for _, c := range hit {
			if f.Err != "" {
				uncertain[c] = true
			} else {
				killed[c]++
			}
		}
	}
	return killed, uncertain
}

// reboots are the times of the host reboots.
func reboots(faults []fault) []time.Time {
	var out []time.Time
	for _, f := range faults {
		if f.Kind == faultReboot {
			out = append(out, f.At)
		}
	}
	return out
}

func (d *driver) faults() []fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]fault(nil), d.log...)
}

// inject carries out one fault. Pauses inside it are seeded too.
func (d *driver) inject(ctx context.Context, n int, kind faultKind) fault {
	f := fault{N: n, At: time.Now(), Kind: kind}
	var err error
	switch kind {
	case faultWorkerKill:
		f.Target = fmt.Sprintf("vigil-worker pid %d", d.st.WorkerPID())
		d.st.KillWorker()
		time.Sleep(d.pause(500*time.Millisecond, 3*time.Second))
		err = d.st.StartWorker()
	case faultServerRestart:
		f.Target = "temporal dev server " + d.st.HostPort
		if err = d.st.StopServer(); err == nil {
			time.Sleep(d.pause(time.Second, 4*time.Second))
			err = d.startServer(ctx)
			d.serverDown = err != nil
		}
	case faultContainerdRestart:
		f.Target = fmt.Sprintf("containerd pid %d", d.st.Containerd.PID())
		err = d.st.Containerd.Restart(ctx)
	case faultContainerdCrash:
		f.Target = fmt.Sprintf("containerd pid %d", d.st.Containerd.PID())
		if err = d.st.Containerd.Kill(); err == nil {
			time.Sleep(d.pause(time.Second, 6*time.Second))
			err = d.st.Containerd.Start(ctx)
		}
	case faultTaskKill, faultContainerDelete:
		f.Target, err = d.hitContainer(ctx, kind)
	case faultKillDuringRestart:
		if f.Target, err = d.hitContainer(ctx, faultTaskKill); err == nil {
			time.Sleep(d.pause(50*time.Millisecond, 700*time.Millisecond))
			d.st.KillWorker()
			time.Sleep(d.pause(500*time.Millisecond, 2*time.Second))
			err = d.st.StartWorker()
		}
	case faultNodeWatchKill:
		f.Target = replica.NodeWorkflowID(d.st.Node)
		err = d.killNodeWatch(ctx)
	case faultTwoWorkers:
		f.Target, err = d.secondWorker(ctx)
	case faultOtherIdentity:
		// Another state dir is another node identity: another host.
		f.Target, err = d.secondWorker(ctx, "--state-dir", filepath.Join(d.st.Dir, fmt.Sprintf("other-host-%d", n)))
	case faultDeleteWhileDown:
		f.Target = fmt.Sprintf("vigil-worker pid %d", d.st.WorkerPID())
		d.st.KillWorker()
		for range 1 + d.rng.IntN(3) {
			c, herr := d.hitContainer(ctx, faultContainerDelete)
			if herr != nil || c == noneRunning {
				err = herr
				break
			}
			f.Hit = append(f.Hit, c)
		}
		f.Target += " down; deleted " + strings.Join(f.Hit, ",")
		time.Sleep(d.pause(500*time.Millisecond, 3*time.Second))
		err = errors.Join(err, d.st.StartWorker())
	case faultReboot:
		f.Target = fmt.Sprintf("host (worker pid %d, containerd pid %d)", d.st.WorkerPID(), d.st.Containerd.PID())
		d.st.KillWorker()
		if f.Hit, err = d.runningTasks(ctx); err == nil {
			if err = d.st.Containerd.Crash(); err == nil {
				time.Sleep(d.pause(time.Second, 5*time.Second))
				if err = d.st.Containerd.Start(ctx); err == nil {
					err = d.st.StartWorker()
				}
			}
		}
	case faultWorkerLoop:
		times := 2 + d.rng.IntN(3)
		f.Target = fmt.Sprintf("vigil-worker killed %d times after its start", times)
		for range times {
			d.st.KillWorker()
			time.Sleep(d.pause(200*time.Millisecond, time.Second))
			if err = d.st.StartWorker(); err != nil {
				break
			}
			time.Sleep(d.pause(500*time.Millisecond, 4*time.Second))
		}
		if err == nil {
			d.st.KillWorker()
			err = d.st.StartWorker()
		}
	case faultCorruptSignal:
		f.Target, err = d.corruptSignals(ctx)
	case faultPartition:
		f.Target, err = d.partition(ctx, n)
	}
	f.Took = time.Since(f.At)
	if err != nil {
		f.Err = err.Error()
	}
	return f
}

// oneWorkerLeft waits until one of two workers of the node has given way
// (exit 1): normally the second, refused; the first when it had to claim
// the node again at the same time (its node workflow was just terminated)
// and the second's claim came first. The one left is the stack's worker.
func (d *driver) oneWorkerLeft() error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if code, exited := d.st.SecondWorkerExit(500 * time.Millisecond); exited {
			if code != 1 {
				return fmt.Errorf("the second worker of the node exited %d, want 1 (refused)", code)
			}
			return nil
		}
		if code, exited := d.st.WorkerExit(0); exited {
			d.st.PromoteSecondWorker()
			if code != 1 {
				return fmt.Errorf("the first worker of the node exited %d, want 1 (taken over)", code)
			}
			return nil
		}
	}
	d.st.KillSecondWorker()
	return errors.New("two workers of the node ran for 30 s: neither was refused")
}

// secondWorker starts a second worker for the node (extra: its flags) while
// a task is killed; one of the two must give way (oneWorkerLeft).
func (d *driver) secondWorker(ctx context.Context, extra ...string) (string, error) {
	// Only a node its worker holds refuses: after a node-watch-kill the
	// first claim of the new node workflow wins, whoever makes it.
	if err := d.waitHeld(ctx); err != nil {
		return "", err
	}
	err := d.st.StartSecondWorker(extra...)
	if err != nil {
		return "", err
	}
	time.Sleep(d.pause(time.Second, 3*time.Second))
	target, err := d.hitContainer(ctx, faultTaskKill)
	return target, errors.Join(err, d.oneWorkerLeft())
}

// waitHeld waits until the node's last claim is the stack worker's.
func (d *driver) waitHeld(ctx context.Context) error {
	c, err := d.st.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		var v workflows.NodeView
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.QueryWorkflow(qctx, replica.NodeWorkflowID(d.st.Node), "", replica.QueryNode)
		if err == nil {
			err = resp.Get(&v)
		}
		cancel()
		pid := fmt.Sprintf("/%d", d.st.WorkerPID())
		if err == nil && v.LastClaim != nil && strings.HasSuffix(v.LastClaim.Worker, pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node is not held by its worker (pid %d) after a minute: %v", d.st.WorkerPID(), err)
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

// corrupt is a signal payload none of Vigil's signals decodes.
const corrupt = "chaos: not a payload"

// corruptSignals sends corrupt payloads to a random replica's exit signal,
// the node workflow's claim signal and the deployment's service-shutdown
// signal; each must be skipped, never wedge its workflow's loop.
func (d *driver) corruptSignals(ctx context.Context) (string, error) {
	c, err := d.st.Client()
	if err != nil {
		return "", err
	}
	defer c.Close()
	r := d.replicas[d.rng.IntN(len(d.replicas))]
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var errs []error
	for _, s := range []struct{ wid, name string }{
		{r.ID.WorkflowID(), replica.SignalExit},
		{replica.NodeWorkflowID(d.st.Node), replica.SignalClaim},
		{replica.DeploymentWorkflowID(deploymentName), replica.SignalServiceShutdown},
	} {
		err := c.SignalWorkflow(sctx, s.wid, "", s.name, corrupt)
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			err = nil // a Completed replica's workflow has ended
		}
		errs = append(errs, err)
	}
	return r.ID.Ref() + ", node, deployment", errors.Join(errs...)
}

// runningTasks lists the Vigil containers whose task runs.
func (d *driver) runningTasks(ctx context.Context) ([]string, error) {
	client, err := containerd.New(d.st.Containerd.Address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, d.st.Containerd.Namespace)
	resp, err := client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range resp.GetTasks() {
		if t.GetStatus() == task.Status_RUNNING {
			out = append(out, t.GetID())
		}
	}
	return out, nil
}

func (d *driver) pause(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(d.rng.Int64N(int64(hi-lo)+1))
}

// killNodeWatch terminates the node's watch workflow, as an operator's
// mistake or a lost history would.
func (d *driver) killNodeWatch(ctx context.Context) error {
	c, err := d.st.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.TerminateWorkflow(ctx, replica.NodeWorkflowID(d.st.Node), "", "chaos: node watch killed")
}

// startServer starts the dev server again on the same database, retrying
// while the old one's port is still being released.
func (d *driver) startServer(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err = d.st.StartServer(sctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return err
}

// hitContainer SIGKILLs the task of, or deletes, a random container whose
// task is running, as something outside Vigil would.
func (d *driver) hitContainer(ctx context.Context, kind faultKind) (string, error) {
	client, err := containerd.New(d.st.Containerd.Address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return "", err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, d.st.Containerd.Namespace)
	var candidates []containerd.Task
	var names []string
	for _, r := range d.replicas {
		if kind == faultContainerDelete && !r.Behaviour.Deletable {
			continue
		}
		c, err := client.LoadContainer(ctx, r.Container)
		if err != nil {
			continue
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		if st, err := task.Status(ctx); err == nil && st.Status == containerd.Running {
			candidates = append(candidates, task)
			names = append(names, r.Container)
		}
	}
	if len(candidates) == 0 {
		return noneRunning, nil
	}
	i := d.rng.IntN(len(candidates))
	task, name := candidates[i], names[i]
	if kind == faultTaskKill {
		return name, ignoreNotFound(task.Kill(ctx, syscall.SIGKILL))
	}
	// Delete the task (killing it) and the container with its snapshot.
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return name, err
	}
	c, err := client.LoadContainer(ctx, name)
	if err != nil {
		return name, ignoreNotFound(err)
	}
	return name, ignoreNotFound(c.Delete(ctx, containerd.WithSnapshotCleanup))
}

// noneRunning is hitContainer's target when no container could be hit.
const noneRunning = "(none running)"

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// byKind counts the faults of each kind, in allFaults' order.
func byKind(faults []fault) string {
	n := map[faultKind]int{}
	for _, f := range faults {
		n[f.Kind]++
	}
	var parts []string
	for _, k := range allFaults {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// faultLog renders the fault log, one fault a line.
func faultLog(faults []fault) string {
	var b strings.Builder
	for _, f := range faults {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}
