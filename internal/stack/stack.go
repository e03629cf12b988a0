// Package stack runs a whole Vigil installation on this machine for
// end-to-end tests, benchmarks and the chaos soak: a private containerd, a
// Temporal dev server on a database file, vigil-worker processes and the
// vigil CLI, all built from this repository.
package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// Build builds vigil, vigil-worker and vigil-fence (beside the worker,
// where it looks for it) from the module at repo into dir,
// stamping the commit of repo's checkout into the version package.
func Build(repo, dir string) (vigil, worker string, err error) {
	ldflags := ""
	if commit := CommitOf(repo); commit != "" {
		ldflags = "-X github.com/vigil-run/vigil/version.commit=" + commit
	}
	for pkg, name := range map[string]string{"./starter": "vigil", "./worker": "vigil-worker", "./fence": "vigil-fence"} {
		if _, err := os.Stat(filepath.Join(repo, pkg)); err != nil && pkg == "./fence" {
			continue // a release before the fence
		}
		cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = repo
		if pkg == "./fence" {
			// It runs in the containers' images: static.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return filepath.Join(dir, "vigil"), filepath.Join(dir, "vigil-worker"), nil
}

// CommitOf is the short commit of the git checkout at dir, with "+dirty"
// when it has uncommitted changes, or "" outside git.
func CommitOf(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += "+dirty"
	}
	return commit
}

// BuildCommit builds vigil and vigil-worker of commit (any revision of the
// git repository at repo, e.g. a release's commit from RELEASES) into dir,
// from a temporary git worktree that is removed afterwards.
func BuildCommit(repo, commit, dir string) (vigil, worker string, err error) {
	src, err := os.MkdirTemp("", "vigil-src-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(src)
	if out, err := exec.Command("git", "-C", repo, "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("git worktree add %s: %v: %s (a shallow clone lacks old commits: git fetch --unshallow)",
			commit, err, strings.TrimSpace(string(out)))
	}
	defer func() {
		_ = exec.Command("git", "-C", repo, "worktree", "remove", "--force", src).Run()
		_ = exec.Command("git", "-C", repo, "worktree", "prune").Run()
	}()
	return Build(src, dir)
}

// Options say where things are. Dir must be short enough for unix sockets.
type Options struct {
	Dir         string // everything lives here (containerd under Dir/ctd)
	TemporalCLI string
	VigilBin    string
	WorkerBin   string
	Node        string // default "local"
	// WorkerArgs are added to every vigil-worker command line.
	WorkerArgs []string
	// CodecKeyFile, when set, is given to the workers that know
	// --codec-key-file, to the CLI (VIGIL_CODEC_KEY_FILE) and to Client.
	CodecKeyFile string
	// ServerMetrics makes the dev server serve Prometheus metrics (its
	// per-operation request counts) at MetricsURL.
	ServerMetrics bool
}

// Stack is one running installation.
type Stack struct {
	Options
	Containerd *containerdtest.Daemon
	// Network is the stack's private bridge network (its own bridge, subnet,
	// CNI network name and state dir), so stacks never share one.
	Network  containerdtest.PrivateNetwork
	HostPort string
	DBPath   string
	// MetricsURL is the dev server's Prometheus endpoint (with ServerMetrics).
	MetricsURL string

	srv        *testsuite.DevServer
	worker     *exec.Cmd
	workerDone chan struct{}
	second     *exec.Cmd
	secondDone chan struct{}
	workers    int
	nodes      []*Node // AddNode's
}

// Start starts containerd (with the busybox test image) and the dev server;
// call StartWorker next.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Node == "" {
		opts.Node = "local"
	}
	s := &Stack{Options: opts, DBPath: filepath.Join(opts.Dir, "temporal.db")}
	var err error
	if s.Containerd, err = containerdtest.StartDaemon(ctx, filepath.Join(opts.Dir, "ctd"), containerdtest.Options{}); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	if s.Network, err = containerdtest.NewNetwork(opts.Dir); err != nil {
		_ = s.Close(ctx)
		return nil, fmt.Errorf("bridge network: %w", err)
	}
	// The ports are free when picked, not when the server binds them: a
	// test running beside this one may take one meanwhile, and the server
	// then never answers. The first start tries fresh ports again (later
	// starts keep the ports their clients know).
	for attempt := 1; ; attempt++ {
		if err = s.pickPorts(); err == nil {
			err = s.StartServer(ctx)
		}
		if err == nil || attempt == serverStartAttempts || ctx.Err() != nil {
			break
		}
		// The server that never answered may still be starting: it must
		// not share the next one's database.
		killServerOf(s.DBPath)
		s.DBPath = filepath.Join(opts.Dir, fmt.Sprintf("temporal-%d.db", attempt+1))
	}
	if err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// serverStartAttempts bounds the first start of the dev server (pickPorts).
