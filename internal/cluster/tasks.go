package cluster

import (
	"context"
	"fmt"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// killTasks SIGKILLs and deletes every container task in a node's namespace
// so no container or shim outlives the cluster. The node's worker must be
// stopped first, or it would start them again. The containers stay: the
// workflows find them on the next start.
func killTasks(ctx context.Context, address, namespace string) error {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, namespace), 30*time.Second)
	defer cancel()
	cl, err := containerd.New(address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("containerd %s: %w", address, err)
	}
	defer cl.Close()
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		return fmt.Errorf("containerd %s: list containers: %w", address, err)
	}
	for _, ctr := range ctrs {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue // no task: nothing runs
		}
		exited, err := task.Wait(ctx)
		if err == nil {
			if task.Kill(ctx, syscall.SIGKILL) == nil {
				select {
				case <-exited:
				case <-ctx.Done():
				}
			}
		}
		_, _ = task.Delete(ctx)
	}
	return nil
}
