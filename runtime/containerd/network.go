package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/containerd/v2/pkg/oci"
	gocni "github.com/containerd/go-cni"
	"github.com/containerd/typeurl/v2"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/utils"
	"github.com/coreos/go-iptables/iptables"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Bridge networking defaults. The subnet is one no common tool uses
// (Docker 172.17/16, Podman 10.88/16, Kubernetes CNIs 10.42, 10.244).
const (
	DefaultNetworkName = "vigil"
	DefaultBridge      = "vigil0"
	DefaultSubnet      = "10.213.0.0/16"
	DefaultNetNSDir    = "/run/vigil/netns"
)

// DefaultCNIPluginDirs are where Debian (containernetworking-plugins) and
// upstream releases install the CNI plugins.
var DefaultCNIPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// containerIface is the container's interface on the bridge.
const containerIface = "eth0"

// cniPlugins are the plugins bridge networking runs.
var cniPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// Container labels of bridge-networked containers: the network mode and the
// published ports (JSON), so Start can set the network up again from the
// container alone (after a reboot, or if the state file is lost).
const (
	LabelNetwork = "vigil.network"
	LabelPorts   = "vigil.ports"
)

// NetworkConfig is the node's bridge network. Every container with network
// bridge gets its own network namespace on it, set up with CNI.
type NetworkConfig struct {
	// Name is the CNI network name (default DefaultNetworkName). It names the
	// IPAM directory and tags every iptables rule the plugins add.
	Name string
	// Bridge is the Linux bridge (default DefaultBridge), created on first use.
	Bridge string
	// Subnet is the containers' IPv4 subnet (default DefaultSubnet).
	Subnet string
	// PluginDirs are searched for the CNI plugins (default DefaultCNIPluginDirs).
	PluginDirs []string
	// NetNSDir holds the containers' network namespaces (default DefaultNetNSDir).
	NetNSDir string
}

func (c *NetworkConfig) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultNetworkName
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if len(c.PluginDirs) == 0 {
		c.PluginDirs = DefaultCNIPluginDirs
	}
	if c.NetNSDir == "" {
		c.NetNSDir = DefaultNetNSDir
	}
}

func (c NetworkConfig) validate() error {
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return fmt.Errorf("network subnet %q: want an IPv4 prefix of /30 or larger, e.g. %s", c.Subnet, DefaultSubnet)
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t") {
		return fmt.Errorf("bridge name %q: use at most 15 characters, no '/' or spaces, e.g. %s", c.Bridge, DefaultBridge)
	}
	return nil
}

// SetCNICacheDir moves libcni's cache of CNI results (default /var/lib/cni)
// for the whole process: go-cni has no per-instance setting, so only a
// process's main (the worker) should call it, before any container starts.
func SetCNICacheDir(dir string) { libcni.CacheDir = dir }

// IPAMDir is where host-local keeps the network's address allocations: one
// file per allocated address, named after it.
func IPAMDir(stateDir string) string { return filepath.Join(stateDir, "cni", "ipam") }

// network sets up and tears down containers' network namespaces with CNI.
// What it did for a container is kept in a state file under the node's
// state directory, so a new worker (or the same one after a crash) finds
// the namespace, the address and the ports to tear down.
type network struct {
	cfg      NetworkConfig
	stateDir string // <state>/net/<containerd namespace>
	cni      gocni.CNI
	// mu makes the check of a container's host ports against the other
	// containers' and the recording of its own one step.
	mu sync.Mutex
}

// netState is what was set up for one container.
type netState struct {
	// Network is the CNI network name it was set up on.
	Network string                `json:"network"`
	NetNS   string                `json:"netns"`
	Ports   []runtime.PortMapping `json:"ports,omitempty"`
	IP      string                `json:"ip,omitempty"`
	// Ready is false between recording the namespace and CNI ADD succeeding.
	Ready bool `json:"ready"`
}

