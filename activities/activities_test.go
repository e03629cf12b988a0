package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

var web = replica.ID{Deployment: "shop", Service: "web", Replica: 1}

var busybox = runtime.ContainerSpec{Image: "docker.io/library/busybox:local", PullPolicy: runtime.PullNever}

// harness runs activities over rt in Temporal's activity test environment.
type harness struct {
	t          *testing.T
	env        *testsuite.TestActivityEnvironment
	mu         sync.Mutex
	heartbeats int
}

func newHarness(t *testing.T, rt runtime.Runtime, opts activities.Options) *harness {
	var suite testsuite.WorkflowTestSuite
	h := &harness{t: t, env: suite.NewTestActivityEnvironment()}
	h.env.RegisterActivity(activities.New(rt, opts))
	h.env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) {
		h.mu.Lock()
		h.heartbeats++
		h.mu.Unlock()
	})
	return h
}

func (h *harness) Heartbeats() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.heartbeats
}

// run executes the named activity and decodes its result into out.
func (h *harness) run(name string, in, out any) error {
	h.t.Helper()
	val, err := h.env.ExecuteActivity(name, in)
	if err != nil {
		return err
	}
	if out != nil {
		if err := val.Get(out); err != nil {
			h.t.Fatalf("decode %s result: %v", name, err)
		}
	}
	return nil
}

func (h *harness) ensure(in activities.EnsureRunningInput) activities.EnsureRunningResult {
	h.t.Helper()
	var res activities.EnsureRunningResult
	if err := h.run(replica.EnsureRunningName, in, &res); err != nil {
		h.t.Fatalf("EnsureRunning: %v", err)
	}
	return res
}

func (h *harness) waitForExit(id replica.ID, poll time.Duration) runtime.Exit {
	h.t.Helper()
	var res runtime.Exit
	if err := h.run(replica.WaitForExitName, activities.WaitForExitInput{ID: id, PollInterval: poll}, &res); err != nil {
		h.t.Fatalf("WaitForExit: %v", err)
	}
	return res
}

// applicationError asserts err is an application error of errType with the given retryability.
func applicationError(t *testing.T, err error, errType string, nonRetryable bool) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v (%T) is not an application error", err, err)
	}
	if appErr.Type() != errType || appErr.NonRetryable() != nonRetryable {
		t.Fatalf("error type %q non-retryable %v, want %q %v: %v", appErr.Type(), appErr.NonRetryable(), errType, nonRetryable, err)
	}
}

// retryableError asserts err is an error the retry policy will retry.
func retryableError(t *testing.T, err error) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if err == nil || (errors.As(err, &appErr) && appErr.NonRetryable()) {
		t.Fatalf("error %v, want a retryable one", err)
	}
}

func TestEnsureRunningIsIdempotent(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})

	first := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: time.Now()})
	second := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: time.Now()})
	if first.AlreadyRunning || !second.AlreadyRunning || !second.StartedAt.Equal(first.StartedAt) {
		t.Fatalf("first %+v, second %+v; want one start then AlreadyRunning", first, second)
	}
	if c, _ := rt.Container(web); c.Starts != 1 {
		t.Fatalf("started %d times, want 1", c.Starts)
	}
}

func TestEnsureRunningDoesNotRestartATaskThatExitedSinceAfter(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	decided := time.Now().Add(-time.Second)

	// An attempt started the task, then the worker died; the task exited meanwhile.
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: decided})
	rt.Exit(web, 3)
	retry := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: decided})
	if !retry.ExitedSince {
		t.Fatalf("retried EnsureRunning = %+v, want ExitedSince", retry)
	}
	c, _ := rt.Container(web)
	if c.Starts != 1 {
		t.Fatalf("a retried attempt started the task again (%d starts)", c.Starts)
	}
	if got := h.waitForExit(web, time.Second); got.ExitCode != 3 || !got.ExitedAt.Equal(c.State.ExitedAt) {
		t.Fatalf("WaitForExit = %+v, want the exit the retry skipped (%+v)", got, c.State)
	}

	// Answering that exit starts a new task.
	answer := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: c.State.ExitedAt})
	if answer.ExitedSince || answer.AlreadyRunning {
		t.Fatalf("restart after the exit = %+v, want a fresh start", answer)
	}
	if c, _ := rt.Container(web); c.Starts != 2 {
		t.Fatalf("%d starts, want 2", c.Starts)
	}
}

