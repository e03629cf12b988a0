package stack

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
)

// Node is another Vigil node of a stack, on this host as if on its own: its
// own containerd (own root and state, and its own namespace, hence its own
// runc root /run/containerd/runc/<namespace> and cgroup parent
// /<namespace>: neither daemon sees or clobbers the other's tasks, though
// a replica's container has the same name on both), bridge network and
// state dir (its own node identity), and a worker that reaches the dev
// server only through Proxy, which the test can cut (a partition).
type Node struct {
	Name       string
	Dir        string
	Containerd *containerdtest.Daemon
	Network    containerdtest.PrivateNetwork
	Proxy      *Proxy

	s       *Stack
	worker  *exec.Cmd
	done    chan struct{}
	workers int
}

// AddNode starts another node's containerd (with the test image), network
// and proxy; call StartWorker next. Stack.Close removes it.
func (s *Stack) AddNode(ctx context.Context, name string) (*Node, error) {
	n := &Node{Name: name, Dir: filepath.Join(s.Dir, name), s: s}
	var err error
	if n.Containerd, err = containerdtest.StartDaemon(ctx, filepath.Join(n.Dir, "ctd"), containerdtest.Options{}); err != nil {
		return nil, fmt.Errorf("node %s: containerd: %w", name, err)
	}
	s.nodes = append(s.nodes, n) // from here on, Close removes what there is
	if n.Network, err = containerdtest.NewNetwork(n.Dir); err != nil {
		return nil, fmt.Errorf("node %s: bridge network: %w", name, err)
	}
	if n.Proxy, err = NewProxy(s.HostPort); err != nil {
		return nil, fmt.Errorf("node %s: proxy: %w", name, err)
	}
	return n, nil
}

// WorkerLog is the path of the node's n-th worker's output (from 1).
func (n *Node) WorkerLog(i int) string {
	return filepath.Join(n.Dir, fmt.Sprintf("worker-%d.log", i))
}

// Workers is how many worker processes the node started.
func (n *Node) Workers() int { return n.workers }

// StartWorker starts the node's worker, dialing the dev server through the
// proxy, with extra added to its command line.
func (n *Node) StartWorker(extra ...string) error {
	if n.worker != nil {
		return fmt.Errorf("node %s: a worker runs already", n.Name)
	}
	n.workers++
	cmd, done, err := startWorker(n.s.WorkerBin, n.WorkerLog(n.workers),
		n.s.workerArgs(n.Proxy.Addr, n.Name, n.Dir, n.Containerd, n.Network, extra))
	if err != nil {
		return err
	}
	n.worker, n.done = cmd, done
	return nil
}

// WorkerPID is the running worker's process ID (0 if none).
func (n *Node) WorkerPID() int { return pidOf(n.worker) }

// KillWorker SIGKILLs the node's worker; its containerd and containers live on.
func (n *Node) KillWorker() {
	kill(n.worker, n.done)
	n.worker = nil
}

// SuspendWorker stops the worker with SIGSTOP, as a hung process: it
// holds its connections and does nothing. ResumeWorker continues it.
func (n *Node) SuspendWorker() { n.signalWorker(syscall.SIGSTOP) }

// ResumeWorker continues a suspended worker (SIGCONT).
func (n *Node) ResumeWorker() { n.signalWorker(syscall.SIGCONT) }

func (n *Node) signalWorker(sig syscall.Signal) {
	if n.worker != nil {
		_ = n.worker.Process.Signal(sig)
	}
}

// WorkerExit waits up to limit for the worker to exit and returns its
// exit code; ok is false if it still runs.
func (n *Node) WorkerExit(limit time.Duration) (code int, ok bool) {
	return waitExit(n.worker, n.done, limit)
}

// Crash is the loss of the node's host: its worker, containerd, every shim
// and container process SIGKILLed, and what /run held gone
// (containerdtest.Daemon.Crash). Containerd.Start and StartWorker bring it back.
func (n *Node) Crash() error {
	n.KillWorker()
	return n.Containerd.Crash()
}

// WorkerLogTail is the last lines of every worker's output of the node.
func (n *Node) WorkerLogTail(lines int) string {
	var b strings.Builder
	for i := 1; i <= n.workers; i++ {
		fmt.Fprintf(&b, "%s worker %d (%s):\n%s\n", n.Name, i, n.WorkerLog(i), logTail(n.WorkerLog(i), lines))
	}
	return b.String()
}

func (n *Node) close(ctx context.Context) error {
	n.KillWorker()
	if n.Proxy != nil {
		n.Proxy.Close()
	}
	var err error
	if n.Containerd != nil {
		err = n.Containerd.Shutdown(ctx)
	}
	if n.Network.Config.Bridge != "" {
		err = errors.Join(err, n.Network.Remove())
	}
	return err
}

// PlacedDeployment is a deployment file of one replica of service that
// sleeps, placed over nodes (the first with fewest replicas takes it), with
// the default lost_after: what a partition moves.
func PlacedDeployment(dep, service string, nodes ...string) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  %s:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 100000"] }
    placement: { nodes: [%s] }
    network: none
`, dep, service, strings.Join(nodes, ", "))
}
