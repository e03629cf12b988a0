package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/workflows"
)

// prober GETs http://127.0.0.1:port/ every 200 ms until stopped, counting
// the requests and the failures (an error or a status other than 200).
type prober struct {
	mu             sync.Mutex
	probes, failed int
	first          string
	stop           chan struct{}
	done           chan struct{}
}

func probe(port int) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			resp, err := client.Get(url)
			why := ""
			if err != nil {
				why = err.Error()
			} else {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					why = resp.Status
				}
			}
			p.mu.Lock()
			p.probes++
			if why != "" {
				p.failed++
				if p.first == "" {
					p.first = time.Now().Format(time.RFC3339Nano) + ": " + why
				}
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *prober) finish() (probes, failed int, first string) {
	close(p.stop)
	<-p.done
	return p.probes, p.failed, p.first
}

// pfWeb is a one-replica web service of image on 127.0.0.1:port; extra
// adds lines to the service.
func pfWeb(port int, image, extra string) string {
	return `version: v1
deployment: pf
services:
  web:
    image: ` + image + `
    command: { entrypoint: ["/bin/sh", "-c"], args: ["mkdir -p /www; echo v1 > /www/index.html; exec httpd -f -p 8080 -h /www"] }
    ports: [{ container: 8080, host: ` + itoa(port) + `, host_ip: 127.0.0.1 }]
    stop_grace: 1s
    update: { max_unavailable: 1, min_ready: 1s }
` + extra
}

// A replacement whose new container could not be made (an unknown image
// under pull_policy never, a host port a process outside Vigil listens on,
// a missing bind source) leaves the serving replica serving: a probe every
// 200 ms never fails, and the rollout pauses with one short line naming the
// replica, the field and the fix. The dry run says the same beforehand.
func TestPreflightKeepsTheServingReplica(t *testing.T) {
	t.Parallel() // its own stack; most of it is waiting
	s := newStack(t)
	port := freeLoopbackPort(t)
	const busybox = "{ name: docker.io/library/busybox:local, pull_policy: never }"
	s.apply(s.deployment("pf", pfWeb(port, busybox, "")))
	s.waitRollout("pf", "the first rollout complete", 2*time.Minute, completeAt(1))
	if body := fetch(t, port, time.Minute); body != "v1\n" {
		t.Fatalf("the service answers %q, want v1", body)
	}
	// A port a process outside Vigil listens on (this test's).
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	p := probe(port)
	gen := 1
	for _, tc := range []struct {
		name, file, field, says string
	}{
		{"unknown image", pfWeb(port, "{ name: docker.io/library/vigil-no-such-image:1, pull_policy: never }", ""),
			"image", "pull_policy is never"},
		{"host port in use", pfWeb(takenPort, busybox, ""),
			"ports[0].host", fmt.Sprintf("PortInUse: host port 127.0.0.1:%d is in use by process", takenPort)},
		{"missing bind source", pfWeb(port, busybox, "    volumes: [{ source: /nonexistent/vigil-e2e, target: /data }]\n"),
			"volumes[0].source", "/nonexistent/vigil-e2e does not exist on this node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := s.deployment("pf", tc.file)
			dry := s.vigil("apply", "-f", file, "--dry-run")
			if want := "pf/web-rep-1 would not be replaced: " + tc.field + ": "; dry.Code != 1 || !strings.Contains(dry.Stdout, want) || !strings.Contains(dry.Stdout, tc.says) {
				t.Fatalf("dry run: exit %d, stdout %q, stderr %q; want exit 1 and %q ... %q", dry.Code, dry.Stdout, dry.Stderr, want, tc.says)
			}
			gen++
			s.apply(file)
			st := s.waitRollout("pf", "paused", time.Minute, func(st workflows.RolloutStatus) bool {
				return st.Generation == gen && st.State == workflows.RolloutPaused
			})
			prefix := fmt.Sprintf("generation %d: pf/web-rep-1 not replaced (left as it was): %s: ", gen, tc.field)
			if !strings.HasPrefix(st.Reason, prefix) || !strings.Contains(st.Reason, tc.says) || len(st.Reason) > 300 ||
				strings.ContainsAny(st.Reason, "\r\n") || strings.Contains(st.Reason, "activity") {
				t.Fatalf("pause reason (%d chars) %q; want one line of at most 300 beginning %q and saying %q", len(st.Reason), st.Reason, prefix, tc.says)
			}
		})
	}
	time.Sleep(2 * time.Second) // a paused rollout stays paused: nothing stops later either
	probes, failed, first := p.finish()
	if failed > 0 || probes < 5 {
		t.Fatalf("%d of %d probes failed (first: %s); want none", failed, probes, first)
	}
	if v, _ := s.status("pf/web-rep-1"); v.State != workflows.StateRunning || v.Generation != 1 || v.TotalRestarts != 0 {
		t.Fatalf("the serving replica: %s, generation %d, %d restarts; want Running, generation 1, untouched", v.State, v.Generation, v.TotalRestarts)
	}
	t.Logf("%d probes, none failed", probes)
}