func TestEnsureRunningResolvesEnvReferences(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{LookupEnv: func(name string) (string, bool) {
		v, ok := map[string]string{"API_TOKEN": "s3cret"}[name]
		return v, ok
	}})
	spec := busybox
	spec.Env = map[string]string{"TOKEN": "$E:API_TOKEN", "MODE": "prod"}
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: spec})
	c, _ := rt.Container(web)
	if c.Spec.Env["TOKEN"] != "s3cret" || c.Spec.Env["MODE"] != "prod" {
		t.Fatalf("container env = %v", c.Spec.Env)
	}

	spec.Env = map[string]string{"DB": "$E:DB_PASSWORD"}
	other := replica.ID{Deployment: "shop", Service: "db", Replica: 1}
	err := h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: other, Spec: spec}, nil)
	applicationError(t, err, replica.ErrTypeBadSpec, true)
	if !strings.Contains(err.Error(), "env.DB") || !strings.Contains(err.Error(), "DB_PASSWORD") {
		t.Fatalf("error does not name the field and the variable: %v", err)
	}
}

func TestEnsureRunningErrors(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})

	missing := busybox
	missing.Image = "docker.io/library/gone:1"
	rt.MissingImage(missing.Image)
	err := h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: missing}, nil)
	applicationError(t, err, replica.ErrTypeImageNotFound, true)

	rt.FailNext(runtimetest.OpCreate, fmt.Errorf("dial: %w", runtime.ErrUnavailable))
	err = h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox}, nil)
	retryableError(t, err)

	// A spec the node refuses is neither retried by the activity nor
	// reported as a crash: the workflow retries it with growing delays.
	rt.FailNext(runtimetest.OpCreate, fmt.Errorf("volumes[0].source: missing: %w", runtime.ErrInvalidSpec))
	err = h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox}, nil)
	applicationError(t, err, replica.ErrTypeBadSpec, true)
	rt.FailStarts(web, fmt.Errorf("ports[0].host: in use: %w", runtime.ErrInvalidSpec))
	err = h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox, After: time.Now()}, nil)
	applicationError(t, err, replica.ErrTypeBadSpec, true)
}

// A host port in use is its own type, and the error's text (the replica's
// start error) begins with the type's name.
func TestEnsureRunningPortInUse(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	inUse := &runtime.PortInUse{Port: runtime.PortMapping{Host: 8080, Container: 80, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}, By: "process python3 (pid 7)"}
	rt.FailStarts(web, fmt.Errorf("containerd start x: %w", inUse))
	err := h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox}, nil)
	applicationError(t, err, replica.ErrTypePortInUse, true)
	var appErr *temporal.ApplicationError
	errors.As(err, &appErr)
	if want := "PortInUse: host port 127.0.0.1:8080 is in use by process python3 (pid 7)"; !strings.HasPrefix(appErr.Message(), want) {
		t.Fatalf("message %q, want it to begin with %q", appErr.Message(), want)
	}
}

func TestStartFailureBecomesAFailedExit(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	rt.FailStarts(web, errors.New(`exec: "/nope": no such file or directory`))

	res := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: time.Now()})
	if !res.ExitedSince || !strings.Contains(res.StartError, "/nope") {
		t.Fatalf("EnsureRunning = %+v, want ExitedSince with the start error", res)
	}
	exit := h.waitForExit(web, time.Second)
	if exit.ExitCode != -1 || !strings.Contains(exit.Reason, "/nope") || exit.ExitedAt.IsZero() {
		t.Fatalf("WaitForExit = %+v, want -1 with the reason", exit)
	}
}

