package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/workflows"
)

// policyDeployment has one service per restart-policy behaviour, so that one
// stack shows them all side by side.
const policyDeployment = `version: v1
deployment: pol
services:
  unhealthy:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["touch /tmp/ok; (sleep 2; rm /tmp/ok) & exec sleep 3600"] }
    stop_grace: 1s
    errors: { on_panic: { action: restart, poll_interval: 1s } }
    health:
      liveness: { exec: ["test", "-f", "/tmp/ok"], period: 500ms, timeout: 2s, failure_threshold: 2 }
  oom:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo up; sleep 1; tail /dev/zero"] }
    resources: { memory: 16Mi, cpus: 0.5, pids: 64 }
    errors: { on_panic: { action: shutdown, poll_interval: 1s } }
  rules:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["if [ -f /tmp/ran ]; then exit 42; fi; touch /tmp/ran; sleep 1; exit 3"] }
    errors:
      on_panic:
        action: restart
        poll_interval: 1s
        rules: [ { exit_codes: [42, 43], action: shutdown } ]
  backoff:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 0.2; exit 3"] }
    errors:
      on_panic: { action: restart, max_restarts: 1, restart_window: 300s, poll_interval: 1s, backoff: { initial: 2s, max: 8s, multiplier: 2 } }
  reset:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; if [ $n = 4 ]; then sleep 4; else sleep 0.2; fi; exit 3"] }
    errors:
      on_panic: { action: restart, max_restarts: 1, restart_window: 300s, poll_interval: 1s, backoff: { initial: 2s, max: 8s, multiplier: 2, reset_after: 3s } }
  jitter:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 0.2; exit 3"] }
    scale: { mode: fixed, replicas: 2 }
    errors:
      on_panic: { action: restart, max_restarts: 1, restart_window: 300s, poll_interval: 1s, backoff: { initial: 4s, max: 60s, multiplier: 2, jitter: 1 } }
`

// backoffTimers are the durations of the workflow's durable crash-loop
// backoff timers, from its history: the waits the policy decided.
func backoffTimers(t *testing.T, s *tstack, workflowID string) []time.Duration {
	t.Helper()
	h := s.history(workflowID)
	var out []time.Duration
	for _, ev := range h.Events {
		if a := ev.GetTimerStartedEventAttributes(); a != nil && strings.Contains(ev.GetUserMetadata().GetSummary().String(), "crash-loop backoff") {
			out = append(out, a.GetStartToFireTimeout().AsDuration())
		}
	}
	return out
}

func reasonsOf(v workflows.StateView) []string {
	out := make([]string, len(v.Events))
	for i, e := range v.Events {
		if e.Reason != nil {
			out[i] = *e.Reason
		}
	}
	return out
}