func newNetwork(cfg NetworkConfig, stateDir, namespace string) (*network, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0",
		"name":       cfg.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": cfg.Bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": cfg.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": IPAMDir(stateDir),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	})
	if err != nil {
		return nil, err
	}
	// The bridge network first: go-cni names interfaces by position (eth0).
	cni, err := gocni.New(gocni.WithPluginDir(cfg.PluginDirs), gocni.WithMinNetworkCount(2),
		gocni.WithConfListBytes(conf), gocni.WithLoNetwork)
	if err != nil {
		return nil, fmt.Errorf("CNI configuration: %w", err)
	}
	return &network{cfg: cfg, stateDir: filepath.Join(stateDir, "net", namespace), cni: cni}, nil
}

func (n *network) statePath(name string) string { return filepath.Join(n.stateDir, name+".json") }

// load returns the container's network state; os.ErrNotExist if it has none.
func (n *network) load(name string) (netState, error) {
	var st netState
	b, err := os.ReadFile(n.statePath(name))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("network state %s: %w", n.statePath(name), err)
	}
	return st, nil
}

func (n *network) save(name string, st netState) error {
	if err := os.MkdirAll(n.stateDir, 0o750); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := n.statePath(name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, n.statePath(name))
}

// status is what a container's network looks like from outside.
func (st netState) status() *runtime.NetworkStatus {
	return &runtime.NetworkStatus{IP: st.IP, Ports: slices.Clone(st.Ports)}
}

// alive reports whether the namespace is still mounted (a reboot, or
// someone else, may have removed it).
func alive(path string) bool {
	closed, err := netns.LoadNetNS(path).Closed()
	return err == nil && !closed
}