func TestWaitForExit(t *testing.T) {
	t.Run("exit while waiting", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{HeartbeatInterval: 10 * time.Millisecond})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		time.AfterFunc(200*time.Millisecond, func() { rt.Exit(web, 2) })
		if got := h.waitForExit(web, time.Minute); got.ExitCode != 2 || got.ExitedAt.IsZero() {
			t.Fatalf("WaitForExit = %+v", got)
		}
		if h.Heartbeats() == 0 {
			t.Fatal("no heartbeat while waiting")
		}
	})

	t.Run("worker stopping hands the watch over", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		stop := make(chan struct{})
		h.env.SetWorkerStopChannel(stop)
		time.AfterFunc(100*time.Millisecond, func() { close(stop) })
		err := h.run(replica.WaitForExitName, activities.WaitForExitInput{ID: web, PollInterval: time.Minute}, nil)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != replica.ErrTypeWorkerStopping || appErr.NonRetryable() {
			t.Fatalf("WaitForExit on worker stop = %v, want a retryable %s error", err, replica.ErrTypeWorkerStopping)
		}
		if st, _ := rt.State(context.Background(), web); st.Status != runtime.StatusRunning {
			t.Fatalf("container %s after the handover, want it left running", st.Status)
		}
	})

	t.Run("exit that happened unwatched", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		rt.Exit(web, 9)
		if got := h.waitForExit(web, time.Minute); got.ExitCode != 9 {
			t.Fatalf("WaitForExit = %+v", got)
		}
	})

	t.Run("deleted behind our back", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		time.AfterFunc(100*time.Millisecond, func() { rt.Delete(web) })
		got := h.waitForExit(web, time.Minute)
		if got.ExitCode != -1 || got.Reason != activities.DeletedReason {
			t.Fatalf("WaitForExit = %+v, want -1 with reason %q", got, activities.DeletedReason)
		}
	})

	t.Run("runtime unavailable, then the exit", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		rt.FailNext(runtimetest.OpWait, runtime.ErrUnavailable, runtime.ErrUnavailable)
		time.AfterFunc(500*time.Millisecond, func() { rt.Exit(web, 4) })
		if got := h.waitForExit(web, time.Minute); got.ExitCode != 4 {
			t.Fatalf("WaitForExit = %+v, want the real exit 4, not a made-up one", got)
		}
		if rt.Calls(runtimetest.OpWait) < 2 {
			t.Fatalf("Wait was not retried (%d calls)", rt.Calls(runtimetest.OpWait))
		}
	})

	t.Run("poll finds an exit the wait missed", func(t *testing.T) {
		rt := runtimetest.New()
		h := newHarness(t, rt, activities.Options{})
		h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
		unavailable := make([]error, 100)
		for i := range unavailable {
			unavailable[i] = runtime.ErrUnavailable
		}
		rt.FailNext(runtimetest.OpWait, unavailable...)
		rt.Exit(web, 6)
		if got := h.waitForExit(web, 50*time.Millisecond); got.ExitCode != 6 {
			t.Fatalf("WaitForExit = %+v", got)
		}
	})
}

