package activities

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/log"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// probeTarget is a node whose containers' exec probes fail for the ones in
// failing; it counts probes per container.
type probeTarget struct {
	mu      sync.Mutex
	health  map[replica.ID]*runtime.Health
	failing map[replica.ID]bool
	probes  map[replica.ID]int
	stopped map[replica.ID]bool
}

func (p *probeTarget) Health(_ context.Context, id replica.ID) (*runtime.Health, time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health[id], time.Time{}, nil
}

func (p *probeTarget) Exec(_ context.Context, id replica.ID, _ []string, _ time.Duration) (int, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes[id]++
	if p.failing[id] {
		return 1, "", nil
	}
	return 0, "", nil
}

func (p *probeTarget) Dial(context.Context, replica.ID, int, time.Duration) (net.Conn, error) {
	return nil, errors.New("no network here")
}

func (p *probeTarget) StopUnhealthy(_ context.Context, id replica.ID, _ time.Time, _ time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped[id] = true
	return nil
}

func (p *probeTarget) count(id replica.ID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes[id]
}

// A node watch's probe set probes each running task with probes, once, and
// stops probing what no longer runs; a failing liveness probe stops its container.
func TestProbeSet(t *testing.T) {
	healthy := replica.ID{Deployment: "d", Service: "ok", Replica: 1}
	sick := replica.ID{Deployment: "d", Service: "sick", Replica: 1}
	plain := replica.ID{Deployment: "d", Service: "plain", Replica: 1}
	live := &runtime.Health{Liveness: &runtime.Probe{Exec: []string{"true"}, Period: 100 * time.Millisecond, Timeout: time.Second, FailureThreshold: 2}}
	target := &probeTarget{
		health:  map[replica.ID]*runtime.Health{healthy: live, sick: live},
		failing: map[replica.ID]bool{sick: true},
		probes:  map[replica.ID]int{}, stopped: map[replica.ID]bool{},
	}
	var mu sync.Mutex
	reports := map[replica.ID][]runtime.HealthStatus{}
	a := New(nil, Options{Probes: target, ReportHealth: func(_ context.Context, id replica.ID, s runtime.HealthStatus, _ string, _ time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		reports[id] = append(reports[id], s)
		return nil
	}})
	ps := NewProbeSet(a, log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	defer ps.Stop()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	all := []runtime.ContainerInfo{
		{ID: healthy, State: runtime.Running(), StartedAt: t0},
		{ID: sick, State: runtime.Running(), StartedAt: t0},
		{ID: plain, State: runtime.Running(), StartedAt: t0},
	}
	ps.Sync(ctx, all)
	ps.Sync(ctx, all) // no second prober for the same task
	time.Sleep(550 * time.Millisecond)
	target.mu.Lock()
	if !target.stopped[sick] || target.stopped[healthy] || target.probes[plain] != 0 {
		t.Errorf("stopped %v, probes %v; want only the failing one stopped, the one without probes never probed", target.stopped, target.probes)
	}
	target.mu.Unlock()
	if n := target.count(healthy); n < 3 || n > 8 {
		t.Errorf("%d probes of the healthy container in 550 ms at 100 ms; want one prober's worth (about 6)", n)
	}
	mu.Lock()
	if got := reports[healthy]; len(got) != 1 || got[0] != runtime.HealthHealthy {
		t.Errorf("healthy reports %v, want one healthy", got)
	}
	if got := reports[sick]; len(got) != 1 || got[0] != runtime.HealthUnhealthy {
		t.Errorf("sick reports %v, want one unhealthy", got)
	}
	mu.Unlock()

	// The healthy container exits: probing it stops at once.
	ps.Exited(healthy)
	time.Sleep(50 * time.Millisecond)
	n := target.count(healthy)
	time.Sleep(300 * time.Millisecond)
	if after := target.count(healthy); after != n {
		t.Errorf("probed %d more times after it stopped running", after-n)
	}
	// A new task of it is probed again; a Sync without it stops that too.
	ps.Sync(ctx, []runtime.ContainerInfo{{ID: healthy, State: runtime.Running(), StartedAt: t0.Add(time.Minute)}})
	time.Sleep(250 * time.Millisecond)
	if m := target.count(healthy); m == n {
		t.Error("the container's new task is not probed")
	}
	ps.Sync(ctx, []runtime.ContainerInfo{{ID: healthy, State: runtime.Exited(0, t0)}})
	time.Sleep(50 * time.Millisecond)
	n = target.count(healthy)
	time.Sleep(250 * time.Millisecond)
	if after := target.count(healthy); after != n {
		t.Errorf("probed %d more times after Sync saw it exited", after-n)
	}
}
