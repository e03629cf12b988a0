package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/testimage"
)

// dockerNamespace is the containerd namespace dockerd keeps its tasks in.
const dockerNamespace = "moby"

// privateDocker is a dockerd with its own data root, exec root, socket and
// containerd (the same containerd binary Vigil runs on), and no networking.
type privateDocker struct {
	dir        string
	host       string // -H for the docker CLI
	containerd *containerdtest.Daemon
	cmd        *exec.Cmd
	done       chan struct{}
}

// ensureDocker installs Debian's docker.io when dockerd is missing.
func ensureDocker() error {
	if _, err := exec.LookPath("dockerd"); err == nil {
		return nil
	}
	fmt.Println("dockerd not found; installing Debian's docker.io (bench only)")
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "docker.io")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install docker.io: %v\n%s", err, lastLines(out, 5))
	}
	return nil
}

// dockerCLI is Debian's client, which speaks the daemon's API version.
func dockerCLI() string {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return "docker"
}

func startDocker(ctx context.Context, dir string) (*privateDocker, error) {
	if err := ensureDocker(); err != nil {
		return nil, err
	}
	ctd, err := containerdtest.StartDaemon(ctx, filepath.Join(dir, "ctd"), containerdtest.Options{NoImage: true, Namespace: dockerNamespace})
	if err != nil {
		return nil, fmt.Errorf("containerd for dockerd: %w", err)
	}
	d := &privateDocker{dir: dir, host: "unix://" + filepath.Join(dir, "d.sock"), containerd: ctd}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", d.host,
		"--containerd", ctd.Address,
		"--containerd-namespace", dockerNamespace,
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--log-level=warn",
	)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); logf.Close(); close(d.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.run("version"); err == nil {
			break
		}
		select {
		case <-d.done:
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			d.Close(ctx)
			return nil, fmt.Errorf("dockerd exited during startup:\n%s", lastLines(log, 10))
		default:
		}
		if time.Now().After(deadline) {
			d.Close(ctx)
			return nil, errors.New("dockerd did not answer within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	tar, err := testimage.Tar()
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	load := exec.Command(dockerCLI(), "-H", d.host, "load")
	load.Stdin = bytes.NewReader(tar)
	if out, err := load.CombinedOutput(); err != nil {
		d.Close(ctx)
		return nil, fmt.Errorf("docker load: %v: %s", err, out)
	}
	return d, nil
}

// run returns the command's standard output; the CLI sometimes logs to
// standard error even when it succeeds (e.g. "error waiting for container").
func (d *privateDocker) run(args ...string) (string, error) {
	cmd := exec.Command(dockerCLI(), append([]string{"-H", d.host}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (d *privateDocker) version() string {
	v, _ := d.run("version", "--format", "{{.Server.Version}}")
	return v
}

// Close removes the containers, stops dockerd and its containerd.
func (d *privateDocker) Close(ctx context.Context) {
	if d.cmd != nil && d.cmd.Process != nil {
		if ids, err := d.run("ps", "-aq"); err == nil && ids != "" {
			_, _ = d.run(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	_ = d.containerd.Shutdown(ctx)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
