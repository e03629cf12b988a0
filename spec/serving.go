package spec

import (
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/moby/sys/signal"
	"gopkg.in/yaml.v3"

	"github.com/vigil-run/vigil/runtime"
)

// DefaultNetwork is a service's network when the file names none.
const DefaultNetwork = runtime.NetworkBridge

// Limits of the serving fields.
const (
	MaxPorts   = 100
	MaxVolumes = 100
	maxPort    = 65535
)

var (
	portFields   = []string{"container", "host", "protocol", "host_ip"}
	volumeFields = []string{"source", "name", "target", "readonly"}
)

// servingFields are the service fields parseServing reads.
var servingFields = []string{"network", "ports", "volumes", "init", "stop_signal"}

// parseServing reads a service's network, ports, volumes, init and stop
// signal. Ports hold the host port of replica 1; replica n publishes on
// host + n - 1 (runtime.ReplicaPorts).
func parseServing(fields map[string]*yaml.Node, path string, replicas int) (runtime.Serving, []publishedPort, error) {
	s, err := parseServingFields(fields, path, replicas)
	if err != nil {
		return s, nil, err
	}
	var claims []publishedPort
	if n := fields["ports"]; n != nil {
		for i, p := range s.Ports {
			claims = append(claims, publishedPort{path: fmt.Sprintf("%s.ports[%d]", path, i), at: n.Content[i], port: p, last: p.Host + replicas - 1})
		}
	}
	return s, claims, checkHostPorts(claims)
}

func parseServingFields(fields map[string]*yaml.Node, path string, replicas int) (runtime.Serving, error) {
	s := runtime.Serving{Network: DefaultNetwork}
	var err error
	if n := fields["network"]; n != nil {
		v, err := scalar(n, path+".network")
		if err != nil {
			return s, err
		}
		switch mode := runtime.NetworkMode(v); mode {
		case runtime.NetworkBridge, runtime.NetworkHost, runtime.NetworkNone:
			s.Network = mode
		default:
			return s, fieldErr(n, path+".network", "%s is not one of bridge, host, none", quote(v))
		}
	}
	if n := fields["ports"]; n != nil {
		if s.Network != runtime.NetworkBridge {
			return s, fieldErr(n, path+".ports", "published ports need network: bridge (with network: %s there is nothing to publish: host uses the node's ports directly, none has no network); remove ports or use bridge", s.Network)
		}
		if s.Ports, err = parsePorts(n, path+".ports", replicas); err != nil {
			return s, err
		}
	}
	if n := fields["volumes"]; n != nil {
		if s.Volumes, err = parseVolumes(n, path+".volumes"); err != nil {
			return s, err
		}
	}
	if n := fields["init"]; n != nil {
		if s.Init, err = boolean(n, path+".init"); err != nil {
			return s, err
		}
	}
	if n := fields["stop_signal"]; n != nil {
		if s.StopSignal, err = scalar(n, path+".stop_signal"); err != nil {
			return s, err
		}
		if sig, err := signal.ParseSignal(s.StopSignal); err != nil || sig == 0 {
			return s, fieldErr(n, path+".stop_signal", "%s is not a signal; use a name such as SIGTERM, SIGINT or SIGQUIT", quote(s.StopSignal))
		}
	}
	return s, nil
}

