package containerd_test

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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/coreos/go-iptables/iptables"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

// httpdScript serves "hello from <hostname>" on port 8080.
const httpdScript = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"

// bridged starts a private containerd and a runtime on a private bridge network.
func bridged(t *testing.T) (*containerdtest.Daemon, *vcontainerd.Runtime, containerdtest.PrivateNetwork) {
	t.Helper()
	d := containerdtest.Start(t)
	n := containerdtest.Network(t, d.Dir)
	cfg := d.RuntimeConfig()
	cfg.Network, cfg.StateDir = n.Config, n.StateDir
	rt, err := vcontainerd.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return d, rt, n
}

// freePort is a TCP port nothing listens on at 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get fetches http://127.0.0.1:port/ until it answers (the server may still
// be starting), failing after 30 s.
func get(t *testing.T, port int) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	eventually(t, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, fmt.Sprintf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200, fmt.Sprintf("GET %s: %s %q", url, resp.Status, body)
	})
	return body
}

func countState(t *testing.T, n containerdtest.PrivateNetwork) (ips, rules, namespaces int) {
	t.Helper()
	r, err := n.Rules()
	if err != nil {
		t.Fatal(err)
	}
	return len(n.Allocations()), len(r), len(n.Namespaces())
}

// A bridge container gets an address of the node's subnet and its port is
// published on 127.0.0.1; crash restarts keep the same namespace, address
// and rules (nothing is set up again, nothing leaks), and Remove releases
// all of it.
func TestBridgePublishesPortAndReleasesEverything(t *testing.T) {
	d, rt, n := bridged(t)
	ctx := testCtx(t)
	port := freePort(t)
	id := newID("web")
	spec := containerdtest.TestImage(httpdScript)
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 8080, Host: port, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}

	info := runSpec(t, rt, id, spec)
	if info.Network == nil {
		t.Fatal("Start reported no network for a bridge container")
	}
	ip, err := netip.ParseAddr(info.Network.IP)
	if err != nil || !netip.MustParsePrefix(n.Config.Subnet).Contains(ip) {
		t.Fatalf("container IP %q is not in the network's subnet %s", info.Network.IP, n.Config.Subnet)
	}
	if len(info.Network.Ports) != 1 || info.Network.Ports[0].Host != port {
		t.Fatalf("published ports = %+v; want host port %d", info.Network.Ports, port)
	}
	if body := get(t, port); !strings.Contains(body, "hello from") {
		t.Fatalf("GET answered %q", body)
	}
	ips, rules, nss := countState(t, n)
	if ips != 1 || rules == 0 || nss != 1 {
		t.Fatalf("after the first start: %d addresses, %d rules, %d namespaces; want 1, some, 1", ips, rules, nss)
	}

	for i := range 3 {
		killTask(t, d, id, syscall.SIGKILL)
		wait(t, rt, id)
		again, err := rt.Start(ctx, id)
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		if again.Network == nil || again.Network.IP != info.Network.IP {
			t.Fatalf("restart %d: network %+v; want the same address %s", i, again.Network, info.Network.IP)
		}
		get(t, port)
	}
	if i2, r2, n2 := countState(t, n); i2 != ips || r2 != rules || n2 != nss {
		t.Fatalf("after crash restarts: %d addresses, %d rules, %d namespaces; before: %d, %d, %d", i2, r2, n2, ips, rules, nss)
	}

	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if i2, r2, n2 := countState(t, n); i2 != 0 || r2 != 0 || n2 != 0 {
		rs, _ := n.Rules()
		t.Fatalf("after Remove: %d addresses, %d rules (%v), %d namespaces left; want none", i2, r2, rs, n2)
	}
}

