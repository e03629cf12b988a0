package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
)

// The parts of a cluster, by name (pid file, log file, Kill/StopPart).
const (
	PartPostgres = "postgres"
	PartFrontend = "temporal-frontend"
	PartHistory  = "temporal-history"
	PartMatching = "temporal-matching"
	PartWorker   = "temporal-worker" // Temporal's own worker service
	PartUI       = "temporal-ui"
)

// ServerParts are the Temporal services, one process each, in start order.
var ServerParts = []string{PartHistory, PartMatching, PartFrontend, PartWorker}

// ContainerdPart and VigilWorkerPart name a node's two processes.
func ContainerdPart(node string) string  { return "containerd-" + node }
func VigilWorkerPart(node string) string { return "vigil-worker-" + node }

// DefaultNodes are the two Vigil nodes `make cluster` runs on this host.
var DefaultNodes = []string{"node-a", "node-b"}

// Ports are the cluster's TCP ports, all on 127.0.0.1.
type Ports struct {
	Postgres                                   int
	Frontend, FrontendHTTP, FrontendMembership int
	History, HistoryMembership                 int
	Matching, MatchingMembership               int
	Worker, WorkerMembership                   int
	UI                                         int
	// FrontendMetrics serves the frontend's Prometheus metrics (0: none).
	FrontendMetrics int
}

// DefaultPorts are `make cluster`'s: the frontend on 7333, the Web UI on
// 8080, the rest next to them, away from `make run`'s 7233/8233.
func DefaultPorts() Ports {
	return Ports{
		Postgres: 7432,
		Frontend: 7333, FrontendHTTP: 7343, FrontendMembership: 6333,
		History: 7334, HistoryMembership: 6334,
		Matching: 7335, MatchingMembership: 6335,
		Worker: 7339, WorkerMembership: 6339,
		UI: 8080,
	}
}

// FreePorts picks free ports, so a test's cluster never collides with
// `make cluster` or another test. They are drawn below 32768, not from the
// kernel's ephemeral range: Temporal's cluster_membership table keeps a
// service's port in a PostgreSQL smallint, and a membership port above 32767
// makes the service exit at start ("value out of range for type smallint").
func FreePorts() (Ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	next := func() int {
		for range 200 {
			port := 20000 + mrand.IntN(12000)
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				ls = append(ls, l) // held until all are picked: no duplicates
				return port
			}
		}
		return 0
	}
	p := Ports{
		Postgres: next(), Frontend: next(), FrontendHTTP: next(), FrontendMembership: next(),
		History: next(), HistoryMembership: next(), Matching: next(), MatchingMembership: next(),
		Worker: next(), WorkerMembership: next(), UI: next(), FrontendMetrics: next(),
	}
	for _, port := range []int{p.Postgres, p.Frontend, p.FrontendHTTP, p.FrontendMembership, p.History, p.HistoryMembership,
		p.Matching, p.MatchingMembership, p.Worker, p.WorkerMembership, p.UI, p.FrontendMetrics} {
		if port == 0 {
			return p, errors.New("no free ports between 20000 and 32000 on 127.0.0.1")
		}
	}
	return p, nil
}

// Options say what to run and where.
type Options struct {
	Repo string // the repository: .env, deploy/cluster/
	// Dir holds all state: PostgreSQL's data, containerd roots, container
	// output, logs and pid files. Keep it short (containerd's unix sockets).
	Dir   string
	Ports Ports // default DefaultPorts
	// Nodes get a containerd and a vigil-worker each (default DefaultNodes).
	Nodes []string
	// Namespace is the containerd namespace on every node.
	Namespace   string
	VigilWorker string // the vigil-worker binary; no nodes are started when empty
	TemporalCLI string // the temporal CLI, for deploy/cluster/namespace.sh
	// WorkerArgs are added to every vigil-worker command line.
	WorkerArgs []string
	// Detach starts processes in their own session so they outlive the
	// caller (make cluster). Otherwise they die with it (tests).
	Detach bool
	Log    io.Writer // progress lines; nil discards them
}

// Cluster is a cluster on this machine, running or not.
type Cluster struct {
	Options
	Versions Versions
	Bin      Binaries
	pgBin    string
}

