package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/replica"
)

// StormResult: every container crashed at once.
type StormResult struct {
	Containers int `json:"containers"`
	// AllRunningSeconds is from the kill until the last container runs again.
	AllRunningSeconds float64 `json:"all_running_again_s"`
	// PerContainer is each container's exit -> start.
	PerContainer Dist `json:"per_container"`
	// Breakdown (Vigil only) is where the time went, per phase the median over containers.
	Breakdown *Breakdown `json:"breakdown,omitempty"`
	// CPUSeconds (Vigil only) is the CPU time each process used from the kill
	// until all ran again: vigil-worker, the dev server, containerd.
	CPUSeconds map[string]float64 `json:"cpu_seconds,omitempty"`
	// Runs is every storm's AllRunningSeconds when the storm was repeated;
	// the result is then the median one (the middle of an odd number).
	Runs []float64 `json:"all_running_again_s_of_each_run,omitempty"`
}

// stormRuns is how many times the full run repeats each storm (Vigil's and
// the runtime alone's): one storm swings by tens of percent on a shared
// machine, so the table takes the median and lists every run.
const stormRuns = 3

// medianStorm runs storm n times and returns the run with the median time,
// listing every run's time in Runs.
func medianStorm(n int, storm func(i int) (*StormResult, error)) (*StormResult, error) {
	var runs []*StormResult
	var errs []error
	for i := 0; i < n; i++ {
		r, err := storm(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runs = append(runs, r)
	}
	if len(runs) == 0 {
		return nil, errors.Join(errs...)
	}
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].AllRunningSeconds < runs[b].AllRunningSeconds })
	med := runs[(len(runs)-1)/2]
	for _, r := range runs {
		med.Runs = append(med.Runs, r.AllRunningSeconds)
	}
	if len(runs) > 1 {
		fmt.Printf("    %d storms: %v s; median %.2f s\n", len(runs), med.Runs, med.AllRunningSeconds)
	}
	return med, errors.Join(errs...)
}

// storm SIGKILLs the tasks of names on one containerd at once (after
// armed, if set, has readied whatever restarts them) and waits until every
// one has started again.
func storm(ctx context.Context, te *taskEvents, address, namespace string, names []string, armed func()) (*StormResult, error) {
	if armed != nil {
		armed()
	}
	t0 := time.Now()
	if err := killTasks(ctx, address, namespace, names); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	started, err := te.waitAllStarted(wctx, names, t0)
	if err != nil {
		return nil, err
	}
	last, lat := te.restartsSince(names, started, t0)
	r := &StormResult{Containers: len(names), AllRunningSeconds: round3(last.Sub(t0).Seconds()), PerContainer: dist(lat)}
	fmt.Printf("    %d crashed at once: all running again after %.2f s; per container %s\n", len(names), r.AllRunningSeconds, r.PerContainer)
	return r, nil
}

// killTasks SIGKILLs the tasks of the named containers, all at once.
func killTasks(ctx context.Context, address, namespace string, names []string) error {
	c, err := containerd.New(address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, namespace)
	return parallel(len(names), len(names), func(i int) error {
		ctr, err := c.LoadContainer(ctx, names[i])
		if err == nil {
			var task containerd.Task
			if task, err = ctr.Task(ctx, nil); err == nil {
				err = task.Kill(ctx, syscall.SIGKILL)
			}
		}
		if err != nil {
			return fmt.Errorf("kill %s: %w", names[i], err)
		}
		return nil
	})
}

// parallel runs fn(0..n-1) with at most width at a time.
func parallel(n, width int, fn func(i int) error) error {
	sem := make(chan struct{}, max(width, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// restartsSince pairs each container's first exit after t0 with its start.
func (te *taskEvents) restartsSince(names []string, started map[string]time.Time, t0 time.Time) (time.Time, []time.Duration) {
	var last time.Time
	var lat []time.Duration
	for _, n := range names {
		s := started[n]
		if s.After(last) {
			last = s
		}
		for _, e := range te.exitsOf(n) {
			if !e.Before(t0) && e.Before(s) {
				lat = append(lat, s.Sub(e))
				break
			}
		}
	}
	return last, lat
}

// floorStorm is the crash storm without Temporal: n containers on Vigil's
// runtime, each restarted by its own goroutine the moment it exits, exactly
// as EnsureRunning would (Create, State, Start).
func (v *vigilBench) floorStorm(ctx context.Context, n int) (*StormResult, error) {
	r, err := v.runtime(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	spec := crashSpec("exec sleep 100000")
	ids := make([]replica.ID, n)
	names := make([]string, n)
	for i := range ids {
		ids[i] = replica.ID{Deployment: "floorstorm", Service: "c", Replica: i + 1}
		names[i] = ids[i].ContainerName()
	}
	defer func() {
		_ = parallel(n, 8, func(i int) error { return r.Remove(context.WithoutCancel(ctx), ids[i]) })
	}()
	if err := parallel(n, 8, func(i int) error {
		if err := r.Create(ctx, ids[i], spec); err != nil {
			return err
		}
		_, err := r.Start(ctx, ids[i])
		return err
	}); err != nil {
		return nil, err
	}
	var restarters sync.WaitGroup
	errs := make(chan error, n)
	arm := func() {
		for i := range ids {
			restarters.Add(1)
			go func() {
				defer restarters.Done()
				st, err := r.Wait(ctx, ids[i])
				if err == nil {
					err = r.Create(ctx, ids[i], spec)
				}
				if err == nil {
					_, err = r.State(ctx, ids[i])
				}
				if err == nil {
					_, err = r.Start(ctx, ids[i])
				}
				if err != nil {
					errs <- fmt.Errorf("restart %s after %v: %w", names[i], st, err)
				}
			}()
		}
		time.Sleep(time.Second) // every Wait is in place
	}
	res, err := storm(ctx, v.events, v.stack.Containerd.Address, v.stack.Containerd.Namespace, names, arm)
	restarters.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return res, err
}
