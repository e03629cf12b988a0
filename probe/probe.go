// Package probe runs a container's liveness and startup probes on its node.
//
// A Prober follows one running task: startup until it succeeds once, then
// liveness. It reports health changes only (starting, healthy, unhealthy),
// so a healthy container costs nothing upstream. When liveness fails
// FailureThreshold times in a row it marks the container unhealthy and stops
// it with its stop grace: the exit then reads Unhealthy and the workflow
// handles it like a crash.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Target is what the prober needs of the runtime (runtime/containerd.Runtime).
type Target interface {
	// Exec runs args in the container and returns its exit code and the
	// first line of its output ("" if none, or not captured).
	Exec(ctx context.Context, id replica.ID, args []string, timeout time.Duration) (int, string, error)
	// Dial connects to a port of the container from inside its network namespace.
	Dial(ctx context.Context, id replica.ID, port int, timeout time.Duration) (net.Conn, error)
	// StopUnhealthy marks the container's task that started at task as
	// stopped for failing a probe, and stops it with grace; a task started
	// at another time (the container restarted meanwhile) is left alone:
	// runtime.ErrTaskChanged. A zero task stops whichever task runs.
	StopUnhealthy(ctx context.Context, id replica.ID, task time.Time, grace time.Duration) error
}

// Prober probes one container's running task.
type Prober struct {
	Target Target
	ID     replica.ID
	// Task is when the probed task started: only it is ever stopped.
	Task   time.Time
	Health runtime.Health
	// OnChange is called with each new health status (not with the first,
	// starting, which is what the workflow assumes of a new task) and what
	// the last failed probe said ("" if none failed).
	OnChange func(status runtime.HealthStatus, detail string)
	// Logf, if set, is told about failures.
	Logf func(format string, args ...any)

	// lastFailure is what the last failed probe said.
	lastFailure string
}

// Run probes until ctx ends or the container has been stopped as unhealthy
// (then it returns nil).
func (p *Prober) Run(ctx context.Context) error {
	status := runtime.HealthStarting
	set := func(s runtime.HealthStatus) {
		if s != status {
			status = s
			if p.OnChange != nil {
				p.OnChange(s, p.lastFailure)
			}
		}
	}
	if su := p.Health.Startup; su != nil {
		ok, err := p.loop(ctx, su, func(ok bool) bool { return ok })
		if err != nil {
			return err
		}
		if !ok {
			// A container that never starts up is unhealthy, as in Kubernetes.
			set(runtime.HealthUnhealthy)
			return p.stop(ctx, "startup")
		}
		if p.Health.Liveness == nil {
			set(runtime.HealthHealthy)
			<-ctx.Done()
			return ctx.Err()
		}
	}
	lv := p.Health.Liveness
	if lv == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := p.loop(ctx, lv, func(ok bool) bool {
		if ok {
			set(runtime.HealthHealthy)
		}
		return false // liveness runs for the task's whole life
	})
	if err != nil {
		return err
	}
	set(runtime.HealthUnhealthy)
	return p.stop(ctx, "liveness")
}

// loop probes every period after the initial delay. Each result goes to
// done; it returns true when done says so, false after failure_threshold
// failures in a row.
func (p *Prober) loop(ctx context.Context, pr *runtime.Probe, done func(ok bool) bool) (bool, error) {
	if err := sleep(ctx, pr.InitialDelay); err != nil {
		return false, err
	}
	threshold := max(pr.FailureThreshold, 1)
	failures := 0
	for {
		err := p.once(ctx, pr)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil {
			failures = 0
			if done(true) {
				return true, nil
			}
		} else {
			failures++
			p.lastFailure = Detail(err)
			p.logf("probe of %s failed (%d of %d): %v", p.ID.Ref(), failures, threshold, err)
			done(false)
			if failures >= threshold {
				return false, nil
			}
		}
		if err := sleep(ctx, max(pr.Period, 100*time.Millisecond)); err != nil {
			return false, err
		}
	}
}

// maxDetail bounds what a failed probe reports (one line).
const maxDetail = 200

// Detail is a failed probe's error as one short line: the HTTP status, the
// exec's exit code and first line of output, or the TCP error.
func Detail(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if r := []rune(msg); len(r) > maxDetail {
		msg = string(r[:maxDetail-1]) + "…"
	}
	return msg
}

// once runs one probe: nil is success.
func (p *Prober) once(ctx context.Context, pr *runtime.Probe) error {
	timeout := pr.Timeout
	if timeout <= 0 {
		timeout = runtime.DefaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case len(pr.Exec) > 0:
		code, out, err := p.Target.Exec(ctx, p.ID, pr.Exec, timeout)
		if err != nil {
			return err
		}
		if code != 0 {
			msg := fmt.Sprintf("exec %v exited %d", pr.Exec, code)
			if out != "" {
				msg += ": " + out
			}
			return errors.New(msg)
		}
		return nil
	case pr.TCP != nil:
		conn, err := p.Target.Dial(ctx, p.ID, pr.TCP.Port, timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	case pr.HTTP != nil:
		return p.httpGet(ctx, pr.HTTP, timeout)
	}
	return fmt.Errorf("probe has none of exec, http and tcp")
}

func (p *Prober) httpGet(ctx context.Context, hp *runtime.HTTPProbe, timeout time.Duration) error {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return p.Target.Dial(ctx, p.ID, hp.Port, timeout)
			},
		},
		// A redirect is an answer; following it could leave the container.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(hp.Port)+hp.Path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %s", hp.Path, resp.Status)
	}
	return nil
}

// stop marks the container unhealthy and stops it with its stop grace.
func (p *Prober) stop(ctx context.Context, which string) error {
	p.logf("%s probe of %s failed %d times in a row; stopping it as Unhealthy", which, p.ID.Ref(), p.threshold(which))
	grace := p.Health.StopGrace
	if grace <= 0 {
		grace = runtime.DefaultStopGrace
	}
	err := p.Target.StopUnhealthy(ctx, p.ID, p.Task, grace)
	if errors.Is(err, runtime.ErrTaskChanged) {
		// The probed task ended and the container was started again
		// meanwhile: the new task has its own prober.
		p.logf("%s of %s: not stopped, its task was started again meanwhile", which, p.ID.Ref())
		return nil
	}
	return err
}

func (p *Prober) threshold(which string) int {
	if which == "startup" && p.Health.Startup != nil {
		return p.Health.Startup.FailureThreshold
	}
	if p.Health.Liveness != nil {
		return p.Health.Liveness.FailureThreshold
	}
	return 0
}

func (p *Prober) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Once runs one probe of p's container: nil is success.
func Once(ctx context.Context, p *Prober, pr *runtime.Probe) error { return p.once(ctx, pr) }