func TestStop(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})

	var res runtime.Exit
	if err := h.run(replica.StopName, activities.StopInput{ID: web, Grace: time.Second}, &res); err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 143 || res.ExitedAt.IsZero() || res.ExitedBeforeStop {
		t.Fatalf("Stop = %+v, want the SIGTERM exit", res)
	}
	// A task that crashed before the stop: its own exit, said to be one.
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox, After: res.ExitedAt})
	rt.Exit(web, 7)
	if err := h.run(replica.StopName, activities.StopInput{ID: web, Grace: time.Second}, &res); err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 || !res.ExitedBeforeStop || res.Cause != runtime.ExitExited {
		t.Fatalf("Stop of a task that had exited = %+v, want its exit 7, ExitedBeforeStop", res)
	}
	if err := h.run(replica.StopName, activities.StopInput{ID: web, Remove: true}, &res); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Container(web); ok {
		t.Fatal("Stop with Remove left the container")
	}
	if n := rt.Calls(runtimetest.OpRemoveVolumes); n != 0 {
		t.Fatalf("Stop with Remove removed volumes (%d calls); only RemoveVolumes may", n)
	}
	if err := h.run(replica.StopName, activities.StopInput{ID: web, Remove: true, RemoveVolumes: true}, &res); err != nil {
		t.Fatal(err)
	}
	if n := rt.Calls(runtimetest.OpRemoveVolumes); n != 1 {
		t.Fatalf("Stop with RemoveVolumes: %d RemoveVolumes calls, want 1", n)
	}
	if err := h.run(replica.StopName, activities.StopInput{ID: web}, &res); err != nil {
		t.Fatalf("stopping a missing container: %v", err)
	}
}

func TestIsolateCallsWebhookAndSurvivesItsFailure(t *testing.T) {
	rt := runtimetest.New()
	events := make(chan activities.IsolationEvent, 1)
	status := http.StatusNoContent
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev activities.IsolationEvent
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &ev); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook body %s: %v", body, err)
		}
		events <- ev
		w.WriteHeader(status)
	}))
	defer hook.Close()
	h := newHarness(t, rt, activities.Options{Node: "n1"})
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
	rt.Exit(web, 1)

	if err := h.run(replica.IsolateName, activities.IsolateInput{ID: web, ExitCode: 1, Webhook: hook.URL}, nil); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev.Event != "ContainerIsolated" || ev.Ref != "shop/web-rep-1" || ev.ExitCode != 1 || ev.Node != "n1" || ev.Time.IsZero() {
		t.Fatalf("webhook event = %+v", ev)
	}
	if c, _ := rt.Container(web); !c.Isolated || c.State.ExitCode != 1 {
		t.Fatalf("container after isolate = %+v, want isolated with its exit kept", c)
	}

	status = http.StatusInternalServerError
	if err := h.run(replica.IsolateName, activities.IsolateInput{ID: web, ExitCode: 1, Webhook: hook.URL}, nil); err != nil {
		t.Fatalf("a failing webhook failed the isolation: %v", err)
	}
	<-events
	if err := h.run(replica.IsolateName, activities.IsolateInput{ID: web, Webhook: "http://127.0.0.1:1/unreachable"}, nil); err != nil {
		t.Fatalf("an unreachable webhook failed the isolation: %v", err)
	}
}

func TestLogs(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox})
	rt.WriteLog(web, "one\ntwo\nthree\n")
	var res activities.LogsResult
	if err := h.run(replica.LogsName, activities.LogsInput{ID: web, Tail: 2}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Output != "two\nthree\n" {
		t.Fatalf("logs = %q", res.Output)
	}
	unknown := replica.ID{Deployment: "shop", Service: "nope", Replica: 1}
	err := h.run(replica.LogsName, activities.LogsInput{ID: unknown}, nil)
	applicationError(t, err, replica.ErrTypeContainerNotFound, true)
}

func TestContainerVanishingBeforeStartIsRetried(t *testing.T) {
	rt := runtimetest.New()
	h := newHarness(t, rt, activities.Options{})
	rt.FailNext(runtimetest.OpStart, fmt.Errorf("fake: %w", runtime.ErrContainerNotFound))
	retryableError(t, h.run(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox}, nil))
	if res := h.ensure(activities.EnsureRunningInput{ID: web, Spec: busybox}); res.StartedAt.IsZero() {
		t.Fatalf("the retry did not start the container: %+v", res)
	}
}
