package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// partitionNode is the second node the partition fault cuts off: its own
// containerd, and a worker that reaches the server through a proxy. It
// comes first in the replica's placement and has no other replica, so the
// replica starts there.
const partitionNode = "node-b"

// addPartitionNode starts node-b and its worker, and a checker reading both
// containerds every 100 ms for the whole soak.
func addPartitionNode(ctx context.Context, st *stack.Stack) (*stack.Node, *stack.Checker, error) {
	b, err := st.AddNode(ctx, partitionNode)
	if err != nil {
		return nil, nil, err
	}
	if err := b.StartWorker(); err != nil {
		return nil, nil, err
	}
	return b, stack.Check(st.Containerd, b.Containerd), nil
}

// partition supervises a fresh replica onto node-b, cuts node-b off until
// the replica runs on the soak's node (its copy on node-b fenced: the
// checker must never see both), restores node-b and unsupervises the
// replica. The target names the replica and the times from the cut.
func (d *driver) partition(ctx context.Context, n int) (string, error) {
	if d.b == nil {
		return "", fmt.Errorf("no %s: the soak started without the partition fault", partitionNode)
	}
	dep := fmt.Sprintf("partition-%d", n)
	ref := dep + "/p-rep-1"
	id, err := replica.ParseRef(ref)
	if err != nil {
		return ref, err
	}
	file, err := d.st.Deployment(dep, stack.PlacedDeployment(dep, "p", partitionNode, d.st.Node))
	if err != nil {
		return ref, err
	}
	if err := d.st.Supervise(file); err != nil {
		return ref, err
	}
	defer func() {
		if r, err := d.st.Vigil("unsupervise", ref, "--stop"); err != nil || r.Code != 0 {
			d.logf("unsupervise %s: %v %s", ref, err, r.Stderr)
		}
	}()
	if _, err := d.st.WaitFor(ref, "Running on "+partitionNode, 2*time.Minute, func(s workflows.StateView) bool {
		return s.State == workflows.StateRunning && s.Node == partitionNode
	}); err != nil {
		return ref, err
	}
	time.Sleep(d.pause(time.Second, 5*time.Second))
	cut := time.Now()
	d.b.Proxy.Cut()
	restored := false
	defer func() {
		if !restored { // a second Restore would drop the worker's connections again
			d.b.Proxy.Restore()
		}
	}()
	fenced := time.Duration(0)
	moved := make(chan error, 1)
	go func() {
		_, err := d.st.WaitFor(ref, "Running on "+d.st.Node, 3*replica.DefaultLostAfter, func(s workflows.StateView) bool {
			return s.State == workflows.StateRunning && s.Node == d.st.Node
		})
		moved <- err
	}()
	for {
		select {
		case err := <-moved:
			took := time.Since(cut)
			target := fmt.Sprintf("%s (fenced %.1f s, moved %.1f s after the cut)", ref, fenced.Seconds(), took.Seconds())
			if err != nil {
				return target, err
			}
			if fenced == 0 {
				return target, fmt.Errorf("%s: running on %s while its copy on %s was not seen fenced", ref, d.st.Node, partitionNode)
			}
			d.b.Proxy.Restore()
			restored = true
			// Its lease back before the next partition.
			time.Sleep(2 * workflows.NodeLeaseLapse)
			return target, nil
		case <-time.After(stack.CheckInterval):
			if fenced == 0 {
				onB, err := stack.RunningTasks(ctx, d.b.Containerd)
				if err == nil && !slices.Contains(onB, id.ContainerName()) {
					fenced = time.Since(cut)
				}
			}
		}
	}
}

// duplicates are the checker's sightings of one replica running on both
// nodes, as violations.
func duplicates(check *stack.Checker) []string {
	if check == nil {
		return nil
	}
	var out []string
	for _, dup := range check.Duplicates() {
		out = append(out, "two running copies: "+dup.String())
	}
	return out
}
