package containerd_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/internal/containerdtest"
)

// Capabilities that amount to root on the host, or close to it; a container
// Vigil creates must hold none of them.
var hostCapabilities = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_SYS_BOOT",
	"CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_SYSLOG", "CAP_BPF",
	"CAP_PERFMON", "CAP_SYS_RESOURCE", "CAP_LINUX_IMMUTABLE", "CAP_IPC_LOCK", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
}

// Containers are never privileged and get no host mounts: checked in the OCI
// spec containerd holds for the container, and from inside the running task.
func TestContainerIsUnprivileged(t *testing.T) {
	d, rt, ctx, id := setup(t, "priv")
	info := runSpec(t, rt, id, containerdtest.TestImage("grep CapEff /proc/self/status"))
	if info.PID == 0 {
		t.Fatal("no task started")
	}

	nctx := namespaces.WithNamespace(ctx, d.Namespace)
	c, err := rt.Client().LoadContainer(nctx, id.ContainerName())
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Spec(nctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process == nil || !s.Process.NoNewPrivileges {
		t.Error("process may gain privileges (no_new_privileges is off)")
	}
	caps := s.Process.Capabilities
	if caps == nil || len(caps.Bounding) == 0 {
		t.Fatal("no capability sets in the spec: the runtime's defaults would apply unchecked")
	}
	t.Logf("bounding capabilities %v; %d mounts", caps.Bounding, len(s.Mounts))
	for set, list := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted, "inheritable": caps.Inheritable, "ambient": caps.Ambient} {
		for _, c := range hostCapabilities {
			if slices.Contains(list, c) {
				t.Errorf("%s capabilities include %s", set, c)
			}
		}
	}
	if len(caps.Ambient) > 0 {
		t.Errorf("ambient capabilities %v; want none", caps.Ambient)
	}
	for _, m := range s.Mounts {
		bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
		if bind || strings.HasPrefix(m.Source, "/") {
			t.Errorf("host mount %s -> %s (type %s, options %v); the deployment file asked for none", m.Source, m.Destination, m.Type, m.Options)
		}
		if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
			t.Error("/sys is mounted read-write")
		}
	}
	if s.Linux == nil {
		t.Fatal("no linux section in the spec")
	}
	for _, ns := range []string{"pid", "ipc", "uts", "mount", "network"} {
		found := false
		for _, n := range s.Linux.Namespaces {
			if string(n.Type) == ns {
				found = true
				if n.Path != "" {
					t.Errorf("%s namespace joins %s (a host namespace?)", ns, n.Path)
				}
			}
		}
		if !found {
			t.Errorf("no own %s namespace: the container shares the host's", ns)
		}
	}
	if len(s.Linux.Devices) > 0 {
		t.Errorf("host devices %v passed in", s.Linux.Devices)
	}
	if r := s.Linux.Resources; r == nil || len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
		t.Error("the device cgroup does not start by denying every device")
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v, read-only %v; want /proc/kcore masked and /proc/sys read-only", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}

	// From inside: the effective capability set lacks CAP_SYS_ADMIN (bit 21).
	st := wait(t, rt, id)
	if st.ExitCode != 0 {
		t.Fatalf("probe exited %d", st.ExitCode)
	}
	out, err := logOf(rt, ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var capEff string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	mask, err := strconv.ParseUint(capEff, 16, 64)
	if err != nil {
		t.Fatalf("no CapEff line in the probe's output %q", out)
	}
	if mask&(1<<21) != 0 {
		t.Errorf("the running task has CAP_SYS_ADMIN (CapEff %s)", capEff)
	}
}