// ensure makes sure the container has a network namespace on the bridge,
// with an address and its ports published. What is there and matches is
// kept; anything else (a half-made setup, other ports, a lost namespace) is
// torn down and made again.
func (n *network) ensure(ctx context.Context, name string, ports []runtime.PortMapping) (netState, error) {
	st, err := n.load(name)
	switch {
	case err == nil:
		if st.Ready && st.Network == n.cfg.Name && slices.Equal(st.Ports, ports) && alive(st.NetNS) {
			// A restart: a process may have taken a port while the task was
			// down. It keeps it: the container's rules go, not its socket.
			if err := n.check(name, ports, false); err != nil {
				if terr := n.teardown(ctx, name, st); terr != nil {
					err = fmt.Errorf("%w (and releasing the container's network: %v)", err, terr)
				}
				return netState{}, err
			}
			return st, nil
		}
		if err := n.teardown(ctx, name, st); err != nil {
			return st, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return st, err
	default:
		n.clearStale(ctx, name, ports)
	}
	if err := n.checkPlugins(); err != nil {
		return netState{}, err
	}
	ns, unhold, err := n.reserve(name, ports)
	if err != nil {
		return netState{}, err
	}
	st = netState{Network: n.cfg.Name, NetNS: ns, Ports: ports}
	res, err := n.cni.Setup(ctx, name, ns, gocni.WithCapabilityPortMap(cniPorts(ports)))
	unhold() // the port rules are in place, or the setup failed
	if err != nil {
		// Leave nothing half-made: the plugins undo what they did by container ID.
		if terr := n.teardown(context.WithoutCancel(ctx), name, st); terr != nil {
			err = fmt.Errorf("%w (and undoing it: %v)", err, terr)
		}
		return netState{}, fmt.Errorf("CNI setup on network %s: %w", n.cfg.Name, err)
	}
	if cfg := res.Interfaces[containerIface]; cfg != nil && len(cfg.IPConfigs) > 0 {
		st.IP = cfg.IPConfigs[0].IP.String()
	}
	st.Ready = true
	return st, n.save(name, st)
}

// reserve checks the ports against every other container's on this node
// and every process on the host, holds them until unhold (so that nothing
// takes one before the port rules are in place), creates the namespace and
// records both before CNI runs, so a crash half-way leaves a state file
// that says what to tear down.
func (n *network) reserve(name string, ports []runtime.PortMapping) (ns string, unhold func(), err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	unhold, err = n.claim(name, ports, true)
	if err != nil {
		return "", nil, err
	}
	netNS, err := netns.NewNetNS(n.cfg.NetNSDir)
	if err != nil {
		unhold()
		return "", nil, fmt.Errorf("network namespace in %s: %w", n.cfg.NetNSDir, err)
	}
	if err := n.save(name, netState{Network: n.cfg.Name, NetNS: netNS.GetPath(), Ports: ports}); err != nil {
		unhold()
		_ = netNS.Remove()
		return "", nil, err
	}
	return netNS.GetPath(), unhold, nil
}

// check is claim without holding: whether container name could publish
// the ports now.
func (n *network) check(name string, ports []runtime.PortMapping, otherNetworks bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	unhold, err := n.claim(name, ports, otherNetworks)
	if err == nil {
		unhold()
	}
	return err
}

// claim refuses a host port another container on this node publishes, or
// a process on the host holds (*runtime.PortInUse), and holds the ports
// until unhold (runtime.HoldPorts). With otherNetworks it also reads the
// port rules of the host's other CNI networks (an exec of iptables, so not
// at every crash restart: a restart keeps its own rules, ahead of any
// added since). The caller holds n.mu.
func (n *network) claim(name string, ports []runtime.PortMapping, otherNetworks bool) (unhold func(), err error) {
	if len(ports) == 0 {
		return func() {}, nil
	}
	files, _ := filepath.Glob(filepath.Join(n.stateDir, "*.json"))
	for _, f := range files {
		other := strings.TrimSuffix(filepath.Base(f), ".json")
		if other == name {
			continue
		}
		st, err := n.load(other)
		if err != nil {
			continue
		}
		for i, p := range ports {
			for _, q := range st.Ports {
				if runtime.PortsClash(p, q) {
					return nil, &runtime.PortInUse{Index: i, Port: p, By: "container " + other}
				}
			}
		}
	}
	if otherNetworks {
		if err := n.otherNetworksClaim(ports); err != nil {
			return nil, err
		}
	}
	return runtime.HoldPorts(ports)
}

// hostportRule matches a jump of portmap's CNI-HOSTPORT-DNAT chain, as
// `iptables -S` prints it: protocol, network, container and host ports.
var hostportRule = regexp.MustCompile(`-p (\w+) .*--comment "dnat name: \\"([^"\\]*)\\" id: \\"([^"\\]*)\\"".* --dports ([0-9,:]+)`)

// otherNetworksClaim refuses a host port a container of another CNI
// network on this host publishes through portmap (nerdctl's, another
// worker's): its rule would send the port's traffic to one of the two. Any
// address counts (the chain does not say which). Best effort: without
// iptables or the chain, nothing of them is known.
func (n *network) otherNetworksClaim(ports []runtime.PortMapping) error {
	ipt, err := iptables.New()
	if err != nil {
		return nil
	}
	rules, err := ipt.List("nat", "CNI-HOSTPORT-DNAT")
	if err != nil {
		return nil
	}
	for _, r := range rules {
		m := hostportRule.FindStringSubmatch(r)
		if m == nil || m[2] == n.cfg.Name {
			continue // ours are in the records
		}
		for i, p := range ports {
			if p.Protocol == m[1] && inPortList(m[4], p.Host) {
				return &runtime.PortInUse{Index: i, Port: p, By: fmt.Sprintf("container %s of CNI network %s", m[3], m[2])}
			}
		}
	}
	return nil
}

// inPortList reports whether port is in an iptables port list ("80,8000:8080").
func inPortList(list string, port int) bool {
	for _, item := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(item, ":")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if a <= port && port <= b {
			return true
		}
	}
	return false
}

