package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/workflows"
)

// logsDeployment: crashers that each write their run's number as their
// last line, to stderr, and exit, until run perReplica+1 stays up; a
// chatty service that outgrows the rotation; one that prints a marker
// (which its command spells otherwise: the command is in history).
func logsDeployment(replicas, perReplica int, marker string) string {
	crasher := fmt.Sprintf(`n=$(( $(cat /data/n 2>/dev/null || echo 0) + 1 )); echo $n > /data/n; `+
		`if [ $n -gt %d ]; then echo steady; exec sleep 3600; fi; echo "up $n"; echo "last-words $(hostname) $n" >&2; exit 3`, perReplica)
	return `version: v1
deployment: lg
services:
  crasher:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ['` + crasher + `'] }
    scale: { mode: fixed, replicas: ` + itoa(replicas) + ` }
    volumes:
      - { name: data, target: /data }
    errors:
      on_panic: { action: restart, max_restarts: 100000, restart_window: 60s, backoff: 1s, poll_interval: 1s }
  chatty:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["seq 1 20000; echo chatty-done; exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
  ticker:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ['for i in 1 2 3 4; do echo "tick $i"; sleep 1; done; exit 5'] }
    scale: { mode: fixed, replicas: 1 }
    errors:
      on_panic: { action: restart, max_restarts: 100000, restart_window: 60s, backoff: 1s, poll_interval: 1s }
  secret:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["m=` + marker[:4] + `; echo ${m}` + marker[4:] + `; echo ${m}` + marker[4:] + ` >&2; exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
`
}

