// Package runtimetest is an in-memory runtime.Runtime for unit tests, with
// knobs to script what real containers do: exit with a code, fail to start,
// vanish, or have their runtime become unavailable.
package runtimetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Op names a Runtime method, for counting calls and injecting errors.
type Op string

const (
	OpCreate Op = "Create"
	OpStart  Op = "Start"
	OpState  Op = "State"
	OpWait   Op = "Wait"
	OpStop   Op = "Stop"
	OpRemove Op = "Remove"
	// OpRemoveVolumes counts RemoveVolumes calls (the fake keeps no volumes).
	OpRemoveVolumes Op = "RemoveVolumes"
	OpIsolate       Op = "Isolate"
	OpLogs          Op = "Logs"
	OpList          Op = "List"
	OpMarkReported  Op = "MarkReported"
	OpCheckPorts    Op = "CheckPorts"
	OpPreflight     Op = "Preflight"
)

// Fake is a scriptable in-memory Runtime. The zero value is not usable; use New.
type Fake struct {
	mu            sync.Mutex
	now           func() time.Time
	containers    map[replica.ID]*container
	missingImages map[string]bool
	errs          map[Op][]error // injected errors, consumed one per call
	calls         map[Op]int
	nextPID       uint32
	// exitOnStart makes each new task of a container exit at once with the code.
	exitOnStart map[replica.ID]int
	// startErr makes starts of a container fail with the error (it stays Failed).
	startErr map[replica.ID]error
	// subs are the open Events streams.
	subs map[*subscriber]struct{}
}

type subscriber struct {
	events chan runtime.TaskEvent
	errs   chan error
}

type container struct {
	id        replica.ID
	spec      runtime.ContainerSpec
	state     runtime.ContainerState
	startedAt time.Time
	pid       uint32
	starts    int
	isolated  bool
	reported  time.Time // MarkReported's exit time
	logs      bytes.Buffer
	exited    chan struct{} // closed when the current task stops or the container is deleted
}

// New returns an empty fake runtime using the wall clock.
func New() *Fake {
	return &Fake{
		now:           time.Now,
		containers:    map[replica.ID]*container{},
		missingImages: map[string]bool{},
		errs:          map[Op][]error{},
		calls:         map[Op]int{},
		exitOnStart:   map[replica.ID]int{},
		startErr:      map[replica.ID]error{},
		nextPID:       100,
		subs:          map[*subscriber]struct{}{},
	}
}

var _ runtime.Runtime = (*Fake)(nil)

// SetClock replaces the clock used for start and exit times.
func (f *Fake) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// --- scripting ---

// FailNext makes the next calls of op fail with errs, one error per call.
func (f *Fake) FailNext(op Op, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[op] = append(f.errs[op], errs...)
}

// MissingImage makes Create of image fail with runtime.ErrImageNotFound.
func (f *Fake) MissingImage(image string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missingImages[image] = true
}

// ExitOnStart makes every later task of id exit at once with code (-1 to stop doing so).
func (f *Fake) ExitOnStart(id replica.ID, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code < 0 {
		delete(f.exitOnStart, id)
		return
	}
	f.exitOnStart[id] = code
}

// FailStarts makes every later Start of id fail with err, leaving it Failed (nil to stop).
func (f *Fake) FailStarts(id replica.ID, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.startErr, id)
		return
	}
	f.startErr[id] = err
}

// Exit makes the running task of id exit with code now.
func (f *Fake) Exit(id replica.ID, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil && c.state.Status == runtime.StatusRunning {
		f.exit(c, code)
	}
}

// Delete removes id behind the supervisor's back; waiters see ErrContainerNotFound.
func (f *Fake) Delete(id replica.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		if c.state.Status == runtime.StatusRunning {
			// Deleting a running task kills it, as containerd does.
			f.publish(runtime.TaskEvent{Kind: runtime.TaskExited, ID: id, Exit: runtime.Exit{ExitCode: 137, ExitedAt: f.now()}})
		}
		closeOnce(c.exited)
		delete(f.containers, id)
	}
}

// LoseTask makes id's task vanish without an exit event, as a host reboot
// does: the container stays, Failed, with no task.
func (f *Fake) LoseTask(id replica.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		c.state = runtime.Failed("container has no task")
		closeOnce(c.exited)
	}
}

// WriteLog appends output to id's captured log.
func (f *Fake) WriteLog(id replica.ID, output string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		c.logs.WriteString(output)
	}
}

