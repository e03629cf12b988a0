package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// Every request of these tests goes to 127.0.0.1.

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fetch GETs http://127.0.0.1:port/ until it answers 200 (the server may be
// restarting), failing after limit.
func fetch(t *testing.T, port int, limit time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var last string
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return string(b)
		}
		last = resp.Status
	}
	t.Fatalf("GET %s never answered 200 within %s; last: %s", url, limit, last)
	return ""
}

// webDeployment publishes an httpd (under tini) on 127.0.0.1:port; each
// start appends to a named volume, and the page says how many starts it saw.
func webDeployment(name string, port int) string {
	return `version: v1
deployment: ` + name + `
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command:
      entrypoint: ["/bin/sh", "-c"]
      args: ["echo start >> /data/starts; mkdir -p /www; echo \"starts $(wc -l < /data/starts)\" > /www/index.html; exec httpd -f -p 8080 -h /www"]
    ports:
      - { container: 8080, host: ` + itoa(port) + `, protocol: tcp, host_ip: 127.0.0.1 }
    volumes:
      - { name: data, target: /data }
    init: true
    stop_grace: 30s
    errors: { on_panic: { action: restart, max_restarts: 1000, restart_window: 10s, poll_interval: 1s } }
`
}

// netState counts what the stack's bridge network holds: IPAM allocations,
// iptables rules tagged with its name, and network namespaces.
func (s *tstack) netState() (ips, rules, namespaces int) {
	s.t.Helper()
	r, err := s.Network.Rules()
	if err != nil {
		s.t.Fatal(err)
	}
	return len(s.Network.Allocations()), len(r), len(s.Network.Namespaces())
}

