package containerd_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
)

// BenchmarkCreateStart is containerd's floor for a first start: create the
// container (snapshot + spec) and start its task.
func BenchmarkCreateStart(b *testing.B) {
	d := containerdtest.Start(b)
	rt := d.Runtime(b)
	ctx := context.Background()
	spec := containerdtest.TestImage("sleep 1000")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := replica.ID{Deployment: "bench", Service: "cs", Replica: i + 1}
		if err := rt.Create(ctx, id, spec); err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := rt.Remove(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRestart is what a restart costs in the runtime: Create (a no-op
// for an existing container) and Start, which deletes the exited task and
// starts a new one.
func BenchmarkRestart(b *testing.B) {
	d := containerdtest.Start(b)
	rt := d.Runtime(b)
	ctx := context.Background()
	spec := containerdtest.TestImage("exit 1")
	id := replica.ID{Deployment: "bench", Service: "restart", Replica: 1}
	if err := rt.Create(ctx, id, spec); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := rt.Wait(ctx, id); err != nil && i > 0 {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := rt.Create(ctx, id, spec); err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStopHTTPDUnderInit is how long a stop of busybox httpd takes with
// init: true: tini passes SIGTERM on and httpd exits at once, well inside
// its 10 s grace (without the init, httpd as PID 1 ignores SIGTERM and the
// stop waits out the whole grace before SIGKILL).
func BenchmarkStopHTTPDUnderInit(b *testing.B) {
	d := containerdtest.Start(b)
	rt := d.Runtime(b)
	ctx := context.Background()
	spec := containerdtest.TestImage("exec httpd -f -p 8080")
	spec.Init = true
	id := replica.ID{Deployment: "bench", Service: "stop", Replica: 1}
	if err := rt.Create(ctx, id, spec); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := rt.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // let httpd get going
		b.StartTimer()
		if err := rt.Stop(ctx, id, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if st, err := rt.State(ctx, id); err != nil || st.ExitCode != 143 {
			b.Fatalf("stopped with %+v, %v; want exit 143 (SIGTERM through tini)", st, err)
		}
		b.StartTimer()
	}
}