const serverStartAttempts = 3

// ServerPID is the dev server's process ID (0 if none runs).
func (s *Stack) ServerPID() int { return serverPID(s.DBPath) }

// serverPID finds the dev server process started on the database db.
func serverPID(db string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !slices.Contains(strings.Split(string(b), "\x00"), db) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			return pid
		}
	}
	return 0
}

// killServerOf kills the dev server started on the database db, if any
// (testsuite.StartDevServer leaves the process of a server that never
// answered running).
func killServerOf(db string) {
	if pid := serverPID(db); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pickPorts picks the dev server's free ports on 127.0.0.1.
func (s *Stack) pickPorts() error {
	var err error
	if s.HostPort, err = freeHostPort(); err != nil {
		return err
	}
	if s.ServerMetrics {
		hp, err := freeHostPort()
		if err != nil {
			return err
		}
		s.MetricsURL = "http://" + hp + "/metrics"
	}
	return nil
}

func freeHostPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// DevServerArgs are the dev server's flags besides its address, ports,
// database file and search attributes: the same for every test, bench and
// chaos run here and for make run (scripts/temporal-dev.sh; a test holds it
// to these).
var DevServerArgs = []string{
	"--dynamic-config-value", "system.enableActivityEagerExecution=true",
	// SQLite in WAL mode, every commit synced: as durable as the default
	// rollback journal (a killed server keeps all it acknowledged), but
	// writers no longer wait for readers. A 100-container crash storm took
	// 6.9-7.4 s instead of 8.9-11.6 s (runtime alone: 6.2 s; README,
	// Benchmark results).
	"--sqlite-pragma", "journal_mode=WAL",
	"--sqlite-pragma", "synchronous=FULL",
}

// StartServer starts the dev server on the stack's database file and port,
// with Vigil's search attributes registered, as `make run` does.
func (s *Stack) StartServer(ctx context.Context) error {
	args := append([]string(nil), DevServerArgs...)
	for _, name := range replica.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	if s.MetricsURL != "" {
		_, port, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(s.MetricsURL, "http://"), "/metrics"))
		args = append(args, "--metrics-port", port)
	}
	// Its errors go to a file beside the database, for a failed test to show.
	logf, err := os.OpenFile(filepath.Join(s.Dir, "temporal-dev.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dev server log: %w", err)
	}
	defer logf.Close() // the server process holds its own descriptor
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  s.TemporalCLI,
		ClientOptions: &client.Options{HostPort: s.HostPort},
		DBFilename:    s.DBPath,
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        io.Discard,
		Stderr:        logf,
	})
	if err != nil {
		return fmt.Errorf("dev server on %s (its errors: %s): %w", s.HostPort, logf.Name(), err)
	}
	s.srv = srv
	return nil
}

// StopServer stops the dev server; its database file stays.
func (s *Stack) StopServer() error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Stop()
	s.srv = nil
	return err
}

// WorkerLog is the path of the n-th worker's output (from 1).
func (s *Stack) WorkerLog(n int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("worker-%d.log", n))
}

// Workers is how many worker processes the stack started (the last one's
// output is WorkerLog(Workers())).
func (s *Stack) Workers() int { return s.workers }

// StartWorker starts a vigil-worker process for the stack's node.
func (s *Stack) StartWorker() error {
	cmd, done, err := s.startWorkerProcess()
	if err != nil {
		return err
	}
	s.worker, s.workerDone = cmd, done
	return nil
}

// StartSecondWorker starts another vigil-worker for the same node, next to
// the stack's worker (two workers for one node), with extra added to its
// command line (a later flag wins, e.g. another --state-dir: another node
// identity). KillSecondWorker stops it; PromoteSecondWorker kills the first
// and keeps it as the stack's worker.
func (s *Stack) StartSecondWorker(extra ...string) error {
	cmd, done, err := s.startWorkerProcess(extra...)
	if err != nil {
		return err
	}
	s.second, s.secondDone = cmd, done
	return nil
}

// SecondWorkerExit waits up to limit for the second worker to exit and
// returns its exit code; ok is false if it still runs.
func (s *Stack) SecondWorkerExit(limit time.Duration) (code int, ok bool) {
	return waitExit(s.second, s.secondDone, limit)
}

// WorkerExit is SecondWorkerExit of the stack's worker.
func (s *Stack) WorkerExit(limit time.Duration) (code int, ok bool) {
	return waitExit(s.worker, s.workerDone, limit)
}