func (s *tstack) killTask(ref string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Containerd.Signal(ctx, idOf(s.t, ref).ContainerName(), syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
}

func restartsAtLeast(n int) func(workflows.StateView) bool {
	return func(v workflows.StateView) bool { return v.State == workflows.StateRunning && v.TotalRestarts >= n }
}

// A port published on 127.0.0.1 answers, and keeps answering after a crash
// restart, a worker SIGKILL and a containerd restart; vigil status shows the
// address and the port; the named volume keeps its data across all of it;
// unsupervise --stop --volumes leaves no address, rule, namespace or volume.
func TestPublishedPortSurvivesFaults(t *testing.T) {
	s := newStack(t)
	port := freeLoopbackPort(t)
	s.supervise(s.deployment("net", webDeployment("net", port)))
	const ref = "net/web-rep-1"
	v := s.waitFor(ref, "running", 2*time.Minute, restartsAtLeast(0))
	if body := fetch(t, port, time.Minute); body != "starts 1\n" {
		t.Fatalf("first answer %q, want starts 1", body)
	}
	v = s.waitFor(ref, "its address in status", time.Minute, func(v workflows.StateView) bool { return v.IP != "" })
	if ip, err := netip.ParseAddr(v.IP); err != nil || !netip.MustParsePrefix(s.Network.Config.Subnet).Contains(ip) {
		t.Errorf("status IP %q is not in the bridge's subnet %s", v.IP, s.Network.Config.Subnet)
	}
	if len(v.Ports) != 1 || v.Ports[0] != (runtime.PortMapping{Container: 8080, Host: port, Protocol: "tcp", HostIP: "127.0.0.1"}) {
		t.Errorf("status ports %+v", v.Ports)
	}
	if out := s.vigil("status", ref); !strings.Contains(out.Stdout, fmt.Sprintf("127.0.0.1:%d->8080/tcp", port)) {
		t.Errorf("status table has no published port:\n%s", out.Stdout)
	}
	ips, rules, nss := s.netState()
	if ips != 1 || rules == 0 || nss != 1 {
		t.Fatalf("bridge holds %d addresses, %d rules, %d namespaces; want 1, some, 1", ips, rules, nss)
	}

	s.killTask(ref)
	s.waitFor(ref, "a crash restart", time.Minute, restartsAtLeast(1))
	if body := fetch(t, port, time.Minute); body != "starts 2\n" {
		t.Errorf("after a crash restart: %q, want starts 2 (the volume kept the first)", body)
	}

	s.killWorker()
	fetch(t, port, time.Minute) // the container does not need its worker
	s.startWorker()
	s.killTask(ref)
	s.waitFor(ref, "a restart by the new worker", 2*time.Minute, restartsAtLeast(2))
	if body := fetch(t, port, time.Minute); body != "starts 3\n" {
		t.Errorf("after a worker SIGKILL and a crash: %q, want starts 3", body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Containerd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	fetch(t, port, time.Minute)
	s.killTask(ref)
	s.waitFor(ref, "a restart after containerd's", 2*time.Minute, restartsAtLeast(3))
	if body := fetch(t, port, time.Minute); body != "starts 4\n" {
		t.Errorf("after a containerd restart and a crash: %q, want starts 4", body)
	}
	if i2, r2, n2 := s.netState(); i2 != ips || r2 != rules || n2 != nss {
		t.Errorf("after the faults the bridge holds %d addresses, %d rules, %d namespaces; before: %d, %d, %d", i2, r2, n2, ips, rules, nss)
	}

	volume := filepath.Join(s.Network.StateDir, "volumes", s.Containerd.Namespace, "net", "web-rep-1", "data")
	if r := s.vigil("unsupervise", ref, "--stop"); r.Code != 0 {
		t.Fatalf("unsupervise --stop: %d %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(volume); err != nil {
		t.Fatalf("unsupervise --stop deleted the named volume: %v", err)
	}
	s.supervise(s.deployment("net", webDeployment("net", port)))
	if body := fetch(t, port, time.Minute); body != "starts 5\n" {
		t.Errorf("supervised again: %q, want starts 5", body)
	}
	s.waitFor(ref, "running again", time.Minute, restartsAtLeast(0))
	if r := s.vigil("unsupervise", ref, "--stop", "--volumes"); r.Code != 0 {
		t.Fatalf("unsupervise --stop --volumes: %d %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(volume); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unsupervise --stop --volumes left the volume: %v", err)
	}
	if i2, r2, n2 := s.netState(); i2 != 0 || r2 != 0 || n2 != 0 {
		left, _ := s.Network.Rules()
		t.Errorf("after unsupervise --stop --volumes the bridge holds %d addresses, %d rules %v, %d namespaces; want none", i2, r2, left, n2)
	}
}

// 50 crash restarts of a container with a published port leave exactly the
// addresses, iptables rules and namespaces there were before.
func TestNoLeakedNetworkStateAfterCrashRestarts(t *testing.T) {
	t.Parallel() // its own stack and bridge; most of its minute is waiting
	s := newStack(t)
	port := freeLoopbackPort(t)
	s.supervise(s.deployment("leak", `version: v1
deployment: leak
services:
  crasher:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 0.2; exit 1"] }
    ports: [{ container: 8080, host: `+itoa(port)+`, host_ip: 127.0.0.1 }]
    errors: { on_panic: { action: restart, max_restarts: 1000, restart_window: 10s, poll_interval: 1s } }
`))
	const ref = "leak/crasher-rep-1"
	s.waitFor(ref, "the first restart", 2*time.Minute, func(v workflows.StateView) bool { return v.TotalRestarts >= 1 })
	ips, rules, nss := s.netState()
	if ips != 1 || rules == 0 || nss != 1 {
		t.Fatalf("before: %d addresses, %d rules, %d namespaces; want 1, some, 1", ips, rules, nss)
	}
	s.waitFor(ref, "51 restarts", 5*time.Minute, func(v workflows.StateView) bool { return v.TotalRestarts >= 51 })
	if i2, r2, n2 := s.netState(); i2 != ips || r2 != rules || n2 != nss {
		t.Errorf("after 50 crash restarts: %d addresses, %d rules, %d namespaces; before: %d, %d, %d", i2, r2, n2, ips, rules, nss)
	}
	if r := s.vigil("unsupervise", ref, "--stop", "--volumes"); r.Code != 0 {
		t.Fatalf("unsupervise --stop --volumes: %d %s", r.Code, r.Stderr)
	}
	if i2, r2, n2 := s.netState(); i2 != 0 || r2 != 0 || n2 != 0 {
		t.Errorf("after removal: %d addresses, %d rules, %d namespaces; want none", i2, r2, n2)
	}
}

// A bind mount shows the node's file (read-only: the container cannot write
// it); with init: true a stop of httpd is answered at once: the task ends by
// the SIGTERM tini passes on (143), not by the SIGKILL after the 30 s grace
// (137). The test logs how long the stop took; it asserts no wall time.
func TestBindMountAndInitStop(t *testing.T) {
	s := newStack(t)
	src := filepath.Join(s.Dir, "site")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "index.html"), []byte("from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeLoopbackPort(t)
	s.supervise(s.deployment("bind", `version: v1
deployment: bind
services:
  site:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["touch /www/x 2>/dev/null && echo WRITABLE; exec httpd -f -p 8080 -h /www"] }
    ports: [{ container: 8080, host: `+itoa(port)+`, host_ip: 127.0.0.1 }]
    volumes: [{ source: `+src+`, target: /www, readonly: true }]
    init: true
    stop_grace: 30s
`))
	if body := fetch(t, port, 2*time.Minute); body != "from the node\n" {
		t.Fatalf("GET through the bind mount: %q", body)
	}
	if logs := s.vigil("logs", "bind/site-rep-1"); strings.Contains(logs.Stdout, "WRITABLE") {
		t.Error("the container wrote into a read-only bind mount")
	}
	tasks := recordTaskEvents(t, s.Stack)
	began := time.Now()
	if r := s.vigil("unsupervise", "bind/site-rep-1", "--stop"); r.Code != 0 {
		t.Fatalf("unsupervise --stop: %d %s", r.Code, r.Stderr)
	}
	t.Logf("unsupervise --stop of httpd under tini took %s (grace 30s)", time.Since(began).Round(time.Millisecond))
	exit, ok := waitEvent(tasks, idOf(t, "bind/site-rep-1").ContainerName(), ctrevents.Exit, began, 30*time.Second)
	if !ok {
		t.Fatal("containerd reported no exit of the stopped task")
	}
	if exit.Code != 143 {
		t.Fatalf("the stopped task exited %d; want 143 (SIGTERM through tini), not 137 (SIGKILL after the grace)", exit.Code)
	}
}
