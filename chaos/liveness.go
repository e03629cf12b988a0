package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
	"github.com/vigil-run/vigil/workflows"
)

const (
	// taskEvery and stateEvery pace the liveness sampler: containerd's tasks
	// and the replicas' published states (VigilState).
	taskEvery  = 400 * time.Millisecond
	stateEvery = 2 * time.Second
	// staleState: a state sample older than this (the dev server down)
	// judges nothing.
	staleState = 5 * time.Second
)

// liveness checks, all through the soak, that a replica whose published
// state is Running has a live task in containerd within heal, and that no
// replica ever has two running tasks (containers are matched to replicas by
// their labels, not their names). A gap in either sample (a daemon down)
// starts every judgement afresh: only what was seen without a break counts.
type liveness struct {
	st     *stack.Stack
	client client.Client
	heal   time.Duration
	refs   map[string]bool // the replicas judged (Ref)
	logf   func(string, ...any)

	mu         sync.Mutex
	violations []string
	reported   map[string]bool // replica and kind, reported once
	samples    int             // task samples that judged something
	// bare: since when each Running replica has been seen without a live task.
	bare map[string]time.Time

	states   map[string]string // Ref → VigilState
	statesAt time.Time
}

func newLiveness(st *stack.Stack, c client.Client, replicas []soakReplica, heal time.Duration, logf func(string, ...any)) *liveness {
	l := &liveness{st: st, client: c, heal: heal, logf: logf, refs: map[string]bool{}, reported: map[string]bool{}, bare: map[string]time.Time{}}
	for _, r := range replicas {
		l.refs[r.ID.Ref()] = true
	}
	return l
}

// run samples until ctx ends.
func (l *liveness) run(ctx context.Context) {
	var ctd *containerd.Client
	defer func() {
		if ctd != nil {
			ctd.Close()
		}
	}()
	tick := time.NewTicker(taskEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(l.statesAt) >= stateEvery {
			if states, err := l.sampleStates(ctx); err == nil {
				l.states, l.statesAt = states, time.Now()
			}
		}
		if ctd == nil {
			var err error
			if ctd, err = containerd.New(l.st.Containerd.Address, containerd.WithTimeout(2*time.Second)); err != nil {
				ctd = nil
				l.gap()
				continue
			}
		}
		running, err := l.sampleTasks(ctx, ctd)
		if err != nil || time.Since(l.statesAt) > staleState {
			l.gap()
			continue
		}
		l.judge(time.Now(), running)
	}
}

// sampleStates lists every supervised replica's published state.
func (l *liveness) sampleStates(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := map[string]string{}
	var token []byte
	for {
		resp, err := l.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: workflows.ReplicasQuery("", "", ""), NextPageToken: token,
		})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			id, err := replica.ParseRef(e.GetExecution().GetWorkflowId())
			if err != nil {
				continue
			}
			var state string
			if p := e.GetSearchAttributes().GetIndexedFields()[replica.SearchAttrState]; p != nil {
				_ = converter.GetDefaultDataConverter().FromPayload(p, &state)
			}
			out[id.Ref()] = state
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// sampleTasks counts the running tasks of each replica, by its container's labels.
func (l *liveness) sampleTasks(ctx context.Context, ctd *containerd.Client) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, l.st.Containerd.Namespace), 2*time.Second)
	defer cancel()
	resp, err := ctd.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	ctrs, err := ctd.ContainerService().List(ctx)
	if err != nil {
		return nil, err
	}
	owner := map[string]string{}
	for _, c := range ctrs {
		lb := c.Labels
		id := replica.ID{Deployment: lb[vcontainerd.LabelDeployment], Service: lb[vcontainerd.LabelService]}
		if _, err := fmt.Sscan(lb[vcontainerd.LabelReplica], &id.Replica); err != nil || id.Deployment == "" {
			continue
		}
		owner[c.ID] = id.Ref()
	}
	running := map[string]int{}
	for _, t := range resp.GetTasks() {
		if t.GetStatus() == task.Status_RUNNING {
			if ref, ok := owner[t.GetID()]; ok {
				running[ref]++
			}
		}
	}
	return running, nil
}

// judge applies both rules to one sample.
func (l *liveness) judge(now time.Time, running map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples++
	for ref, n := range running {
		if n > 1 && l.refs[ref] {
			l.report(ref, "two", fmt.Sprintf("%d running tasks at %s", n, now.UTC().Format("15:04:05.000")))
		}
	}
	for ref := range l.refs {
		if l.states[ref] != string(workflows.StateRunning) || running[ref] > 0 {
			delete(l.bare, ref)
			continue
		}
		since, ok := l.bare[ref]
		if !ok {
			l.bare[ref] = now
			continue
		}
		if now.Sub(since) > l.heal {
			l.report(ref, "bare", fmt.Sprintf("state Running without a live task from %s for more than %s (seen during the soak)",
				since.UTC().Format("15:04:05.000"), l.heal))
		}
	}
}

func (l *liveness) report(ref, kind, what string) {
	if key := ref + "/" + kind; !l.reported[key] {
		l.reported[key] = true
		l.violations = append(l.violations, ref+": "+what)
		l.logf("liveness: %s: %s", ref, what)
	}
}

// gap forgets every judgement under way: what happened meanwhile is unknown.
func (l *liveness) gap() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.bare)
}

// result is the violations found and the samples that judged.
func (l *liveness) result() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.violations...), l.samples
}