// loseNamespaces unmounts and removes the network's namespaces behind
// Vigil's back, as a reboot does.
func loseNamespaces(t *testing.T, n containerdtest.PrivateNetwork) {
	t.Helper()
	for _, ns := range n.Namespaces() {
		p := filepath.Join(n.Config.NetNSDir, ns)
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// A namespace lost behind Vigil's back (as after a reboot) is made again on
// the next start, the container pointed at it, and the port works again.
func TestLostNamespaceIsMadeAgain(t *testing.T) {
	d, rt, n := bridged(t)
	ctx := testCtx(t)
	port := freePort(t)
	id := newID("lost")
	spec := containerdtest.TestImage(httpdScript)
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 8080, Host: port, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}
	runSpec(t, rt, id, spec)
	get(t, port)

	killTask(t, d, id, syscall.SIGKILL)
	wait(t, rt, id)
	loseNamespaces(t, n)
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatalf("start after the namespace was lost: %v", err)
	}
	get(t, port)
	if ips, _, nss := countState(t, n); ips != 1 || nss != 1 {
		t.Fatalf("after the namespace was made again: %d addresses, %d namespaces; want 1, 1", ips, nss)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ips, rules, nss := countState(t, n); ips != 0 || rules != 0 || nss != 0 {
		t.Fatalf("after Remove: %d addresses, %d rules, %d namespaces left", ips, rules, nss)
	}
}

// A bridge container deleted behind Vigil's back still has its address and
// rules; Remove releases them.
func TestRemoveAfterOutsideDeleteReleasesNetwork(t *testing.T) {
	d, rt, n := bridged(t)
	ctx := testCtx(t)
	id := newID("gone")
	spec := containerdtest.TestImage("sleep 1000")
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 80, Host: freePort(t), Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}
	runSpec(t, rt, id, spec)
	client := rt.Client()
	nctx := namespaces.WithNamespace(ctx, d.Namespace)
	c, err := client.LoadContainer(nctx, id.ContainerName())
	if err != nil {
		t.Fatal(err)
	}
	if task, err := c.Task(nctx, nil); err == nil {
		if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(nctx, containerd.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ips, rules, nss := countState(t, n); ips != 0 || rules != 0 || nss != 0 {
		t.Fatalf("after Remove of a container deleted outside: %d addresses, %d rules, %d namespaces left", ips, rules, nss)
	}
}

// ReleaseNetworks (make clean) leaves no address, rule, namespace or bridge.
func TestReleaseNetworks(t *testing.T) {
	d, rt, n := bridged(t)
	for range 2 {
		id := newID("rel")
		spec := containerdtest.TestImage("sleep 1000")
		spec.Network = runtime.NetworkBridge
		spec.Ports = []runtime.PortMapping{{Container: 80, Host: freePort(t), Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}
		runSpec(t, rt, id, spec)
		killTask(t, d, id, syscall.SIGKILL)
	}
	if err := rt.ReleaseNetworks(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if ips, rules, nss := countState(t, n); ips != 0 || rules != 0 || nss != 0 {
		t.Fatalf("after ReleaseNetworks: %d addresses, %d rules, %d namespaces left", ips, rules, nss)
	}
	if _, err := net.InterfaceByName(n.Config.Bridge); err == nil {
		t.Fatalf("bridge %s left", n.Config.Bridge)
	}
}

// Two containers of one node cannot publish the same host port, and no
// container takes over a port a process of the host listens on: at its first
// start or at a restart, it fails with PortInUse and the process keeps
// serving.
func TestHostPortInUseIsRefused(t *testing.T) {
	d, rt, _ := bridged(t)
	ctx := testCtx(t)
	port := freePort(t)
	spec := containerdtest.TestImage("sleep 1000")
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 8080, Host: port, Protocol: runtime.ProtocolTCP}}
	first, second := newID("a"), newID("b")
	if err := rt.Create(ctx, first, spec); err != nil {
		t.Fatal(err)
	}
	if err := rt.CheckPorts(ctx, first, spec); err != nil {
		t.Fatalf("a container's own ports count against it: %v", err)
	}
	spec.Ports[0].HostIP = "127.0.0.1"
	for what, err := range map[string]error{"create": rt.Create(ctx, second, spec), "check": rt.CheckPorts(ctx, second, spec)} {
		var inUse *runtime.PortInUse
		if !errors.As(err, &inUse) || !errors.Is(err, runtime.ErrInvalidSpec) || inUse.By != "container "+first.ContainerName() {
			t.Fatalf("%s of a second container on the same host port: %v; want PortInUse naming the first", what, err)
		}
	}
	if err := rt.Remove(ctx, first); err != nil {
		t.Fatal(err)
	}

	// A container of another CNI network (nerdctl's, another worker's)
	// publishes it with portmap.
	other := othersRule(t, "tcp", port)
	wantBy := "container x.web-1 of CNI network " + other
	for what, err := range map[string]error{"create": rt.Create(ctx, second, spec), "check": rt.CheckPorts(ctx, second, spec)} {
		var inUse *runtime.PortInUse
		if !errors.As(err, &inUse) || inUse.By != wantBy {
			t.Fatalf("%s of a container on a port another CNI network publishes: %v; want PortInUse by %s", what, err, wantBy)
		}
	}

	// A process of the host listens: the first start fails, nothing changes.
	spec = containerdtest.TestImage(httpdScript)
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 8080, Host: freePort(t), Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}
	stopHost := hostServer(t, spec.Ports[0].Host)
	web := newID("web")
	wantInUse(t, rt.Create(ctx, web, spec), spec.Ports[0])
	if body := get(t, spec.Ports[0].Host); body != "host" {
		t.Fatalf("the host's server answers %q, want host", body)
	}
	stopHost()
	runSpec(t, rt, web, spec)
	if body := get(t, spec.Ports[0].Host); !strings.HasPrefix(body, "hello from") {
		t.Fatalf("the container answers %q", body)
	}

	// It takes the port while the container is down: the restart fails and
	// the container's port rules go.
	killTask(t, d, web, syscall.SIGKILL)
	wait(t, rt, web)
	stopHost = hostServer(t, spec.Ports[0].Host)
	_, err := rt.Start(ctx, web)
	wantInUse(t, err, spec.Ports[0])
	if body := get(t, spec.Ports[0].Host); body != "host" {
		t.Fatalf("after the failed restart the port answers %q, want the host's server", body)
	}
	stopHost()
	if _, err := rt.Start(ctx, web); err != nil {
		t.Fatal(err)
	}
	if body := get(t, spec.Ports[0].Host); !strings.HasPrefix(body, "hello from") {
		t.Fatalf("the restarted container answers %q", body)
	}
	if err := rt.Remove(ctx, web); err != nil {
		t.Fatal(err)
	}
}

// othersRule adds to the host's CNI-HOSTPORT-DNAT chain a rule as portmap
// writes it for a container of another network publishing port, until the
// test ends; it returns the network's name.
func othersRule(t *testing.T, proto string, port int) string {
	t.Helper()
	ipt, err := iptables.New()
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := ipt.ChainExists("nat", "CNI-HOSTPORT-DNAT"); !ok {
		if err := ipt.NewChain("nat", "CNI-HOSTPORT-DNAT"); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("other%d", port)
	rule := []string{"-p", proto, "-m", "comment", "--comment", fmt.Sprintf("dnat name: %q id: %q", name, "x.web-1"),
		"-m", "multiport", "--dports", strconv.Itoa(port), "-j", "RETURN"}
	if err := ipt.Append("nat", "CNI-HOSTPORT-DNAT", rule...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ipt.Delete("nat", "CNI-HOSTPORT-DNAT", rule...) })
	return name
}

// hostServer serves "host" on 127.0.0.1:port from this process until stop.
func hostServer(t *testing.T, port int) (stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "host") })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return func() { _ = srv.Close() }
}