// --- inspection ---

// Snapshot is what a test can see of a fake container.
type Snapshot struct {
	Spec      runtime.ContainerSpec
	State     runtime.ContainerState
	StartedAt time.Time
	Starts    int // tasks started so far
	Isolated  bool
}

// Container returns what the fake holds for id.
func (f *Fake) Container(id replica.ID) (Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil {
		return Snapshot{}, false
	}
	return Snapshot{Spec: c.spec, State: c.state, StartedAt: c.startedAt, Starts: c.starts, Isolated: c.isolated}, true
}

// Calls counts the calls of op so far, failed ones included.
func (f *Fake) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// --- runtime.Runtime ---

// enter counts the call and returns an injected error, if any. f.mu must be held.
func (f *Fake) enter(op Op) error {
	f.calls[op]++
	if errs := f.errs[op]; len(errs) > 0 {
		f.errs[op] = errs[1:]
		return errs[0]
	}
	return nil
}

// get returns id's container or ErrContainerNotFound. f.mu must be held.
func (f *Fake) get(id replica.ID) (*container, error) {
	c := f.containers[id]
	if c == nil {
		return nil, fmt.Errorf("fake %s: %w", id.Ref(), runtime.ErrContainerNotFound)
	}
	return c, nil
}

func (f *Fake) Create(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpCreate); err != nil {
		return err
	}
	if f.containers[id] != nil {
		return nil
	}
	if f.missingImages[spec.Image] {
		return fmt.Errorf("fake image %s: %w", spec.Image, runtime.ErrImageNotFound)
	}
	f.containers[id] = &container{id: id, spec: spec, state: runtime.Failed("never started"), exited: make(chan struct{})}
	return nil
}

// CheckPorts refuses a host port another container of the fake publishes
// (a process on the host holding one is scripted with FailNext).
func (f *Fake) CheckPorts(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpCheckPorts); err != nil {
		return err
	}
	if spec.Network != runtime.NetworkBridge {
		return nil
	}
	for other, c := range f.containers {
		if other == id || c.spec.Network != runtime.NetworkBridge {
			continue
		}
		for i, p := range spec.Ports {
			for _, q := range c.spec.Ports {
				if runtime.PortsClash(p, q) {
					return &runtime.PortInUse{Index: i, Port: p, By: "container " + other.ContainerName()}
				}
			}
		}
	}
	return nil
}

// Preflight reports a missing image (MissingImage); other problems are
// scripted with FailNext.
func (f *Fake) Preflight(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) ([]runtime.Problem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpPreflight); err != nil {
		var p *runtime.Problem
		if errors.As(err, &p) {
			return []runtime.Problem{*p}, nil
		}
		return nil, err
	}
	if f.missingImages[spec.Image] {
		return []runtime.Problem{{Field: "image", Reason: spec.Image + " is not on the fake node"}}, nil
	}
	return nil, nil
}

func (f *Fake) Start(ctx context.Context, id replica.ID) (runtime.StartInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpStart); err != nil {
		return runtime.StartInfo{}, err
	}
	c, err := f.get(id)
	if err != nil {
		return runtime.StartInfo{}, err
	}
	notBefore := f.now()
	if c.state.Status == runtime.StatusRunning {
		return runtime.StartInfo{StartedAt: c.startedAt, AlreadyRunning: true, PID: c.pid, NotBefore: notBefore}, nil
	}
	closeOnce(c.exited)
	c.exited = make(chan struct{})
	if err := f.startErr[id]; err != nil {
		c.state = runtime.Failed(err.Error())
		closeOnce(c.exited)
		return runtime.StartInfo{}, err
	}
	f.nextPID++
	c.pid, c.startedAt, c.state = f.nextPID, f.now(), runtime.Running()
	c.starts++
	f.publish(runtime.TaskEvent{Kind: runtime.TaskStarted, ID: id})
	if code, ok := f.exitOnStart[id]; ok {
		f.exit(c, code)
	}
	return runtime.StartInfo{StartedAt: c.startedAt, PID: c.pid, NotBefore: notBefore}, nil
}

// exit ends c's task. f.mu must be held.
func (f *Fake) exit(c *container, code int) {
	at := f.now()
	if at.Before(c.startedAt) {
		at = c.startedAt
	}
	c.state = runtime.Exited(code, at)
	closeOnce(c.exited)
	f.publish(runtime.TaskEvent{Kind: runtime.TaskExited, ID: c.id, Exit: runtime.Exit{ExitCode: code, ExitedAt: at, PID: c.pid}})
}

