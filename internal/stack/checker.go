package stack

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/internal/containerdtest"
)

// CheckInterval is how often a Checker reads every containerd.
const CheckInterval = 100 * time.Millisecond

// Duplicate is a container name seen with a running task in more than one
// place at once: two copies of one replica.
type Duplicate struct {
	Container string
	At        time.Time
	Where     []string // the daemons' directories
}

func (d Duplicate) String() string {
	return fmt.Sprintf("%s running on %s at %s", d.Container, strings.Join(d.Where, " and "), d.At.Format("15:04:05.000"))
}

// Checker reads the tasks of several containerds every CheckInterval and
// records each time a replica's container runs on two of them: what a
// multi-node test asserts never happens. A daemon that does not answer (it
// is down: nothing of it runs) is skipped for that round.
type Checker struct {
	mu     sync.Mutex
	dups   []Duplicate
	rounds int
	stop   context.CancelFunc
	done   chan struct{}
}

// Check starts checking the daemons, each in its own namespace, until Close.
func Check(daemons ...*containerdtest.Daemon) *Checker {
	ctx, stop := context.WithCancel(context.Background())
	c := &Checker{stop: stop, done: make(chan struct{})}
	go c.run(ctx, daemons)
	return c
}

func (c *Checker) run(ctx context.Context, daemons []*containerdtest.Daemon) {
	defer close(c.done)
	clients := make([]*containerd.Client, len(daemons))
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	tick := time.NewTicker(CheckInterval)
	defer tick.Stop()
	for {
		running := map[string][]string{}
		for i, d := range daemons {
			if clients[i] == nil {
				cl, err := containerd.New(d.Address, containerd.WithTimeout(time.Second))
				if err != nil {
					continue
				}
				clients[i] = cl
			}
			names, err := runningTasks(ctx, clients[i], d.Namespace)
			if err != nil {
				// A restarted daemon needs a new connection.
				clients[i].Close()
				clients[i] = nil
				continue
			}
			for _, n := range names {
				running[n] = append(running[n], d.Dir)
			}
		}
		now := time.Now()
		c.mu.Lock()
		c.rounds++
		for name, where := range running {
			if len(where) > 1 {
				c.dups = append(c.dups, Duplicate{Container: name, At: now, Where: where})
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runningTasks are the containers of namespace whose task runs (or is paused).
func runningTasks(ctx context.Context, cl *containerd.Client, namespace string) ([]string, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, namespace), 2*time.Second)
	defer cancel()
	resp, err := cl.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range resp.Tasks {
		if t.Status == tasktypes.Status_RUNNING || t.Status == tasktypes.Status_PAUSED || t.Status == tasktypes.Status_PAUSING {
			names = append(names, t.ID)
		}
	}
	return names, nil
}

// RunningTasks are the containers whose task runs in the daemon's namespace.
func RunningTasks(ctx context.Context, d *containerdtest.Daemon) ([]string, error) {
	cl, err := containerd.New(d.Address, containerd.WithTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return runningTasks(ctx, cl, d.Namespace)
}

// Duplicates are the times a container ran in two places, first seen first.
func (c *Checker) Duplicates() []Duplicate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dups)
}

// DuplicateContainers are the distinct containers of Duplicates, sorted.
func (c *Checker) DuplicateContainers() []string {
	seen := map[string]bool{}
	for _, d := range c.Duplicates() {
		seen[d.Container] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Rounds is how many times the daemons were read.
func (c *Checker) Rounds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rounds
}

// Close stops checking.
func (c *Checker) Close() {
	c.stop()
	<-c.done
}