// CheckPorts is runtime.Runtime's: a bridge container's host ports
// against the other containers' records and every process on the host.
func (r *Runtime) CheckPorts(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	if err := validateID(id); err != nil {
		return err
	}
	if spec.Network != runtime.NetworkBridge {
		return nil
	}
	return r.net.check(id.ContainerName(), spec.Ports, true)
}

// teardown undoes ensure: CNI DEL (which releases the address and removes
// the port rules, even when the namespace is gone), then the namespace and
// the state file.
func (n *network) teardown(ctx context.Context, name string, st netState) error {
	lost := st.NetNS == "" || !alive(st.NetNS)
	if err := n.cni.Remove(ctx, name, st.NetNS, gocni.WithCapabilityPortMap(cniPorts(st.Ports))); err != nil {
		return fmt.Errorf("CNI teardown on network %s: %w", n.cfg.Name, err)
	}
	if addr := net.ParseIP(st.IP); lost && addr != nil {
		// The bridge plugin finds the address to unmasquerade in the
		// namespace; without it, it leaves the rule (and the chain, which a
		// later setup of this container would reuse and then fail to delete).
		// Remove them the way the plugin does, with the recorded address.
		if err := n.teardownMasq(name, addr); err != nil {
			return fmt.Errorf("masquerade rules of %s on network %s: %w", st.IP, n.cfg.Name, err)
		}
	}
	if st.NetNS != "" {
		if err := netns.LoadNetNS(st.NetNS).Remove(); err != nil {
			return err
		}
	}
	return removeFile(n.statePath(name))
}

// clearStale removes what the host may still hold of an earlier life of
// this container when no state of it is here (a state directory removed
// without releasing its networks): the plugins key their iptables rules by
// container ID and would keep the old ones ahead of the new, sending its
// port to an old address, maybe another container's by now. CNI DEL clears
// the port rules; the masquerade rules, which the bridge plugin finds only
// by address, go by the addresses the host's rules name. Best effort:
// nothing of ours is there to undo.
func (n *network) clearStale(ctx context.Context, name string, ports []runtime.PortMapping) {
	if len(ports) > 0 {
		_ = n.cni.Remove(ctx, name, "", gocni.WithCapabilityPortMap(cniPorts(ports)))
	}
	ipt, err := iptables.New()
	if err != nil {
		return
	}
	rules, err := ipt.List("nat", "POSTROUTING")
	if err != nil {
		return
	}
	chain := utils.FormatChainName(n.cfg.Name, name)
	for _, r := range rules {
		f := strings.Fields(r)
		i := slices.Index(f, "-s")
		if !slices.Contains(f, chain) || i < 0 || i+1 >= len(f) {
			continue
		}
		if addr, _, err := net.ParseCIDR(f[i+1]); err == nil {
			_ = n.teardownMasq(name, addr)
		}
	}
}

// teardownMasq removes the container's masquerade rule for addr, and its
// chain once no rule jumps to it, named as the bridge plugin names them.
func (n *network) teardownMasq(name string, addr net.IP) error {
	return ip.TeardownIPMasq(&net.IPNet{IP: addr, Mask: net.CIDRMask(32, 32)},
		utils.FormatChainName(n.cfg.Name, name), utils.FormatComment(n.cfg.Name, name))
}