// New checks that everything needed is installed (PostgreSQL, the built
// Temporal binaries: errors.Is(err, ErrNotBuilt) when Build has not run).
func New(opts Options) (*Cluster, error) {
	if opts.Nodes == nil {
		opts.Nodes = DefaultNodes
	}
	if opts.Ports == (Ports{}) {
		opts.Ports = DefaultPorts()
	}
	if opts.Namespace == "" {
		opts.Namespace = "vigil"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.TemporalCLI == "" {
		opts.TemporalCLI = filepath.Join(BinDir(), "temporal")
	}
	var err error
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	v, err := ReadVersions(opts.Repo)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Options: opts, Versions: v, Bin: v.Binaries()}
	if c.pgBin, err = v.PostgresBin(); err != nil {
		return nil, err
	}
	if missing := c.Bin.Missing(); len(missing) > 0 {
		return nil, fmt.Errorf("%s: %w; run `make cluster` or `go run ./tools/cluster build` (takes minutes once)", strings.Join(missing, ", "), ErrNotBuilt)
	}
	return c, nil
}

// Address is the frontend's gRPC address, what TEMPORAL_ADDRESS names.
func (c *Cluster) Address() string { return fmt.Sprintf("127.0.0.1:%d", c.Ports.Frontend) }

// UIAddress is the Web UI's URL.
func (c *Cluster) UIAddress() string { return fmt.Sprintf("http://127.0.0.1:%d", c.Ports.UI) }

// PostgresAddress is PostgreSQL's host:port.
func (c *Cluster) PostgresAddress() string { return fmt.Sprintf("127.0.0.1:%d", c.Ports.Postgres) }

func (c *Cluster) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "==> "+format+"\n", args...)
	}
}

