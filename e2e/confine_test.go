package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// A replica publishing a host port that a process of the host serves on
// does not take it over: its start fails with PortInUse, shown as its start
// error, and the process keeps serving; once the process lets go, the
// replica starts, confined: no new privileges, the seccomp filter, its
// security block (a read-only root, a tmpfs, a user) applied, and status
// --json shows the effective settings.
func TestConfinedReplicaNeverHijacksAPort(t *testing.T) {
	t.Parallel() // its own stack; most of its time is waiting
	s := newStack(t)
	port := freeLoopbackPort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	host := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "host") })}
	go func() { _ = host.Serve(l) }()
	t.Cleanup(func() { _ = host.Close() })

	s.supervise(s.deployment("conf", `version: v1
deployment: conf
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command:
      entrypoint: ["/bin/sh", "-c"]
      args: ["grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; touch /x 2>/dev/null && echo ROOT-WRITABLE; echo uid=$(id -u); echo page > /www/index.html; exec httpd -f -p 8080 -h /www"]
    ports: [{ container: 8080, host: `+itoa(port)+`, host_ip: 127.0.0.1 }]
    security: { user: "1000:1000", read_only: true, tmpfs: [/www], cap_drop: [ALL] }
`))
	const ref = "conf/web-rep-1"
	want := fmt.Sprintf("PortInUse: host port 127.0.0.1:%d is in use by process ", port)
	var startErr string
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end) && !strings.HasPrefix(startErr, want); time.Sleep(300 * time.Millisecond) {
		startErr = statusStartError(t, s, ref)
	}
	if !strings.HasPrefix(startErr, want) || !strings.Contains(startErr, fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Fatalf("start error %q; want it to begin %q and name this process (pid %d)", startErr, want, os.Getpid())
	}
	if body := fetch(t, port, 10*time.Second); body != "host" {
		t.Fatalf("the host's server answers %q: the port was taken over", body)
	}
	if v, _ := s.status(ref); v.State == workflows.StateRunning {
		t.Fatalf("state %s while its port is in use", v.State)
	}

	_ = host.Close()
	if body := fetch(t, port, 2*time.Minute); body != "page\n" {
		t.Fatalf("once the port is free the replica serves %q", body)
	}
	v := s.waitFor(ref, "running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	if sec := v.Security; sec == nil || !sec.ReadOnly || sec.User != "1000:1000" || len(sec.Capabilities) != 0 ||
		sec.Seccomp != runtime.ProfileDefault || !sec.NoNewPrivileges {
		t.Errorf("status security %+v; want the block's settings over the defaults", sec)
	}
	logs := s.vigil("logs", ref).Stdout
	for _, line := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "uid=1000"} {
		if !strings.Contains(logs, line) {
			t.Errorf("the container's output lacks %q:\n%s", line, logs)
		}
	}
	if strings.Contains(logs, "ROOT-WRITABLE") {
		t.Error("the container wrote to its read-only root")
	}
}

// statusStartError is the replica's start error as `vigil status --json` shows it.
func statusStartError(t *testing.T, s *tstack, ref string) string {
	t.Helper()
	r := s.vigil("status", ref, "--json", "--timeout", "10s")
	var out struct {
		StartError *string `json:"start_error"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &out) != nil || out.StartError == nil {
		return ""
	}
	return *out.StartError
}