// release tears down the container's network if it has one.
func (n *network) release(ctx context.Context, name string) error {
	st, err := n.load(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return n.teardown(ctx, name, st)
}

// checkPlugins names what to install when a plugin is missing; CNI's own
// error ("failed to find plugin") does not.
func (n *network) checkPlugins() error {
	for _, p := range cniPlugins {
		found := false
		for _, dir := range n.cfg.PluginDirs {
			if fi, err := os.Stat(filepath.Join(dir, p)); err == nil && !fi.IsDir() {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("network bridge: CNI plugin %q not found in %s; install containernetworking-plugins on the node or use network: none: %w",
				p, strings.Join(n.cfg.PluginDirs, ", "), runtime.ErrInvalidSpec)
		}
	}
	return nil
}

func cniPorts(ports []runtime.PortMapping) []gocni.PortMapping {
	out := make([]gocni.PortMapping, 0, len(ports))
	for _, p := range ports {
		out = append(out, gocni.PortMapping{HostPort: int32(p.Host), ContainerPort: int32(p.Container), Protocol: p.Protocol, HostIP: p.HostIP})
	}
	return out
}

// networkLabels record a bridge container's network needs on the container.
func networkLabels(spec runtime.ContainerSpec) map[string]string {
	if spec.Network != runtime.NetworkBridge {
		return nil
	}
	ports, _ := json.Marshal(spec.Ports)
	return map[string]string{LabelNetwork: string(runtime.NetworkBridge), LabelPorts: string(ports)}
}

// networkSpecOpts put the container in its namespace (bridge), the node's
// (host) or a new one with loopback only (none, the default).
func networkSpecOpts(spec runtime.ContainerSpec, nsPath string) []oci.SpecOpts {
	switch spec.Network {
	case runtime.NetworkBridge:
		return []oci.SpecOpts{oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath})}
	case runtime.NetworkHost:
		return []oci.SpecOpts{oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf}
	}
	return nil
}

// startNetwork makes sure a bridge container's network is up before its
// task starts, from the container's own labels: after a reboot or a lost
// namespace it is made again, and the container's spec is pointed at the
// new namespace. Containers without a bridge network get nil.
func (r *Runtime) startNetwork(ctx context.Context, c containerd.Container) (*runtime.NetworkStatus, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, err
	}
	if info.Labels[LabelNetwork] != string(runtime.NetworkBridge) {
		return nil, nil
	}
	var ports []runtime.PortMapping
	if err := json.Unmarshal([]byte(info.Labels[LabelPorts]), &ports); err != nil {
		return nil, fmt.Errorf("label %s: %w", LabelPorts, err)
	}
	st, err := r.net.ensure(ctx, info.ID, ports)
	if err != nil {
		return nil, err
	}
	var spec oci.Spec
	if err := typeurl.UnmarshalTo(info.Spec, &spec); err != nil {
		return nil, err
	}
	if spec.Linux == nil {
		return st.status(), nil
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != st.NetNS {
			spec.Linux.Namespaces[i].Path = st.NetNS
			if err := c.Update(ctx, containerd.UpdateContainerOpts(containerd.WithSpec(&spec))); err != nil {
				return nil, err
			}
		}
	}
	return st.status(), nil
}

// networkStatus is a container's network as recorded, without changing it.
func (r *Runtime) networkStatus(name string) *runtime.NetworkStatus {
	st, err := r.net.load(name)
	if err != nil || !st.Ready {
		return nil
	}
	return st.status()
}

// nodeError classifies a failed network or volume setup: a spec the
// node refuses (a host port in use, plugins missing) is ErrInvalidSpec;
// anything else (iptables busy, a plugin failing) is the node's passing
// trouble, retried with backoff and never counted as a crash.
func nodeError(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, runtime.ErrInvalidSpec) {
		return &Error{Op: op, ID: name, Kind: runtime.ErrInvalidSpec, Err: err}
	}
	if isUnavailable(err) {
		return wrap(op, name, err, nil)
	}
	return &Error{Op: op, ID: name, Kind: runtime.ErrUnavailable, Err: err}
}

// ReleaseNetworks tears down every container network recorded under the
// state directory (CNI DEL: addresses, port rules; the namespaces; the state
// files) and deletes the bridge. It is for removing a node's networking
// (`make clean`) after its containers are gone: a running container keeps
// its processes but loses its network.
func (r *Runtime) ReleaseNetworks(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(r.net.stateDir, "*.json"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if err := r.net.release(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if link, err := netlink.LinkByName(r.net.cfg.Bridge); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", r.net.cfg.Bridge, err))
		}
	}
	return errors.Join(errs...)
}