// The restart policy end to end, against real containerd and the dev
// server: a liveness failure restarts with reason Unhealthy; a memory limit
// exceeded shows OOMKilled; a rule maps exit 42 to Shutdown while exit 3
// restarts; exponential backoff episodes wait 2 s, 4 s, 8 s, 8 s; the jitter
// differs between two replicas; a good run resets the backoff.
func TestRestartPolicyEndToEnd(t *testing.T) {
	s := newStack(t)
	tasks := recordTaskEvents(t, s.Stack)
	s.supervise(s.deployment("pol", policyDeployment))

	t.Run("liveness failure restarts as Unhealthy", func(t *testing.T) {
		v := s.waitFor("pol/unhealthy-rep-1", "a restart after a liveness failure", time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts >= 1
		})
		if v.LastExitReason == nil || *v.LastExitReason != "Unhealthy" || reasonsOf(v)[0] != "Unhealthy" {
			t.Fatalf("last exit reason %v, event reasons %v; want Unhealthy", v.LastExitReason, reasonsOf(v))
		}
		if v.Health == nil {
			t.Fatal("a service with a probe shows no health")
		}
		healthy := s.waitFor("pol/unhealthy-rep-1", "healthy again", 30*time.Second, func(v workflows.StateView) bool {
			return v.Health != nil && *v.Health == "healthy"
		})
		t.Logf("restarts %d, health %s, last exit %d (%s)", healthy.TotalRestarts, *healthy.Health, *healthy.LastExitCode, *healthy.LastExitReason)
	})
	t.Run("memory limit exceeded is OOMKilled", func(t *testing.T) {
		v := s.waitFor("pol/oom-rep-1", "Shutdown", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateShutdown })
		if v.LastExitReason == nil || *v.LastExitReason != "OOMKilled" || v.LastExitSignal == nil || *v.LastExitSignal != "SIGKILL" || *v.LastExitCode != 137 {
			t.Fatalf("last exit %v %v %v, want 137 OOMKilled SIGKILL", *v.LastExitCode, v.LastExitReason, v.LastExitSignal)
		}
		out := s.vigil("status", "pol/oom-rep-1")
		if !strings.Contains(out.Stdout, "137 (OOMKilled, SIGKILL)") {
			t.Errorf("vigil status: %q", out.Stdout)
		}
	})
	t.Run("exit 42 shuts down while exit 3 restarts", func(t *testing.T) {
		v := s.waitFor("pol/rules-rep-1", "Shutdown", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateShutdown })
		want := []workflows.EventType{workflows.EventContainerRestarted, workflows.EventServiceShutdown}
		if got := eventTypes(v); !equalTypes(got, want) || *v.Events[0].ExitCode != 3 || *v.Events[1].ExitCode != 42 {
			t.Fatalf("events %+v, want a restart after exit 3 and a shutdown after exit 42", v.Events)
		}
	})
	t.Run("exponential backoff waits 2s 4s 8s 8s", func(t *testing.T) {
		s.waitFor("pol/backoff-rep-1", "four backoff episodes", 2*time.Minute, func(v workflows.StateView) bool { return v.TotalRestarts >= 5 })
		// What the policy decided, exactly: the durable timers.
		timers := backoffTimers(t, s, "vigil/pol/backoff-rep-1")
		want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
		if len(timers) < 4 || !slices.Equal(timers[:4], want) {
			t.Fatalf("backoff timers %v, want %v", timers, want)
		}
		// What happened, by containerd's events: no restart before its
		// backoff ran out (a restart also takes its own time on a busy node).
		waits := tasks.Restarts("pol.backoff-rep-1")
		t.Logf("waits from exit to the next start, by containerd's events: %v", waits)
		if len(waits) < 5 {
			t.Fatalf("%d waits, want 5", len(waits))
		}
		for i, w := range append([]time.Duration{0}, want...) {
			if waits[i] < w || waits[i] > w+5*time.Second {
				t.Errorf("wait %d: %s, want %s plus the restart's own time", i, waits[i], w)
			}
		}
	})
	t.Run("jitter differs between replicas", func(t *testing.T) {
		first := func(ref string) time.Duration {
			s.waitFor(ref, "CrashLoopBackOff", time.Minute, inBackoff)
			timers := backoffTimers(t, s, "vigil/"+ref)
			if len(timers) == 0 || timers[0] < 4*time.Second || timers[0] >= 8*time.Second {
				t.Fatalf("%s: backoff timers %v; want the first 4 s plus up to 100%%", ref, timers)
			}
			return timers[0]
		}
		a, b := first("pol/jitter-rep-1"), first("pol/jitter-rep-2")
		t.Logf("first backoff: replica 1 %s, replica 2 %s", a, b)
		if a == b {
			t.Errorf("replicas back off in lockstep: %s and %s", a, b)
		}
	})
	t.Run("a good run resets the backoff", func(t *testing.T) {
		s.waitFor("pol/reset-rep-1", "the start after the good run", 2*time.Minute, func(v workflows.StateView) bool { return v.TotalRestarts >= 4 })
		// Runs 1-3 crash at once (no wait, 2 s, 4 s); run 4 lasts 4 s, more
		// than reset_after, so its crash waits 2 s again, not 8 s.
		timers := backoffTimers(t, s, "vigil/pol/reset-rep-1")
		want := []time.Duration{2 * time.Second, 4 * time.Second, 2 * time.Second}
		if len(timers) < 3 || !slices.Equal(timers[:3], want) {
			t.Fatalf("backoff timers %v, want %v", timers, want)
		}
		waits := tasks.Restarts("pol.reset-rep-1")
		t.Logf("waits by containerd's events: %v", waits)
		if len(waits) < 4 || waits[3] < 2*time.Second || waits[3] > 7*time.Second {
			t.Errorf("wait after the good run: %v, want 2 s (reset) plus the restart's own time, not 8 s", waits)
		}
	})
	replayHistory(t, s, "vigil/pol/backoff-rep-1")
}