func waitExit(cmd *exec.Cmd, done <-chan struct{}, limit time.Duration) (code int, ok bool) {
	if cmd == nil {
		return 0, false
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), true
	case <-time.After(limit):
		return 0, false
	}
}

// KillSecondWorker SIGKILLs the second worker, if one runs.
func (s *Stack) KillSecondWorker() {
	kill(s.second, s.secondDone)
	s.second = nil
}

// PromoteSecondWorker SIGKILLs the stack's worker; the second one takes its place.
func (s *Stack) PromoteSecondWorker() {
	if s.second == nil {
		return
	}
	s.KillWorker()
	s.worker, s.workerDone = s.second, s.secondDone
	s.second = nil
}

func (s *Stack) startWorkerProcess(extra ...string) (*exec.Cmd, chan struct{}, error) {
	s.workers++
	return startWorker(s.WorkerBin, s.WorkerLog(s.workers), s.workerArgs(s.HostPort, s.Node, s.Dir, s.Containerd, s.Network, extra))
}

// workerArgs is the command line of a worker of node, which keeps its
// container logs under dir, reaching the dev server at address.
func (s *Stack) workerArgs(address, node, dir string, ctd *containerdtest.Daemon, network containerdtest.PrivateNetwork, extra []string) []string {
	args := append([]string{
		"--address", address,
		"--node", node,
		"--containerd-address", ctd.Address,
		"--containerd-namespace", ctd.Namespace,
		"--log-dir", filepath.Join(dir, "logs"),
		"--log-format", "console",
	}, network.WorkerArgs()...)
	if !knowsFlag(s.WorkerBin, "--state-dir") {
		args = args[:len(args)-len(network.WorkerArgs())] // an older release's worker (upgrade tests)
	}
	if knowsFlag(s.WorkerBin, "--logs-token-file") {
		args = append(args, "--logs-token-file", s.LogsTokenFile())
	}
	if s.CodecKeyFile != "" && knowsFlag(s.WorkerBin, "--codec-key-file") {
		args = append(args, "--codec-key-file", s.CodecKeyFile)
	}
	return append(append(args, s.WorkerArgs...), extra...)
}

// LogsTokenFile is the logs token every worker of the stack shares, and
// the CLI shows (vigil logs).
func (s *Stack) LogsTokenFile() string { return filepath.Join(s.Dir, "logs-token") }

// startWorker starts the worker binary with args, its output to logPath;
// done is closed when it has exited.
func startWorker(bin, logPath string, args []string) (cmd *exec.Cmd, done chan struct{}, err error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd = exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, nil, err
	}
	done = make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	return cmd, done, nil
}

// knowsFlag reports whether the binary's --help lists flag.
func knowsFlag(bin, flag string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag+" "))
}

// NetworkArgs are the worker flags of the stack's state dir and network.
func (s *Stack) NetworkArgs() []string { return s.Network.WorkerArgs() }

// WorkerPID is the running worker's process ID (0 if none).
func (s *Stack) WorkerPID() int { return pidOf(s.worker) }

// KillWorker kills the worker with SIGKILL, as a crash of the host agent would.
func (s *Stack) KillWorker() {
	kill(s.worker, s.workerDone)
	s.worker = nil
}

