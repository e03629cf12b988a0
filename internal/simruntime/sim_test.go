package simruntime

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

func TestDrawInterpolatesTheQuantiles(t *testing.T) {
	for _, c := range []struct {
		u    float64
		want time.Duration
	}{
		{0, 72100 * time.Microsecond},
		{0.25, 79900 * time.Microsecond},
		{0.5, 87700 * time.Microsecond},
		{0.99, 111500 * time.Microsecond},
		{1, 111500 * time.Microsecond},
	} {
		if got := Draw(ContainerdStart, c.u); got != c.want {
			t.Errorf("Draw(%v) = %v, want %v", c.u, got, c.want)
		}
	}
}

func start(t *testing.T, r *Runtime, n int) []replica.ID {
	t.Helper()
	ctx := context.Background()
	var ids []replica.ID
	for i := 1; i <= n; i++ {
		id := replica.ID{Deployment: "d", Service: "web", Replica: i}
		if err := r.Create(ctx, id, runtime.ContainerSpec{Image: "sim"}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestStartTakesADrawnLatency(t *testing.T) {
	const d = 30 * time.Millisecond
	r := New(Config{StartLatency: []Quantile{{0, d}, {1, d}}})
	began := time.Now()
	ids := start(t, r, 1)
	if took := time.Since(began); took < d {
		t.Errorf("start took %v, want at least the drawn %v", took, d)
	}
	// A running task is found at once, as containerd does.
	began = time.Now()
	info, err := r.Start(context.Background(), ids[0])
	if err != nil || !info.AlreadyRunning {
		t.Fatalf("second start: %+v, %v; want AlreadyRunning", info, err)
	}
	if took := time.Since(began); took >= d {
		t.Errorf("a running container's start took %v; want no latency", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Exit(ids[0], 1)
	if _, err := r.Start(ctx, ids[0]); err == nil {
		t.Error("a start whose context ended: want its error")
	}
}

func TestCrashAllEndsEveryRunningTaskWithAnEvent(t *testing.T) {
	r := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := r.Events(ctx)
	ids := start(t, r, 5)
	for range ids {
		<-events // the starts
	}
	if n := r.CrashAll(); n != 5 {
		t.Fatalf("CrashAll crashed %d, want 5", n)
	}
	for range ids {
		ev := <-events
		if ev.Kind != runtime.TaskExited || ev.ExitCode != CrashExitCode {
			t.Errorf("event %+v, want an exit with %d", ev, CrashExitCode)
		}
	}
	if got := len(r.Running()); got != 0 {
		t.Errorf("%d still running after CrashAll", got)
	}
	st, err := r.Wait(ctx, ids[0])
	if err != nil || st.Status != runtime.StatusExited {
		t.Errorf("Wait after the crash: %+v, %v", st, err)
	}
	// The supervisor's restart ends each crash's recovery.
	for _, id := range ids[:2] {
		if _, err := r.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if rec := r.Recoveries(); len(rec) != 2 {
		t.Errorf("recoveries %v, want the 2 restarted", rec)
	}
	if rec := r.Recoveries(); len(rec) != 0 {
		t.Errorf("recoveries again %v, want none (drained)", rec)
	}
}

func TestRunCrashesAtTheConfiguredRate(t *testing.T) {
	// 3,600 per hour of each container: about one a second each; in a
	// 1 ms tick, 200 containers lose 0.2 on average, so 100 ticks crash
	// some but (almost surely) not all.
	r := New(Config{CrashesPerHour: 3600, Seed: 1})
	start(t, r, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.Run(ctx, time.Millisecond)
	crashed := 200 - len(r.Running())
	if crashed == 0 || crashed == 200 {
		t.Errorf("%d of 200 crashed in 100 ms at one per second each; want some, not all", crashed)
	}
	none := New(Config{})
	start(t, none, 3)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	none.Run(ctx2, time.Millisecond)
	if len(none.Running()) != 3 {
		t.Error("no crash rate: want no crash")
	}
}

func TestPoissonMean(t *testing.T) {
	r := New(Config{Seed: 7})
	for _, m := range []float64{0.5, 5, 500} {
		sum := 0
		for range 2000 {
			sum += poisson(r.rng, m)
		}
		if mean := float64(sum) / 2000; mean < 0.8*m || mean > 1.2*m {
			t.Errorf("mean of poisson(%v) = %v", m, mean)
		}
	}
}
