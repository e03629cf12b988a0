package containerd_test

import (
	"errors"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
)

// A container whose snapshot was deleted behind Vigil's back (as a delete
// in progress does first) cannot start: Start says the container is gone,
// not that it cannot run (found by the chaos soak, seed 3: the workflow
// counted a restart that never happened), and Create makes it again.
func TestStartAfterSnapshotDeletedBehindVigil(t *testing.T) {
	d, rt, ctx, id := setup(t, "vanish")
	spec := containerdtest.TestImage("exit 3")
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	nctx := namespaces.WithNamespace(ctx, d.Namespace)
	c, err := rt.Client().LoadContainer(nctx, id.ContainerName())
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(nctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Client().SnapshotService(info.Snapshotter).Remove(nctx, info.SnapshotKey); err != nil {
		t.Fatal(err)
	}

	_, err = rt.Start(ctx, id)
	if !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("Start without a snapshot = %v; want ErrContainerNotFound (retry), not a failed start", err)
	}
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatalf("Create of a container without its snapshot: %v", err)
	}
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start after Create made it again: %v", err)
	}
	if st := wait(t, rt, id); st.Status != runtime.StatusExited || st.ExitCode != 3 {
		t.Fatalf("state %+v, want exited 3", st)
	}
}