// Start starts every part that is not running, in order, each waited for
// until it serves. Parts already running are kept: Start after a partial
// failure or after Kill finishes the job.
func (c *Cluster) Start(ctx context.Context) error {
	for _, d := range []string{"run", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	// PostgreSQL runs as the postgres user when we are root: it must reach Dir.
	if err := os.Chmod(c.Dir, 0o711); err != nil {
		return err
	}
	if err := c.StartPostgres(ctx); err != nil {
		return err
	}
	if err := c.Schema(ctx); err != nil {
		return err
	}
	for _, p := range ServerParts {
		if err := c.StartServer(ctx, p); err != nil {
			return err
		}
	}
	if err := c.CreateNamespace(ctx); err != nil {
		return err
	}
	if err := c.SearchAttributes(ctx); err != nil {
		return err
	}
	if err := c.StartUI(ctx); err != nil {
		return err
	}
	if c.VigilWorker == "" {
		return nil
	}
	for _, n := range c.Nodes {
		if err := c.StartContainerd(ctx, n); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := c.StartVigilWorker(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops everything, workers first (so nothing restarts the
// containers), then the containers, containerd, the server and PostgreSQL.
// State stays in Dir.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, c.StopPart(VigilWorkerPart(n)))
	}
	for _, n := range c.Nodes {
		if c.PID(ContainerdPart(n)) != 0 {
			errs = append(errs, killTasks(ctx, c.ContainerdAddress(n), c.Namespace))
		}
		errs = append(errs, c.StopPart(ContainerdPart(n)))
	}
	errs = append(errs, c.StopPart(PartUI))
	for i := len(ServerParts) - 1; i >= 0; i-- {
		errs = append(errs, c.StopPart(ServerParts[i]))
	}
	errs = append(errs, c.StopPart(PartPostgres))
	return errors.Join(errs...)
}

// --- PostgreSQL ---

func (c *Cluster) pgData() string       { return filepath.Join(c.Dir, "postgres") }
func (c *Cluster) passwordFile() string { return filepath.Join(c.Dir, "postgres.password") }

// pgCredential runs PostgreSQL as the postgres user when we are root
// (PostgreSQL refuses to run as root), else as ourselves.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user (%v); install Debian's postgresql package", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// reachable checks that the postgres user can reach dir: every directory
// above it must let others through.
func reachable(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != cred.Uid && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("PostgreSQL runs as the postgres user, which cannot reach %s: %s is mode %o; chmod o+x %s or use a state directory elsewhere", dir, p, st.Mode().Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}

// password is the database password, made on first start and kept 0600 in
// Dir; it reaches the server and temporal-sql-tool only through their
// environment, never a command line or a log.
func (c *Cluster) password() (string, error) {
	if data, err := os.ReadFile(c.passwordFile()); err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	return pw, os.WriteFile(c.passwordFile(), []byte(pw+"\n"), 0o600)
}

// pgUser is the database superuser Temporal connects as, as in compose.
const pgUser = "temporal"

// StartPostgres initializes the data directory on first use and starts
// PostgreSQL on 127.0.0.1 only (TCP, no unix socket).
func (c *Cluster) StartPostgres(ctx context.Context) error {
	if c.PID(PartPostgres) == 0 {
		cred, err := pgCredential()
		if err != nil {
			return err
		}
		if err := reachable(c.Dir, cred); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(c.pgData(), "PG_VERSION")); err != nil {
			if err := c.initdb(ctx, cred); err != nil {
				return err
			}
		}
		// Four services with pools of 20+10 connections each, plus the
		// schema tool: more than PostgreSQL's default 100.
		cmd := exec.Command(filepath.Join(c.pgBin, "postgres"), "-D", c.pgData(),
			"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(c.Ports.Postgres),
			"-c", "unix_socket_directories=", "-c", "max_connections=300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if err := c.spawn(PartPostgres, cmd); err != nil {
			return err
		}
		c.logf("postgres: started on %s (data %s)", c.PostgresAddress(), c.pgData())
	}
	return c.waitReady(ctx, PartPostgres, 60*time.Second, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, filepath.Join(c.pgBin, "pg_isready"), "-q", "-h", "127.0.0.1",
			"-p", strconv.Itoa(c.Ports.Postgres)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	})
}

func (c *Cluster) initdb(ctx context.Context, cred *syscall.Credential) error {
	pw, err := c.password()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.pgData(), 0o700); err != nil {
		return err
	}
	// initdb reads the password from a file the postgres user can read,
	// outside the data directory (initdb wants that one empty).
	tmp := c.pgData() + ".pwfile"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if cred != nil {
		for _, p := range []string{c.pgData(), tmp} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.pgBin, "initdb"), "-D", c.pgData(), "-U", pgUser,
		"--pwfile", tmp, "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v\n%s", c.pgData(), err, out)
	}
	c.logf("postgres: initialized %s", c.pgData())
	return nil
}

// --- Temporal ---

// sqlEnv is how temporal-sql-tool finds the database.
func (c *Cluster) sqlEnv() ([]string, error) {
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	return []string{"SQL_PLUGIN=postgres12", "SQL_HOST=127.0.0.1", "SQL_PORT=" + strconv.Itoa(c.Ports.Postgres),
		"SQL_USER=" + pgUser, "SQL_PASSWORD=" + pw}, nil
}

// Schema runs deploy/cluster/schema.sh, as docker-compose.yml does.
func (c *Cluster) Schema(ctx context.Context) error {
	env, err := c.sqlEnv()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", filepath.Join(c.Repo, "deploy", "cluster", "schema.sh"))
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(c.Bin.SQLTool)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(c.LogFile("schema"), out, 0o644)
	if err != nil {
		return fmt.Errorf("deploy/cluster/schema.sh: %v\n%s", err, out)
	}
	c.logf("schema: installed or up to date (log %s)", c.LogFile("schema"))
	return nil
}

