package containerd_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
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

// confinementProbe prints what a process sees of its confinement: the
// status lines, and whether it can make a user namespace, mount, and write
// to / and /tmp.
const confinementProbe = `grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status
unshare -r true 2>/dev/null && echo unshare=ok || echo unshare=denied
mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=denied
touch /probe 2>/dev/null && echo root=rw || echo root=ro
touch /tmp/probe 2>/dev/null && echo tmp=rw || echo tmp=ro
echo uid=$(id -u) gid=$(id -g)
echo uid_map=$(cat /proc/self/uid_map)`

// probe runs the confinement probe in a container with sec and returns its
// output as key -> value.
func probe(t *testing.T, rt *vcontainerd.Runtime, sec *runtime.Security) map[string]string {
	t.Helper()
	id := newID("sec")
	spec := containerdtest.TestImage(confinementProbe)
	spec.Security = sec
	runSpec(t, rt, id, spec)
	if st := wait(t, rt, id); st.ExitCode != 0 {
		t.Fatalf("probe exited %d (%s)", st.ExitCode, st.Reason)
	}
	out, err := rt.Logs(testCtx(t), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.Contains(k, "=") {
			got[k] = strings.TrimSpace(v)
			continue
		}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				got[k] = v
			}
		}
		if v, ok := strings.CutPrefix(line, "uid_map="); ok {
			got["uid_map"] = strings.Join(strings.Fields(v), " ")
		}
	}
	if err := rt.Remove(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", got)
	return got
}

// capMask is the bit mask of the capabilities, as /proc/self/status shows it.
func capMask(t *testing.T, caps []string) string {
	t.Helper()
	var m uint64
	known := cap.Known()
	for _, c := range caps {
		i := slices.Index(known, c)
		if i < 0 {
			t.Fatalf("unknown capability %s", c)
		}
		m |= 1 << i
	}
	return fmt.Sprintf("%016x", m)
}

// By default a container has no new privileges, containerd's seccomp
// profile and Podman's capabilities: it cannot make a user namespace or
// mount anything.
func TestDefaultConfinement(t *testing.T) {
	_, rt, _, _ := setup(t, "sec")
	got := probe(t, rt, nil)
	want := map[string]string{"NoNewPrivs": "1", "Seccomp": "2", "CapEff": capMask(t, runtime.DefaultCapabilities),
		"CapBnd": capMask(t, runtime.DefaultCapabilities), "unshare": "denied", "mount": "denied", "root": "rw", "tmp": "rw", "uid": "0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// The security block loosens and tightens it.
func TestSecurityBlock(t *testing.T) {
	_, rt, _, _ := setup(t, "sec")
	no := false
	t.Run("tightened", func(t *testing.T) {
		got := probe(t, rt, &runtime.Security{User: "1000:1001", ReadOnly: true, Tmpfs: []string{"/tmp"},
			CapDrop: []string{runtime.CapAll}, CapAdd: []string{"CAP_NET_BIND_SERVICE"}})
		want := map[string]string{"NoNewPrivs": "1", "Seccomp": "2", "CapBnd": capMask(t, []string{"CAP_NET_BIND_SERVICE"}), "CapEff": capMask(t, nil),
			"root": "ro", "tmp": "rw", "uid": "1000", "gid": "1001"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	})
	t.Run("loosened", func(t *testing.T) {
		got := probe(t, rt, &runtime.Security{Seccomp: runtime.ProfileUnconfined, NoNewPrivileges: &no, CapAdd: []string{"CAP_NET_RAW"}})
		want := map[string]string{"NoNewPrivs": "0", "Seccomp": "0", "CapEff": capMask(t, append([]string{"CAP_NET_RAW"}, runtime.DefaultCapabilities...))}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	})
	t.Run("profile file", func(t *testing.T) {
		profile := filepath.Join(t.TempDir(), "seccomp.json")
		if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := probe(t, rt, &runtime.Security{Seccomp: profile}); got["Seccomp"] != "2" || got["unshare"] != "ok" {
			t.Errorf("Seccomp %q, unshare %s; want 2 and ok (a filter that allows everything)", got["Seccomp"], got["unshare"])
		}
		spec := containerdtest.TestImage("true")
		spec.Security = &runtime.Security{Seccomp: profile + ".missing"}
		err := rt.Create(testCtx(t), newID("sec"), spec)
		if !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), "security.seccomp") {
			t.Errorf("a missing profile: %v; want ErrInvalidSpec naming security.seccomp", err)
		}
	})
	t.Run("userns", func(t *testing.T) {
		if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
			t.Skipf("the kernel refuses user namespaces here (user.max_user_namespaces: %q, %v)", b, err)
		}
		got := probe(t, rt, &runtime.Security{UserNS: true})
		if want := fmt.Sprintf("0 %d %d", vcontainerd.UserNSHostID, runtime.UserNSSize); got["uid_map"] != want || got["uid"] != "0" {
			t.Errorf("uid_map %q, uid %s; want %q and 0", got["uid_map"], got["uid"], want)
		}
	})
}