func pidOf(cmd *exec.Cmd) int {
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

// kill SIGKILLs the process of cmd, if any, and waits until done is closed.
func kill(cmd *exec.Cmd, done <-chan struct{}) {
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// StopWorker stops the worker gracefully (SIGTERM, as systemd or a rolling
// upgrade would) and waits for it to exit, killing it after grace.
func (s *Stack) StopWorker(grace time.Duration) {
	if s.worker == nil {
		return
	}
	_ = s.worker.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.workerDone:
	case <-time.After(grace):
		_ = s.worker.Process.Signal(syscall.SIGKILL)
		<-s.workerDone
	}
	s.worker = nil
}

// WorkerLogTail returns the last n lines of every worker's output.
func (s *Stack) WorkerLogTail(n int) string {
	var b strings.Builder
	for i := 1; i <= s.workers; i++ {
		fmt.Fprintf(&b, "worker %d (%s):\n%s\n", i, s.WorkerLog(i), logTail(s.WorkerLog(i), n))
	}
	for _, node := range s.nodes {
		b.WriteString(node.WorkerLogTail(n))
	}
	return b.String()
}

// logTail is the last n lines of the file at path.
func logTail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close stops the worker, the dev server and containerd (removing its containers).
func (s *Stack) Close(ctx context.Context) error {
	var err error
	for _, n := range s.nodes {
		err = errors.Join(err, n.close(ctx))
	}
	s.KillSecondWorker()
	s.KillWorker()
	err = errors.Join(err, s.StopServer())
	if s.Containerd != nil {
		err = errors.Join(err, s.Containerd.Shutdown(ctx))
	}
	if s.Network.Config.Bridge != "" {
		// Containerd took the containers; their rules, namespaces and the bridge go here.
		err = errors.Join(err, s.Network.Remove())
	}
	return err
}

// Client dials the stack's Temporal server.
func (s *Stack) Client() (client.Client, error) {
	dc, err := s.DataConverter()
	if err != nil {
		return nil, err
	}
	return client.Dial(client.Options{HostPort: s.HostPort, Logger: quietLogger{}, DataConverter: dc})
}

// DataConverter is the converter of the stack's payloads: the workers' and
// the CLI's (with CodecKeyFile, decrypting).
func (s *Stack) DataConverter() (converter.DataConverter, error) {
	conn := config.Connection{CodecKeyFile: s.CodecKeyFile}
	return conn.DataConverter()
}

// Result is one run of the vigil CLI.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Vigil runs the CLI against the stack.
func (s *Stack) Vigil(args ...string) (Result, error) {
	full := append([]string{"--address", s.HostPort}, args...)
	cmd := exec.Command(s.VigilBin, full...)
	cmd.Env = append(os.Environ(), "VIGIL_NODE="+s.Node, "VIGIL_LOGS_TOKEN_FILE="+s.LogsTokenFile())
	if s.CodecKeyFile != "" {
		cmd.Env = append(cmd.Env, "VIGIL_CODEC_KEY_FILE="+s.CodecKeyFile)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return Result{stdout.String(), stderr.String(), exitErr.ExitCode()}, nil
	}
	return Result{stdout.String(), stderr.String(), 0}, err
}

// Deployment writes a deployment file into the stack's directory.
func (s *Stack) Deployment(name, yaml string) (string, error) {
	p := filepath.Join(s.Dir, name+".yaml")
	return p, os.WriteFile(p, []byte(yaml), 0o644)
}

// Supervise runs `vigil supervise -f file`.
func (s *Stack) Supervise(file string) error {
	r, err := s.Vigil("supervise", "-f", file)
	if err != nil {
		return err
	}
	if r.Code != 0 {
		return fmt.Errorf("vigil supervise: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	return nil
}

// Status returns a replica's state query, or false while it cannot be read
// (the server is restarting, no worker answers, or it has not started yet).
func (s *Stack) Status(ref string) (workflows.StateView, bool, error) {
	r, err := s.Vigil("status", ref, "--json", "--timeout", "10s")
	if err != nil || r.Code != 0 {
		return workflows.StateView{}, false, err
	}
	var v workflows.StateView
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		return v, false, fmt.Errorf("vigil status --json: %v\n%s", err, r.Stdout)
	}
	return v, true, nil
}

// WaitFor polls a replica's state until cond holds or limit passes. The limit
// only bounds a broken run; it is not a performance assertion.
func (s *Stack) WaitFor(ref, what string, limit time.Duration, cond func(workflows.StateView) bool) (workflows.StateView, error) {
	deadline := time.Now().Add(limit)
	var last workflows.StateView
	for time.Now().Before(deadline) {
		v, ok, err := s.Status(ref)
		if err != nil {
			return v, err
		}
		if ok {
			last = v
			if cond(v) {
				return v, nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last, fmt.Errorf("%s: %s not reached within %s; last state: %+v", ref, what, limit, last)
}

// ContainerIDs lists the containers in containerd's own view, with ctr.
func (s *Stack) ContainerIDs() ([]string, error) { return ContainerIDs(s.Containerd) }

// ContainerIDs lists the containers of d (in its namespace), with ctr.
func ContainerIDs(d *containerdtest.Daemon) ([]string, error) {
	out, err := exec.Command("ctr", "--address", d.Address, "--namespace", d.Namespace,
		"containers", "list", "--quiet").Output()
	if err != nil {
		return nil, fmt.Errorf("ctr containers list: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// quietLogger drops the SDK client's own log lines.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// FindTemporalCLI finds the Temporal CLI as `make deps` installs it:
// $VIGIL_BIN/temporal, ~/.cache/vigil/bin/temporal or temporal on PATH.
func FindTemporalCLI() (string, error) {
	for _, dir := range []string{os.Getenv("VIGIL_BIN"), filepath.Join(os.Getenv("HOME"), ".cache", "vigil", "bin")} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "temporal")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", errors.New("temporal CLI not found in $VIGIL_BIN, ~/.cache/vigil/bin or PATH; run make deps")
}

// ModuleRoot finds the directory of go.mod from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory; run from the repository")
		}
		dir = parent
	}
}