// serverEnv fills deploy/cluster/temporal.yaml's template.
func (c *Cluster) serverEnv() ([]string, error) {
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	p := c.Ports
	return []string{
		"POSTGRES_SEEDS=127.0.0.1", "DB_PORT=" + strconv.Itoa(p.Postgres),
		"POSTGRES_USER=" + pgUser, "POSTGRES_PWD=" + pw,
		"BIND_ON_IP=127.0.0.1",
		"FRONTEND_GRPC_PORT=" + strconv.Itoa(p.Frontend),
		"FRONTEND_HTTP_PORT=" + strconv.Itoa(p.FrontendHTTP),
		"FRONTEND_MEMBERSHIP_PORT=" + strconv.Itoa(p.FrontendMembership),
		"HISTORY_GRPC_PORT=" + strconv.Itoa(p.History),
		"HISTORY_MEMBERSHIP_PORT=" + strconv.Itoa(p.HistoryMembership),
		"MATCHING_GRPC_PORT=" + strconv.Itoa(p.Matching),
		"MATCHING_MEMBERSHIP_PORT=" + strconv.Itoa(p.MatchingMembership),
		"WORKER_GRPC_PORT=" + strconv.Itoa(p.Worker),
		"WORKER_MEMBERSHIP_PORT=" + strconv.Itoa(p.WorkerMembership),
		"DYNAMIC_CONFIG_FILE_PATH=" + filepath.Join(c.Repo, "deploy", "cluster", "dynamicconfig.yaml"),
	}, nil
}

