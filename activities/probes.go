package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/log"

	"github.com/vigil-run/vigil/probe"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// ProbeTarget is the runtime's side of probing (runtime/containerd.Runtime):
// the probes a container was created with, and the means to run them.
type ProbeTarget interface {
	probe.Target
	Health(ctx context.Context, id replica.ID) (*runtime.Health, time.Time, error)
}

// startProbes probes the container's running task, if it has probes, until
// ctx ends or the prober has stopped it as unhealthy. It returns the task's
// start time and whether a prober was started.
func (a *Activities) startProbes(ctx context.Context, logger log.Logger, id replica.ID) (time.Time, bool) {
	h, started, err := a.opts.Probes.Health(ctx, id)
	if err != nil || h == nil {
		if err != nil {
			logger.Warn("Probes not read; the container is not probed", "container", id.Ref(), "error", err)
		}
		return started, false
	}
	p := &probe.Prober{Target: a.opts.Probes, ID: id, Task: started, Health: *h,
		Logf: func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
		OnChange: func(s runtime.HealthStatus, detail string) {
			logger.Info("Health changed", "container", id.Ref(), "health", string(s), "detail", detail)
			if a.opts.ReportHealth == nil {
				return
			}
			if s != runtime.HealthUnhealthy {
				detail = "" // the last failure is news only with the verdict it caused
			}
			if err := a.opts.ReportHealth(context.WithoutCancel(ctx), id, s, detail, started); err != nil {
				logger.Warn("Health change not reported", "container", id.Ref(), "health", string(s), "error", err)
			}
		}}
	go func() {
		if err := p.Run(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("Probing stopped", "container", id.Ref(), "error", err)
		}
	}()
	return started, true
}

// ProbeSet runs one prober per running task that has probes, for a watch
// that follows every container of the node: call Sync with the node's
// containers at each scan, Stop when the watch ends.
type ProbeSet struct {
	a       *Activities
	logger  log.Logger
	mu      sync.Mutex
	probing map[replica.ID]probing
}

type probing struct {
	started time.Time // the task probed
	cancel  context.CancelFunc
}

// NewProbeSet returns an empty set (nil when the worker has no probe
// target); pass the watch's activity.GetLogger. (A function, not a method:
// every exported method of Activities is registered as an activity.)
func NewProbeSet(a *Activities, logger log.Logger) *ProbeSet {
	if a.opts.Probes == nil {
		return nil
	}
	return &ProbeSet{a: a, logger: logger, probing: map[replica.ID]probing{}}
}

// Sync starts probing each running task not probed yet (a new task of a
// container is a new prober) and stops probing tasks no longer running.
func (ps *ProbeSet) Sync(ctx context.Context, containers []runtime.ContainerInfo) {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	running := make(map[replica.ID]time.Time, len(containers))
	for _, c := range containers {
		if c.State.Status == runtime.StatusRunning {
			running[c.ID] = c.StartedAt
		}
	}
	for id, p := range ps.probing {
		if started, ok := running[id]; !ok || !started.Equal(p.started) {
			p.cancel()
			delete(ps.probing, id)
		}
	}
	for id, started := range running {
		if _, ok := ps.probing[id]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		// A container without probes is remembered too, so it is looked up once per task.
		if _, ok := ps.a.startProbes(pctx, ps.logger, id); !ok {
			cancel()
			cancel = func() {}
		}
		ps.probing[id] = probing{started: started, cancel: cancel}
	}
}

// Exited stops probing the container at once (its task exited), without
// waiting for the next Sync.
func (ps *ProbeSet) Exited(id replica.ID) {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.probing[id]; ok {
		p.cancel()
		delete(ps.probing, id)
	}
}

// Stop stops every prober.
func (ps *ProbeSet) Stop() {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id, p := range ps.probing {
		p.cancel()
		delete(ps.probing, id)
	}
}