// wantInUse checks err is PortInUse of p, naming this process.
func wantInUse(t *testing.T, err error, p runtime.PortMapping) {
	t.Helper()
	var inUse *runtime.PortInUse
	want := "PortInUse: host port " + runtime.HostPortString(p) + " is in use by process "
	if !errors.As(err, &inUse) || !strings.HasPrefix(inUse.Error(), want) || !strings.Contains(inUse.By, fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Fatalf("error %v; want one beginning %q and naming this process (pid %d)", err, want, os.Getpid())
	}
}

// network none has loopback only; host shares the node's interfaces.
func TestNoneAndHostNetworks(t *testing.T) {
	d, rt, _ := bridged(t)
	_ = d
	for _, tc := range []struct {
		mode runtime.NetworkMode
		want func(string) bool
	}{
		{runtime.NetworkNone, func(out string) bool { return strings.TrimSpace(out) == "lo" }},
		{runtime.NetworkHost, func(out string) bool { return strings.Count(out, "\n") > 1 }},
	} {
		id := newID(string(tc.mode))
		spec := containerdtest.TestImage("ls /sys/class/net")
		spec.Network = tc.mode
		info := runSpec(t, rt, id, spec)
		if info.Network != nil {
			t.Errorf("network %s: Start reported %+v; want no network status", tc.mode, info.Network)
		}
		wait(t, rt, id)
		out, err := logOf(rt, testCtx(t), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !tc.want(string(out)) {
			t.Errorf("network %s: interfaces %q", tc.mode, out)
		}
	}
}

// A state directory lost without releasing its networks (the node's
// iptables keep the container's port rules) must not send the container's
// port to its old address once it starts again, here another container's.
func TestStaleRulesOfALostStateDirAreCleared(t *testing.T) {
	d, rt, n := bridged(t)
	ctx := testCtx(t)
	port := freePort(t)
	a, b := newID("a"), newID("b")
	spec := containerdtest.TestImage(httpdScript)
	spec.Network = runtime.NetworkBridge
	spec.Ports = []runtime.PortMapping{{Container: 8080, Host: port, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}}
	first := runSpec(t, rt, a, spec)
	if body := get(t, port); !strings.Contains(body, a.ContainerName()) {
		t.Fatalf("GET before: %q; want %s's page", body, a.ContainerName())
	}

	// The state directory goes (network states, IPAM, namespaces); the
	// host's iptables rules stay.
	killTask(t, d, a, syscall.SIGKILL)
	wait(t, rt, a)
	loseNamespaces(t, n)
	for _, dir := range []string{filepath.Join(n.StateDir, "net"), vcontainerd.IPAMDir(n.StateDir)} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}

	// Another container takes a's old address; then a starts again.
	other := containerdtest.TestImage(httpdScript)
	other.Network = runtime.NetworkBridge
	if info := runSpec(t, rt, b, other); info.Network == nil || info.Network.IP != first.Network.IP {
		t.Fatalf("b's network %+v; the test wants it on a's old address %s", info.Network, first.Network.IP)
	}
	if _, err := rt.Start(ctx, a); err != nil {
		t.Fatalf("start a again: %v", err)
	}
	if body := get(t, port); !strings.Contains(body, a.ContainerName()) {
		rules, _ := n.Rules()
		t.Fatalf("GET after: %q; want %s's page, not its old address's (rules: %v)", body, a.ContainerName(), rules)
	}
	for _, id := range []replica.ID{a, b} {
		if err := rt.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if rules, _ := n.Rules(); len(rules) != 0 {
		t.Fatalf("after Remove: rules left: %v", rules)
	}
}