func parsePorts(n *yaml.Node, path string, replicas int) ([]runtime.PortMapping, error) {
	items, err := sequence(n, path, "- { container: 8080, host: 18080 }")
	if err != nil {
		return nil, err
	}
	if len(items) > MaxPorts {
		return nil, fieldErr(n, path, "%d ports; publish at most %d", len(items), MaxPorts)
	}
	var ports []runtime.PortMapping
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		fields, err := mapping(item, ipath, portFields)
		if err != nil {
			return nil, err
		}
		p := runtime.PortMapping{Protocol: runtime.ProtocolTCP}
		for _, f := range []struct {
			name string
			dst  *int
		}{{"container", &p.Container}, {"host", &p.Host}} {
			fn := fields[f.name]
			if fn == nil {
				return nil, fieldErr(item, ipath+"."+f.name, "missing; add %s: <port 1-%d>", f.name, maxPort)
			}
			if *f.dst, err = integer(fn, ipath+"."+f.name); err != nil {
				return nil, err
			}
			if *f.dst < 1 || *f.dst > maxPort {
				return nil, fieldErr(fn, ipath+"."+f.name, "%d is out of range; use a port from 1 to %d", *f.dst, maxPort)
			}
		}
		if last := p.Host + replicas - 1; last > maxPort {
			return nil, fieldErr(fields["host"], ipath+".host", "%d with %d replicas publishes up to %d (replica n uses host + n - 1), past %d; use a lower host port", p.Host, replicas, last, maxPort)
		}
		if pn := fields["protocol"]; pn != nil {
			if p.Protocol, err = scalar(pn, ipath+".protocol"); err != nil {
				return nil, err
			}
			if p.Protocol != runtime.ProtocolTCP && p.Protocol != runtime.ProtocolUDP {
				return nil, fieldErr(pn, ipath+".protocol", "%s is not one of tcp, udp", quote(p.Protocol))
			}
		}
		if hn := fields["host_ip"]; hn != nil {
			if p.HostIP, err = scalar(hn, ipath+".host_ip"); err != nil {
				return nil, err
			}
			addr, perr := netip.ParseAddr(p.HostIP)
			if perr != nil || !addr.Is4() || addr.String() != p.HostIP {
				return nil, fieldErr(hn, ipath+".host_ip", "%s is not an IPv4 address of the node; use e.g. 127.0.0.1, or omit it for every address", quote(p.HostIP))
			}
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func parseVolumes(n *yaml.Node, path string) ([]runtime.Volume, error) {
	items, err := sequence(n, path, "- { name: data, target: /data }")
	if err != nil {
		return nil, err
	}
	if len(items) > MaxVolumes {
		return nil, fieldErr(n, path, "%d volumes; mount at most %d", len(items), MaxVolumes)
	}
	targets := map[string]string{}
	var vols []runtime.Volume
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		fields, err := mapping(item, ipath, volumeFields)
		if err != nil {
			return nil, err
		}
		var v runtime.Volume
		sn, nn := fields["source"], fields["name"]
		switch {
		case sn != nil && nn != nil:
			return nil, fieldErr(nn, ipath+".name", "a volume is either a bind mount (source) or a named volume (name), not both; remove one")
		case sn != nil:
			if v.Source, err = cleanPath(sn, ipath+".source", "a directory or file on the node, e.g. /srv/web"); err != nil {
				return nil, err
			}
		case nn != nil:
			if v.Name, err = scalar(nn, ipath+".name"); err != nil {
				return nil, err
			}
			if err := checkName(nn, ipath+".name", v.Name); err != nil {
				return nil, err
			}
		default:
			return nil, fieldErr(item, ipath, "give source (a bind mount of a node path) or name (a named volume the node keeps)")
		}
		tn := fields["target"]
		if tn == nil {
			return nil, fieldErr(item, ipath+".target", "missing; add target: /path/in/the/container")
		}
		if v.Target, err = cleanPath(tn, ipath+".target", "where it appears in the container, e.g. /data"); err != nil {
			return nil, err
		}
		if prev, dup := targets[v.Target]; dup {
			return nil, fieldErr(tn, ipath+".target", "%s is already the target of %s; mount one volume per path", v.Target, prev)
		}
		targets[v.Target] = ipath
		if rn := fields["readonly"]; rn != nil {
			if v.ReadOnly, err = boolean(rn, ipath+".readonly"); err != nil {
				return nil, err
			}
		}
		vols = append(vols, v)
	}
	return vols, nil
}

// cleanPath reads an absolute path without "..": paths in deployment files
// must say exactly what they mean.
func cleanPath(n *yaml.Node, fpath, what string) (string, error) {
	v, err := scalar(n, fpath)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(v, "/") {
		return "", fieldErr(n, fpath, "%s is not an absolute path; give %s", quote(v), what)
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return "", fieldErr(n, fpath, "%s contains \"..\"; write the path without it", quote(v))
		}
	}
	if path.Clean(v) != v {
		return "", fieldErr(n, fpath, "%s is not a clean path; write %s", quote(v), quote(path.Clean(v)))
	}
	return v, nil
}

func sequence(n *yaml.Node, path, example string) ([]*yaml.Node, error) {
	if err := noAlias(n, path); err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(n, path, "want a list, got %s; write e.g. %s", kindName(n), example)
	}
	return n.Content, nil
}

func boolean(n *yaml.Node, path string) (bool, error) {
	if err := noAlias(n, path); err != nil {
		return false, err
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, fieldErr(n, path, "want true or false, got %s", describe(n))
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		return false, fieldErr(n, path, "want true or false, got %s", describe(n))
	}
	return v, nil
}

// publishedPort is one host port range a service claims on the node.
type publishedPort struct {
	path string // the field that claims it, e.g. services.web.ports[0]
	at   *yaml.Node
	// node is the service's node: empty for the one `vigil supervise` names.
	node string
	port runtime.PortMapping
	last int // host port of the last replica
}

// checkHostPorts refuses two published ports (of one service or of two) on
// the same host port of one node. Services without a node of their own go
// to the node `vigil supervise` names, which may be any named one.
func checkHostPorts(claims []publishedPort) error {
	for i, a := range claims {
		for _, b := range claims[:i] {
			if a.port.Protocol != b.port.Protocol || a.port.Host > b.last || b.port.Host > a.last {
				continue
			}
			if a.node != "" && b.node != "" && a.node != b.node {
				continue
			}
			if a.port.HostIP != "" && b.port.HostIP != "" && a.port.HostIP != b.port.HostIP {
				continue
			}
			return fieldErr(a.at, a.path+".host", "%s host ports %s clash with %s (%s) on one node; use host ports no other service of the node publishes, or place the services on different nodes",
				a.port.Protocol, portRange(a), b.path, portRange(b))
		}
	}
	return nil
}

func portRange(p publishedPort) string {
	if p.last == p.port.Host {
		return fmt.Sprint(p.port.Host)
	}
	return fmt.Sprintf("%d-%d (one per replica)", p.port.Host, p.last)
}
