package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/workflows"
)

// nobody is the unprivileged user the worker runs as (nobody:nogroup).
const nobody = 65534

// Linux capability numbers (linux/capability.h).
const (
	capDACReadSearch = 2
	capNetAdmin      = 12
	capSysAdmin      = 21
)

// The worker needs no root: as nobody, with group access to containerd's
// socket, its own log directory and two capabilities (CAP_SYS_ADMIN and
// CAP_DAC_READ_SEARCH, which containerd's client needs to mount the image
// and read its users and groups while building the spec), it starts,
// restarts and reads the logs of containers (chaos/README-section.md).
// Without CAP_DAC_READ_SEARCH every create fails with permission denied.
func TestWorkerWithoutRoot(t *testing.T) {
	s := newStack(t)
	s.killWorker() // the stack's own worker runs as root

	// Only the socket (group nogroup, 0660) and a log directory of its own.
	sock := s.Containerd.Address
	if err := os.Chown(sock, 0, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{s.Dir, filepath.Dir(sock)} {
		if err := os.Chmod(dir, 0o711); err != nil { // traverse only
			t.Fatal(err)
		}
	}
	logDir := filepath.Join(s.Dir, "nobody-logs")
	binDir := filepath.Join(s.Dir, "nobody-bin")
	// The node's state (volumes, networks, IPAM, CNI cache) and the network
	// namespaces: directories of its own.
	stateDir, netnsDir := s.Network.StateDir, s.Network.Config.NetNSDir
	for _, dir := range []string{logDir, binDir, stateDir, netnsDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The stack's token file (its worker, root, may have made it).
	if _, err := ctrlog.LoadOrCreateToken(s.LogsTokenFile()); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{logDir, stateDir, netnsDir, s.LogsTokenFile()} {
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	// The built binary lives in a private temporary directory.
	worker := filepath.Join(binDir, "vigil-worker")
	data, err := os.ReadFile(s.WorkerBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(worker, data, 0o755); err != nil {
		t.Fatal(err)
	}

	out, err := os.Create(filepath.Join(s.Dir, "worker-nobody.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	args := append([]string{"--address", s.HostPort, "--node", s.Node,
		"--containerd-address", sock, "--containerd-namespace", s.Containerd.Namespace,
		"--log-dir", logDir, "--log-format", "console", "--logs-token-file", s.LogsTokenFile()}, s.NetworkArgs()...)
	cmd := exec.Command(worker, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // the CNI plugins run iptables (/usr/sbin)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nobody, Gid: nobody},
		// containerd's client mounts the image's snapshot on the worker's side
		// to read its /etc/passwd and /etc/group when it builds the spec; the
		// worker mounts network namespaces (CAP_SYS_ADMIN) and the CNI plugins
		// it runs set up the bridge, veths and iptables rules (CAP_NET_ADMIN).
		AmbientCaps: []uintptr{capSysAdmin, capDACReadSearch, capNetAdmin},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("unprivileged worker's log:\n%s", b)
		}
	})

	s.supervise(s.deployment("np", crashLoopDeployment("np", 1000, "3s")))
	port := freeLoopbackPort(t)
	s.supervise(s.deployment("npweb", webDeployment("npweb", port)))
	if body := fetch(t, port, 2*time.Minute); body != "starts 1\n" {
		t.Errorf("port published by the unprivileged worker: %q", body)
	}
	v := s.waitFor("np/crasher-rep-1", "two restarts by the unprivileged worker", 2*time.Minute, func(v workflows.StateView) bool {
		return v.TotalRestarts >= 2
	})
	if v.State == workflows.StateCrashLoopBackOff {
		t.Fatalf("crasher in %s; want restarts", v.State)
	}
	logs := s.vigil("logs", "np/crasher-rep-1", "--tail", "0")
	if logs.Code != 0 || strings.Count(logs.Stdout, "up") < 3 {
		t.Fatalf("vigil logs through the unprivileged worker: exit %d, %q %q", logs.Code, logs.Stdout, logs.Stderr)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(logDir, s.Containerd.Namespace, "np.crasher-rep-1", "output.log"), &st); err != nil {
		t.Fatal(err)
	}
	// The logger runs as the shim's user (root); its files are the worker's.
	if st.Uid != nobody {
		t.Errorf("the container's log is owned by uid %d; the worker (uid %d) must own it to read it", st.Uid, nobody)
	}
}