// publish hands ev to every open Events stream. f.mu must be held. A stream
// that does not keep up loses the event, as a real one would lose it to a
// broken connection (List catches up).
func (f *Fake) publish(ev runtime.TaskEvent) {
	for s := range f.subs {
		select {
		case s.events <- ev:
		default:
		}
	}
}

// OOM publishes an OOM kill of id's task (its exit is up to the test).
func (f *Fake) OOM(id replica.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publish(runtime.TaskEvent{Kind: runtime.TaskOOM, ID: id})
}

// BreakEvents ends every open Events stream with err, as a daemon restart does.
func (f *Fake) BreakEvents(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.errs <- err
		delete(f.subs, s)
	}
}

// Subscribers is the number of open Events streams.
func (f *Fake) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Events streams the fake's exits and OOM kills until ctx ends or BreakEvents.
func (f *Fake) Events(ctx context.Context) (<-chan runtime.TaskEvent, <-chan error) {
	s := &subscriber{events: make(chan runtime.TaskEvent, 1024), errs: make(chan error, 1)}
	out := make(chan runtime.TaskEvent)
	errc := make(chan error, 1)
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go func() {
		defer close(out)
		defer close(errc)
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		for {
			select {
			case ev := <-s.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-s.errs:
				errc <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

// List reports every container with its state.
func (f *Fake) List(ctx context.Context) ([]runtime.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpList); err != nil {
		return nil, err
	}
	out := make([]runtime.ContainerInfo, 0, len(f.containers))
	for id, c := range f.containers {
		out = append(out, runtime.ContainerInfo{ID: id, State: c.state, StartedAt: c.startedAt, PID: c.pid, ReportedAt: c.reported})
	}
	return out, nil
}

func (f *Fake) MarkReported(ctx context.Context, id replica.ID, exitedAt time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpMarkReported); err != nil {
		return err
	}
	c, err := f.get(id)
	if err != nil {
		return err
	}
	c.reported = exitedAt
	return nil
}

func (f *Fake) State(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpState); err != nil {
		return runtime.ContainerState{}, err
	}
	c, err := f.get(id)
	if err != nil {
		return runtime.ContainerState{}, err
	}
	st := c.state
	if st.Done() {
		st.Fence = c.spec.Fence // as containerd's runtime, from its label
	}
	return st, nil
}

func (f *Fake) Wait(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	f.mu.Lock()
	if err := f.enter(OpWait); err != nil {
		f.mu.Unlock()
		return runtime.ContainerState{}, err
	}
	c, err := f.get(id)
	if err != nil {
		f.mu.Unlock()
		return runtime.ContainerState{}, err
	}
	exited := c.exited
	f.mu.Unlock()

	select {
	case <-exited:
	case <-ctx.Done():
		return runtime.ContainerState{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, err = f.get(id); err != nil {
		return runtime.ContainerState{}, err
	}
	return c.state, nil
}

// Stop ends a running task: 143 (SIGTERM) with a grace period, 137 (SIGKILL) without.
func (f *Fake) Stop(ctx context.Context, id replica.ID, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpStop); err != nil {
		return err
	}
	c, err := f.get(id)
	if err != nil {
		return err
	}
	if c.state.Status == runtime.StatusRunning {
		code := 137
		if grace > 0 {
			code = 143
		}
		f.exit(c, code)
	}
	return nil
}

func (f *Fake) Remove(ctx context.Context, id replica.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpRemove); err != nil {
		return err
	}
	if c := f.containers[id]; c != nil {
		closeOnce(c.exited)
		delete(f.containers, id)
	}
	return nil
}

func (f *Fake) RemoveVolumes(ctx context.Context, id replica.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter(OpRemoveVolumes)
}

func (f *Fake) Isolate(ctx context.Context, id replica.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpIsolate); err != nil {
		return err
	}
	c, err := f.get(id)
	if err != nil {
		return err
	}
	c.isolated = true
	return nil
}

func (f *Fake) Logs(ctx context.Context, id replica.ID, tail int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(OpLogs); err != nil {
		return nil, err
	}
	c, err := f.get(id)
	if err != nil {
		return nil, err
	}
	lines := bytes.SplitAfter(c.logs.Bytes(), []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return bytes.Join(lines, nil), nil
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
