package containerd_test

import (
	"context"
	"testing"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
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
		id := runtime.ContainerID{Deployment: "bench", Service: "cs", Replica: i + 1}
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
	id := runtime.ContainerID{Deployment: "bench", Service: "restart", Replica: 1}
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
