// Package simruntime is a simulated node's runtime.Runtime for the scale
// harness (tools/simnode): containers live in memory, a start takes a time
// drawn from the start latencies measured on containerd here, and running
// containers crash at a configured rate or all at once when told. It is
// never selectable by a deployment file: only tools/simnode builds one.
package simruntime

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// Quantile is one point of a latency distribution: the latency at or below
// which a fraction Q of the samples fall.
type Quantile struct {
	Q       float64
	Latency time.Duration
}

// ContainerdStart is the start latency of Vigil's containerd runtime on this
// machine (bench/results/20261130T160033Z-full.json,
// restart_latency.floor_vigil_runtime, 30 restarts: min, p50, p95, p99, max).
var ContainerdStart = []Quantile{
	{0, 72100 * time.Microsecond},
	{0.5, 87700 * time.Microsecond},
	{0.95, 107300 * time.Microsecond},
	{0.99, 111500 * time.Microsecond},
	{1, 111500 * time.Microsecond},
}

// CrashExitCode is the exit code of a simulated crash (SIGKILL).
const CrashExitCode = 137

// Config says how the simulated containers behave.
type Config struct {
	// StartLatency is the distribution a start's time is drawn from,
	// quantiles in increasing order (nil: starts take no time).
	StartLatency []Quantile
	// CrashesPerHour is the fraction of running containers that crash
	// each hour, spread at random over time (0: none).
	CrashesPerHour float64
	// Seed seeds the draws (latencies, which containers crash).
	Seed uint64
}

// Runtime is a simulated node's runtime. Its containers exit when told
// (Stop, CrashAll) or at the crash rate (Run).
type Runtime struct {
	*runtimetest.Fake
	cfg Config
	mu  sync.Mutex
	rng *rand.Rand
	// crashed holds when each container crashed, until it runs again;
	// recovered the times from crash to running since Recoveries.
	crashed   map[replica.ID]time.Time
	recovered []time.Duration
	rate      float64 // crashes per hour, Config.CrashesPerHour or SetCrashRate's
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty simulated runtime.
func New(cfg Config) *Runtime {
	return &Runtime{Fake: runtimetest.New(), cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		crashed: map[replica.ID]time.Time{}, rate: cfg.CrashesPerHour}
}

// Start waits a start latency drawn from Config.StartLatency, then starts
// the container's task (at once if it runs already, as containerd does).
func (r *Runtime) Start(ctx context.Context, id replica.ID) (runtime.StartInfo, error) {
	if s, ok := r.Container(id); !ok || s.State.Status != runtime.StatusRunning {
		if d := r.startLatency(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return runtime.StartInfo{}, ctx.Err()
			}
		}
	}
	info, err := r.Fake.Start(ctx, id)
	if err == nil && !info.AlreadyRunning {
		r.mu.Lock()
		if at, ok := r.crashed[id]; ok {
			r.recovered = append(r.recovered, time.Since(at))
			delete(r.crashed, id)
		}
		r.mu.Unlock()
	}
	return info, err
}

// crash makes the running container id exit as a crash, noting when.
func (r *Runtime) crash(id replica.ID) {
	r.mu.Lock()
	r.crashed[id] = time.Now()
	r.mu.Unlock()
	r.Exit(id, CrashExitCode)
}

// Recoveries returns the time from each crash to the container running
// again (started by its supervisor) since the last call.
func (r *Runtime) Recoveries() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.recovered
	r.recovered = nil
	return out
}

// SetCrashRate changes the fraction of running containers that crash each
// hour while Run runs.
func (r *Runtime) SetCrashRate(perHour float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rate = perHour
}

// startLatency draws a latency: a uniform quantile, interpolated linearly
// between the distribution's points.
func (r *Runtime) startLatency() time.Duration {
	qs := r.cfg.StartLatency
	if len(qs) == 0 {
		return 0
	}
	r.mu.Lock()
	u := r.rng.Float64()
	r.mu.Unlock()
	return Draw(qs, u)
}

// Draw is the latency at quantile u of qs (linear between its points).
func Draw(qs []Quantile, u float64) time.Duration {
	if len(qs) == 0 {
		return 0
	}
	if u <= qs[0].Q {
		return qs[0].Latency
	}
	for i := 1; i < len(qs); i++ {
		lo, hi := qs[i-1], qs[i]
		if u <= hi.Q {
			if hi.Q == lo.Q {
				return hi.Latency
			}
			f := (u - lo.Q) / (hi.Q - lo.Q)
			return lo.Latency + time.Duration(f*float64(hi.Latency-lo.Latency))
		}
	}
	return qs[len(qs)-1].Latency
}

// Running lists the containers whose task runs.
func (r *Runtime) Running() []replica.ID {
	infos, _ := r.Fake.List(context.Background())
	var ids []replica.ID
	for _, c := range infos {
		if c.State.Status == runtime.StatusRunning {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// CrashAll makes every running container crash now and returns how many did.
func (r *Runtime) CrashAll() int {
	ids := r.Running()
	for _, id := range ids {
		r.crash(id)
	}
	return len(ids)
}

// Run crashes running containers at the crash rate until ctx ends: each
// tick, a Poisson-distributed number of them, picked at random.
func (r *Runtime) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		rate := r.rate
		r.mu.Unlock()
		if rate <= 0 {
			continue
		}
		ids := r.Running()
		r.mu.Lock()
		n := poisson(r.rng, float64(len(ids))*rate*tick.Hours())
		r.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		r.mu.Unlock()
		for _, id := range ids[:min(n, len(ids))] {
			r.crash(id)
		}
	}
}

// poisson draws from a Poisson distribution of mean m (Knuth's method; a
// normal approximation for large means).
func poisson(rng *rand.Rand, m float64) int {
	if m <= 0 {
		return 0
	}
	if m > 50 {
		return max(0, int(math.Round(m+math.Sqrt(m)*rng.NormFloat64())))
	}
	limit, p, k := math.Exp(-m), 1.0, 0
	for {
		p *= rng.Float64()
		if p <= limit {
			return k
		}
		k++
	}
}