// Issue 25: every last line a container writes to stderr before it exits is
// in vigil logs (200 of 200; VIGIL_LOGS_RUNS=1000 under make chaos), with
// its run's marker; --previous, --since, --timestamps and --json say what
// they should; --follow shows a line within 2 s and goes on across a
// restart; rotation keeps the configured files; and no history holds a
// line a container printed, however often its logs are read.
func TestLogsKeepEveryLastLine(t *testing.T) {
	t.Parallel() // its own stack, network and worker
	runs := 200
	if v := os.Getenv("VIGIL_LOGS_RUNS"); v != "" {
		var err error
		if runs, err = strconv.Atoi(v); err != nil || runs < 4 {
			t.Fatalf("VIGIL_LOGS_RUNS=%q: want a number of runs, at least 4", v)
		}
	}
	const replicas = 4
	perReplica := (runs + replicas - 1) / replicas
	s := newStack(t, "--log-max-size", "64KiB", "--log-max-files", "3")
	marker := "log-marker-" + randomHex(t)
	s.supervise(s.deployment("lg", logsDeployment(replicas, perReplica, marker)))

	// --follow, from before the ticker's first restart: a line within 2 s
	// of its writing, and the next run's marker and lines after it.
	s.waitFor("lg/ticker-rep-1", "running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	follow := s.follow(t, "lg/ticker-rep-1")
	var connected time.Time // when the first lines came: the CLI had connected
	firstRun, shown, maxLag := 0, 0, time.Duration(0)
	deadline := time.After(90 * time.Second)
	for firstRun == 0 || shown < 2 {
		select {
		case r, ok := <-follow:
			if !ok {
				t.Fatal("vigil logs --follow ended")
			}
			if connected.IsZero() {
				connected = time.Now()
			}
			if r.Time.Before(connected) {
				continue // written before the follow ran
			}
			lag := time.Since(r.Time)
			if lag > 2*time.Second {
				t.Errorf("--follow showed %q %s after it was written", r.Line, lag.Round(time.Millisecond))
			}
			maxLag = max(maxLag, lag)
			if firstRun == 0 {
				firstRun = r.Run
			} else if r.Run > firstRun && r.Stream == ctrlog.StreamStdout {
				shown++ // lines of a later run: the follow went on across the restart
			}
		case <-deadline:
			t.Fatal("--follow showed no two lines of a later run of the ticker within 90 s")
		}
	}
	t.Logf("--follow: each line shown at most %s after it was written", maxLag.Round(time.Millisecond))
	for i := 1; i <= replicas; i++ {
		s.waitFor(fmt.Sprintf("lg/crasher-rep-%d", i), "its runs", 5*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts >= perReplica && v.State == workflows.StateRunning
		})
	}
	kept, calls := 0, 0
	lastWords := regexp.MustCompile(`^last-words (\S+) (\d+)$`)
	for i := 1; i <= replicas; i++ {
		ref := fmt.Sprintf("lg/crasher-rep-%d", i)
		recs := s.logsJSON(ref, "--tail", "0")
		calls++
		seen := map[int]bool{}
		markers := 0
		for _, r := range recs {
			if m := lastWords.FindStringSubmatch(r.Line); m != nil && r.Stream == ctrlog.StreamStderr {
				n, _ := strconv.Atoi(m[2])
				if n != r.Run {
					t.Errorf("%s: %q in run %d", ref, r.Line, r.Run)
				}
				seen[n] = true
			}
			if r.Stream == ctrlog.StreamVigil {
				markers++
				if r.Run > 1 && !strings.Contains(r.Line, fmt.Sprintf("run %d ended: exit code 3 at ", r.Run-1)) {
					t.Errorf("%s: run %d's marker %q does not say how run %d ended", ref, r.Run, r.Line, r.Run-1)
				}
			}
		}
		for n := 1; n <= perReplica; n++ {
			if seen[n] {
				kept++
			} else {
				t.Errorf("%s: the last line of run %d is missing", ref, n)
			}
		}
		if markers != perReplica+1 {
			t.Errorf("%s: %d run markers; want %d", ref, markers, perReplica+1)
		}
	}
	t.Logf("last lines kept: %d of %d", kept, replicas*perReplica)

	// --previous is the run before the current (steady) one; --since and
	// --timestamps; --json is one object per line.
	ref := "lg/crasher-rep-1"
	prev := s.logsJSON(ref, "--previous", "--tail", "0")
	calls++
	// stdout and stderr are two pipes: their lines' order is their reading's.
	if len(prev) != 3 || prev[0].Run != perReplica || prev[0].Stream != ctrlog.StreamVigil ||
		!slices.ContainsFunc(prev, func(r ctrlog.Record) bool { return r.Line == fmt.Sprintf("last-words lg.crasher-rep-1 %d", perReplica) }) {
		t.Errorf("--previous: %+v; want run %d's marker, up and last words", prev, perReplica)
	}
	all := s.logsJSON(ref, "--tail", "0")
	calls++
	since := all[len(all)-4].Time
	got := s.logsJSON(ref, "--since", since.Format(time.RFC3339Nano), "--tail", "0")
	calls++
	if len(got) != 4 || !got[0].Time.Equal(since) {
		t.Errorf("--since %s: %+v; want the last 4 records", since.Format(time.RFC3339Nano), got)
	}
	if recent := s.logsJSON(ref, "--since", "1h", "--tail", "0"); len(recent) != len(all) {
		t.Errorf("--since 1h: %d records; want all %d", len(recent), len(all))
	}
	calls++
	r := s.vigil("logs", ref, "--timestamps", "--tail", "2")
	calls++
	stamped := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (\[vigil\] run|steady)`)
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	if r.Code != 0 || len(lines) != 2 || !stamped.MatchString(lines[0]) || !stamped.MatchString(lines[1]) {
		t.Errorf("--timestamps --tail 2: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	// A new worker on the node (a restart, an upgrade): the follow finds
	// its endpoint and goes on, without repeating a line. (After the
	// crashers' runs: a start the kill cuts short adds a run that never ran.)
	s.killWorker()
	killed := time.Now()
	s.startWorker()
	var lastShown time.Time
	for after := 0; after < 2; {
		select {
		case r, ok := <-follow:
			if !ok {
				t.Fatal("vigil logs --follow ended when the worker was killed")
			}
			if !r.Time.After(lastShown) {
				t.Errorf("--follow showed %+v again, or out of order", r)
			}
			lastShown = r.Time
			if r.Time.After(killed) && r.Stream == ctrlog.StreamStdout {
				after++
			}
		case <-time.After(90 * time.Second):
			t.Fatal("--follow showed no new line within 90 s of the worker's restart")
		}
	}

	// Rotation: at most --log-max-files files of about --log-max-size, the
	// newest output in them.
	s.waitFor("lg/chatty-rep-1", "running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	var chatty []ctrlog.Record
	for range 50 {
		if chatty = s.logsJSON("lg/chatty-rep-1", "--tail", "2"); len(chatty) == 2 && chatty[1].Line == "chatty-done" {
			break
		}
		calls++
		time.Sleep(200 * time.Millisecond)
	}
	if len(chatty) != 2 || chatty[0].Line != "20000" {
		t.Errorf("chatty's last lines: %+v", chatty)
	}
	files, _ := filepath.Glob(filepath.Join(s.Dir, "logs", s.Containerd.Namespace, "lg.chatty-rep-1", "output.log*"))
	if len(files) != 3 {
		t.Errorf("chatty's log files: %v; want the 3 of --log-max-files", files)
	}

	// The marker: read again and again, then looked for in every history.
	for calls < 20 {
		if recs := s.logsJSON("lg/secret-rep-1", "--tail", "0"); len(recs) < 3 {
			t.Errorf("secret's log: %+v", recs)
		}
		calls++
	}
	s.noHistoryContains(t, marker)
}

// logsJSON runs vigil logs --json with args and parses its lines.
func (s *tstack) logsJSON(ref string, args ...string) []ctrlog.Record {
	s.t.Helper()
	r := s.vigil(append([]string{"logs", "--json", ref}, args...)...)
	if r.Code != 0 {
		s.t.Fatalf("vigil logs %s %v: exit %d %q", ref, args, r.Code, r.Stderr)
	}
	var recs []ctrlog.Record
	for _, line := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec ctrlog.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			s.t.Fatalf("vigil logs --json %s: line %q: %v", ref, line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// follow runs vigil logs --follow --json on ref until the test ends and
// passes on each record.
func (s *tstack) follow(t *testing.T, ref string) <-chan ctrlog.Record {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, s.VigilBin, "--address", s.HostPort, "logs", "--follow", "--json", "--tail", "0", ref)
	cmd.Env = append(os.Environ(), "VIGIL_LOGS_TOKEN_FILE="+s.LogsTokenFile())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	recs := make(chan ctrlog.Record, 1000)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r ctrlog.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				recs <- r
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("vigil logs --follow: %s", stderr.String())
		}
	})
	return recs
}

// noHistoryContains fails if any event of any workflow's history (every
// run, open or closed) holds text.
func (s *tstack) noHistoryContains(t *testing.T, text string) {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var token []byte
	runs, events := 0, 0
	for {
		resp, err := c.ListWorkflow(t.Context(), &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", NextPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			hist, err := histories.Read(t.Context(), c, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId())
			if err != nil {
				t.Fatal(err)
			}
			runs++
			for _, ev := range hist.Events {
				events++
				raw, err := proto.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(raw), text) {
					t.Errorf("%s's history holds %q in event %d (%s)", e.GetExecution().GetWorkflowId(), text, ev.GetEventId(), ev.GetEventType())
				}
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if runs < 8 {
		t.Errorf("read %d workflow runs; want every replica's and the node's", runs)
	}
	t.Logf("%d events of %d workflow runs read; none holds %q", events, runs, text)
}