// MetricsURL is the frontend's Prometheus endpoint ("" without Ports.FrontendMetrics).
func (c *Cluster) MetricsURL() string {
	if c.Ports.FrontendMetrics == 0 {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", c.Ports.FrontendMetrics)
}

// Query runs one SQL query on database (temporal or temporal_visibility)
// with psql and returns its output, unaligned and without headers.
func (c *Cluster) Query(ctx context.Context, database, query string) (string, error) {
	pw, err := c.password()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.pgBin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(c.Ports.Postgres),
		"-U", pgUser, "-d", database, "-At", "-c", query)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %s: %w: %s", database, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// servicePort is the gRPC port a server part listens on.
func (c *Cluster) servicePort(part string) int {
	switch part {
	case PartFrontend:
		return c.Ports.Frontend
	case PartHistory:
		return c.Ports.History
	case PartMatching:
		return c.Ports.Matching
	default:
		return c.Ports.Worker
	}
}

// StartServer starts one Temporal service (PartFrontend, PartHistory,
// PartMatching or PartWorker) as its own process.
func (c *Cluster) StartServer(ctx context.Context, part string) error {
	if c.PID(part) == 0 {
		env, err := c.serverEnv()
		if err != nil {
			return err
		}
		service := strings.TrimPrefix(part, "temporal-")
		cmd := exec.Command(c.Bin.Server, "--config-file", filepath.Join(c.Repo, "deploy", "cluster", "temporal.yaml"),
			"--allow-no-auth", "start", "--service", service)
		cmd.Env = append(os.Environ(), env...)
		if part == PartFrontend && c.Ports.FrontendMetrics != 0 {
			cmd.Env = append(cmd.Env, "METRICS_PORT="+strconv.Itoa(c.Ports.FrontendMetrics))
		}
		if err := c.spawn(part, cmd); err != nil {
			return err
		}
		c.logf("%s: started (127.0.0.1:%d)", part, c.servicePort(part))
	}
	if part == PartFrontend {
		return c.waitReady(ctx, part, 120*time.Second, c.frontendHealthy)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.servicePort(part))
	return c.waitReady(ctx, part, 120*time.Second, func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// frontendHealthy asks the frontend's health service.
func (c *Cluster) frontendHealthy(ctx context.Context) error {
	cl, err := client.DialContext(ctx, client.Options{HostPort: c.Address(), Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// CreateNamespace runs deploy/cluster/namespace.sh, as docker-compose.yml does.
func (c *Cluster) CreateNamespace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", filepath.Join(c.Repo, "deploy", "cluster", "namespace.sh"))
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+c.Address(), "TEMPORAL_NAMESPACE=default",
		"PATH="+filepath.Dir(c.TemporalCLI)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("deploy/cluster/namespace.sh: %v\n%s", err, out)
	}
	return nil
}

// SearchAttributes registers Vigil's search attributes (as the worker does
// when they are missing) and waits until the frontend accepts them. On the
// SQL visibility store a new attribute is an alias of a pre-created column
// kept in the namespace's record, which every service caches: until the
// cache refreshes (about 10 s) a start or a query naming the attribute is
// rejected ("no mapping defined for search attribute"), as the namespace
// itself is "not found" for a while after it is created.
func (c *Cluster) SearchAttributes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := client.DialContext(ctx, client.Options{HostPort: c.Address(), Namespace: "default", Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer cl.Close()
	// A namespace just created is "not found" until the caches refresh too.
	for {
		err := config.EnsureSearchAttributes(ctx, cl, "default")
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
	var terms []string
	for _, name := range replica.SearchAttributeNames {
		terms = append(terms, name+" = ''")
	}
	query := strings.Join(terms, " AND ")
	for {
		_, err := cl.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", Query: query, PageSize: 1})
		if err == nil {
			c.logf("search attributes %v: registered and usable", replica.SearchAttributeNames)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("search attributes %v not usable: %v", replica.SearchAttributeNames, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// StartUI starts the Web UI server.
func (c *Cluster) StartUI(ctx context.Context) error {
	if c.PID(PartUI) == 0 {
		cmd := exec.Command(c.Bin.UI, "--root", filepath.Join(c.Repo, "deploy", "cluster"), "--config", "ui", "--env", "cluster", "start")
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+c.Address(), "TEMPORAL_UI_PORT="+strconv.Itoa(c.Ports.UI))
		if err := c.spawn(PartUI, cmd); err != nil {
			return err
		}
		c.logf("temporal-ui: started on %s", c.UIAddress())
	}
	return c.waitReady(ctx, PartUI, 60*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.UIAddress()+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		return nil
	})
}

// --- Vigil nodes ---

func (c *Cluster) nodeDir(node string) string { return filepath.Join(c.Dir, node) }

// ContainerdAddress is a node's containerd socket.
func (c *Cluster) ContainerdAddress(node string) string {
	return filepath.Join(c.nodeDir(node), "ctd", "c.sock")
}

// ContainerLogDir is where a node's worker writes its containers' output.
func (c *Cluster) ContainerLogDir(node string) string { return filepath.Join(c.nodeDir(node), "logs") }

// StartContainerd starts a node's private containerd with the busybox test
// image imported (containerdtest: the same daemon the other tests use).
func (c *Cluster) StartContainerd(ctx context.Context, node string) error {
	part := ContainerdPart(node)
	if c.PID(part) != 0 {
		return nil
	}
	d, err := containerdtest.StartDaemon(ctx, filepath.Join(c.nodeDir(node), "ctd"),
		containerdtest.Options{Namespace: c.Namespace, Detach: c.Detach})
	if err != nil {
		return fmt.Errorf("%s: %w", part, err)
	}
	if err := c.recordPID(part, d.PID()); err != nil {
		return err
	}
	// containerd writes its own log in its directory; link it where the
	// other parts' logs are.
	_ = os.Remove(c.LogFile(part))
	_ = os.Symlink(d.LogPath, c.LogFile(part))
	c.logf("%s: ready at %s", part, d.Address)
	return nil
}

// StartVigilWorker starts a node's vigil-worker and waits until it polls.
func (c *Cluster) StartVigilWorker(ctx context.Context, node string) error {
	part := VigilWorkerPart(node)
	if c.PID(part) != 0 {
		return nil
	}
	var offset int64
	if st, err := os.Stat(c.LogFile(part)); err == nil {
		offset = st.Size()
	}
	args := append([]string{
		"--address", c.Address(), "--namespace", "default",
		"--node", node,
		"--containerd-address", c.ContainerdAddress(node),
		"--containerd-namespace", c.Namespace,
		"--log-dir", c.ContainerLogDir(node),
		"--log-format", "console",
	}, c.WorkerArgs...)
	if err := c.spawn(part, exec.Command(c.VigilWorker, args...)); err != nil {
		return err
	}
	c.logf("%s: started", part)
	return c.waitReady(ctx, part, 90*time.Second, func(context.Context) error {
		f, err := os.Open(c.LogFile(part))
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		data, _ := io.ReadAll(f)
		if !strings.Contains(string(data), "polling") {
			return errors.New("not polling yet")
		}
		return nil
	})
}

// quietLogger drops the SDK client's own log lines.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
