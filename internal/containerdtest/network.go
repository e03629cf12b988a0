package containerdtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

// testSubnets is where private test networks take a /24 each: far from the
// node default (10.213.0.0/16) and from what Docker, Podman and Kubernetes use.
var testSubnets = netip.MustParsePrefix("10.214.0.0/16")

// subnetLock serialises choosing a subnet between test processes: the
// choice is made and the bridge holding it created under it.
const subnetLock = "/tmp/vigil-test-subnets.lock"

// PrivateNetwork is a bridge network of one test: its own CNI network name
// (which tags its iptables rules), bridge, /24 and namespace directory.
type PrivateNetwork struct {
	Config   vcontainerd.NetworkConfig
	StateDir string // the runtime's StateDir (IPAM allocations live under it)
}

// Network makes a private bridge network for the test under dir and removes
// it (bridge, leftover iptables rules, namespaces) when the test ends.
func Network(t testing.TB, dir string) PrivateNetwork {
	t.Helper()
	if err := Prerequisites(); err != nil {
		Unavailable(t, err.Error())
	}
	n, err := NewNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Errorf("remove the test network: %v", err)
		}
	})
	return n
}

// NewNetwork makes a private bridge network under dir: it creates the
// bridge with its gateway address, so other tests choosing a subnet see it
// taken. Remove undoes it.
func NewNetwork(dir string) (PrivateNetwork, error) {
	tag := randomHex(3)
	n := PrivateNetwork{
		Config: vcontainerd.NetworkConfig{
			Name:     "vigil-test-" + tag,
			Bridge:   "vgt" + tag,
			NetNSDir: filepath.Join(dir, "netns"),
		},
		StateDir: filepath.Join(dir, "vigil"),
	}
	lock, err := os.OpenFile(subnetLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return n, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return n, err
	}
	subnet, err := freeSubnet()
	if err != nil {
		return n, err
	}
	n.Config.Subnet = subnet.String()
	gw := subnet.Addr().Next()
	for _, args := range [][]string{
		{"link", "add", n.Config.Bridge, "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(gw, subnet.Bits()).String(), "dev", n.Config.Bridge},
		{"link", "set", n.Config.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = n.Remove()
			return n, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n, nil
}

// WorkerArgs are the vigil-worker flags of the network and its state dir.
func (n PrivateNetwork) WorkerArgs() []string {
	c := n.Config
	return []string{"--state-dir", n.StateDir, "--bridge", c.Bridge, "--subnet", c.Subnet,
		"--cni-network", c.Name, "--netns-dir", c.NetNSDir}
}

// freeSubnet picks a /24 of testSubnets that no interface of the host has
// an address in.
func freeSubnet() (netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	used := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && testSubnets.Contains(ip) {
				p, _ := ip.Prefix(24)
				used[p] = true
			}
		}
	}
	base := testSubnets.Addr().As4()
	for range 512 {
		third := byte(rand.IntN(256))
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], third, 0}), 24)
		if !used[p] {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 left in %s", testSubnets)
}

// Allocations lists the addresses IPAM holds on the network.
func (n PrivateNetwork) Allocations() []string {
	entries, _ := os.ReadDir(filepath.Join(vcontainerd.IPAMDir(n.StateDir), n.Config.Name))
	var ips []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// Namespaces lists the network namespaces left in the network's directory.
func (n PrivateNetwork) Namespaces() []string {
	entries, _ := os.ReadDir(n.Config.NetNSDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Rules lists the iptables rules (iptables-save syntax) the CNI plugins
// added for this network: each carries the network's name in its comment.
func (n PrivateNetwork) Rules() ([]string, error) {
	var rules []string
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && strings.Contains(line, `name: \"`+n.Config.Name+`\"`) {
				rules = append(rules, table+" "+line)
			}
		}
	}
	return rules, nil
}

var jumpTarget = regexp.MustCompile(` -j (CNI-[A-Za-z0-9-]+)`)

// Remove deletes the bridge, every iptables rule tagged with the network's
// name (and the chains they jump to) and the namespaces left in its directory.
func (n PrivateNetwork) Remove() error {
	var errs []string
	rules, err := n.Rules()
	if err != nil {
		errs = append(errs, err.Error())
	}
	// The rules in the plugins' shared chains first; the per-container
	// chains they jump to then go as a whole.
	for _, r := range rules {
		table, rule, _ := strings.Cut(r, " ")
		if strings.HasPrefix(rule, "-A CNI-") && !strings.HasPrefix(rule, "-A CNI-HOSTPORT-") {
			continue
		}
		args := append([]string{"-t", table, "-D"}, splitRule(strings.TrimPrefix(rule, "-A "))...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("iptables %s: %v: %s", strings.Join(args, " "), err, out))
		}
		if m := jumpTarget.FindStringSubmatch(rule); m != nil && !strings.HasPrefix(m[1], "CNI-HOSTPORT-") {
			_ = exec.Command("iptables", "-t", table, "-F", m[1]).Run()
			_ = exec.Command("iptables", "-t", table, "-X", m[1]).Run()
		}
	}
	for _, ns := range n.Namespaces() {
		p := filepath.Join(n.Config.NetNSDir, ns)
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		_ = os.Remove(p)
	}
	if out, err := exec.Command("ip", "link", "del", n.Config.Bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		errs = append(errs, fmt.Sprintf("ip link del %s: %v: %s", n.Config.Bridge, err, out))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// splitRule splits an iptables-save rule into arguments, keeping quoted
// comments (with their escaped quotes) whole.
func splitRule(rule string) []string {
	var args []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(rule); i++ {
		c := rule[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(rule):
			i++
			cur.WriteByte(rule[i])
		case c == '"':
			inQuote = !inQuote
		case c == ' ' && !inQuote:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}
