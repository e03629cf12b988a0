package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

// RequireEnv, set to 1 (as `make test` does), turns every skip for a missing
// prerequisite into a failure.
const RequireEnv = "VIGIL_REQUIRE_INTEGRATION"

// Unavailable skips the test with reason, or fails it under VIGIL_REQUIRE_INTEGRATION=1.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("integration prerequisite missing (%s=1): %s", RequireEnv, reason)
	}
	t.Skip("skipping integration test: " + reason)
}

// Start starts a private containerd for the test, with the busybox test image
// imported into d.Namespace, and shuts it down when the test ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if err := Prerequisites(); err != nil {
		Unavailable(t, err.Error())
	}
	// t.TempDir's paths grow with the test name; sockets need short ones.
	dir, err := os.MkdirTemp("", "ctd")
	if err != nil {
		t.Fatal(err)
	}
	// Traversable, as containerd's own state directories are: a container
	// with a user namespace reaches its root filesystem below it as an
	// unprivileged host user.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, dir, Options{})
	if err != nil {
		_ = os.RemoveAll(dir)
		Unavailable(t, "private containerd did not start: "+err.Error())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("shut down private containerd: %v", err)
		}
		if t.Failed() {
			t.Logf("containerd log (%s):\n%s", d.LogPath, d.LogTail(30))
		}
		_ = os.RemoveAll(dir)
	})
	return d
}

// Runtime returns a Vigil runtime on the daemon's namespace, closed when the
// test ends. Logs go under the daemon's directory.
func (d *Daemon) Runtime(t testing.TB) *vcontainerd.Runtime {
	t.Helper()
	rt, err := vcontainerd.New(context.Background(), d.RuntimeConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// RuntimeConfig is the runtime configuration for this daemon and namespace.
func (d *Daemon) RuntimeConfig() vcontainerd.Config {
	return vcontainerd.Config{Address: d.Address, Namespace: d.Namespace, LogDir: d.Dir + "/logs", StateDir: d.Dir + "/vigil", RuncRoot: d.Dir + "/runc"}
}

// TestImage is the spec of a busybox container running args with sh -c.
func TestImage(script string) runtime.ContainerSpec {
	return runtime.ContainerSpec{
		Image:      "docker.io/library/busybox:local",
		PullPolicy: runtime.PullNever,
		Entrypoint: []string{"/bin/sh", "-c"},
		Args:       []string{script},
	}
}

var (
	prereqOnce sync.Once
	prereqErr  error
)

// Prerequisites checks for root, containerd, runc and busybox-static,
// installing the missing packages with apt-get when running as root.
func Prerequisites() error {
	prereqOnce.Do(func() { prereqErr = checkPrerequisites() })
	return prereqErr
}

var packages = map[string]string{
	"containerd":              "containerd",
	"containerd-shim-runc-v2": "containerd",
	"runc":                    "runc",
	"/bin/busybox":            "busybox-static",
	// Containers that serve: CNI bridge networking and the init.
	"/usr/lib/cni/bridge":  "containernetworking-plugins",
	"iptables-save":        "iptables",
	"/usr/bin/tini-static": "tini",
}

func checkPrerequisites() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("containerd needs root (running as uid %d)", os.Geteuid())
	}
	missing := missingPackages()
	if len(missing) == 0 {
		return nil
	}
	// An installed package whose command is not found is a PATH without
	// /usr/sbin (env -i, cron), which apt-get cannot mend.
	for _, pkg := range missing {
		if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", pkg).Output(); string(out) == "install ok installed" {
			return fmt.Errorf("package %s is installed but its command is not on PATH (%s); add /usr/sbin and /sbin", pkg, os.Getenv("PATH"))
		}
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("missing %s and no apt-get to install them", strings.Join(missing, ", "))
	}
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "--no-install-recommends"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %v: %s", strings.Join(missing, " "), err, lastLine(out))
	}
	if missing := missingPackages(); len(missing) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(missing, ", "))
	}
	return nil
}

func missingPackages() []string {
	seen := map[string]bool{}
	var missing []string
	for bin, pkg := range packages {
		if _, err := exec.LookPath(bin); err != nil && !seen[pkg] {
			seen[pkg] = true
			missing = append(missing, pkg)
		}
	}
	return missing
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
