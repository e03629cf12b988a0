package runtime

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"

	"github.com/prometheus/procfs"

	"github.com/vigil-run/vigil/replica"
)

// PortInUse is a host port a container would publish that is taken: by
// another container of the node, or by a process on the host. Publishing it
// anyway would take the port over (the container's rule wins over the
// process's socket), so the container does not start. It is an
// ErrInvalidSpec: the same spec fails the same way until the port is free.
type PortInUse struct {
	// Index is the mapping's place in the spec's ports.
	Index int
	Port  PortMapping
	// By says who holds the port, e.g. "process python3 (pid 812)" or
	// "container web-api-1".
	By string
}

func (e *PortInUse) Error() string {
	return fmt.Sprintf("%s: host port %s is in use by %s; stop it or publish another host port",
		replica.ErrTypePortInUse, HostPortString(e.Port), e.By)
}

// Is makes a PortInUse an ErrInvalidSpec.
func (e *PortInUse) Is(target error) bool { return target == ErrInvalidSpec }

// PortsClash reports whether two mappings claim the same host port: same
// protocol and port, on the same address or on every address.
func PortsClash(a, b PortMapping) bool {
	if a.Host != b.Host || a.Protocol != b.Protocol {
		return false
	}
	every := func(ip string) bool { return ip == "" || ip == "0.0.0.0" }
	return every(a.HostIP) || every(b.HostIP) || a.HostIP == b.HostIP
}

// HostPortString is the host side of a mapping, e.g. "127.0.0.1:8080" or
// "0.0.0.0:53/udp" (every address when HostIP is empty).
func HostPortString(p PortMapping) string {
	s := net.JoinHostPort(hostIP(p), strconv.Itoa(p.Host))
	if p.Protocol == ProtocolUDP {
		s += "/udp"
	}
	return s
}

func hostIP(p PortMapping) string {
	if p.HostIP == "" {
		return "0.0.0.0"
	}
	return p.HostIP
}

// HoldPorts checks that no process on the host holds the host ports the
// mappings publish, and holds them itself until release: a TCP port is
// listened on and a UDP port bound, as docker-proxy does, so that nothing
// takes one between this check and the container's port rule. A taken
// port is a *PortInUse naming the process where /proc tells. A port whose
// address is not on this host cannot be held, and nothing can listen on it
// either: it is let through. It must run in the host's network namespace.
func HoldPorts(ports []PortMapping) (release func(), err error) {
	var held []io.Closer
	release = func() {
		for _, c := range held {
			_ = c.Close()
		}
	}
	for i, p := range ports {
		c, err := holdPort(p)
		if errors.Is(err, syscall.EACCES) {
			// A port below 1024 and a worker without CAP_NET_BIND_SERVICE
			// (README, least privilege): it cannot hold the port, but /proc
			// still tells whether a process listens on it.
			c, err = nil, nil
			if _, ok := socketInode(p); ok {
				err = syscall.EADDRINUSE
			}
		}
		if err != nil {
			release()
			if errors.Is(err, syscall.EADDRINUSE) {
				return func() {}, &PortInUse{Index: i, Port: p, By: HolderOf(p)}
			}
			return func() {}, fmt.Errorf("ports[%d]: checking host port %s: %w", i, HostPortString(p), err)
		}
		if c != nil {
			held = append(held, c)
		}
	}
	return release, nil
}

// holdPort listens on (TCP) or binds (UDP) the mapping's host port; nil,
// nil when the address is not this host's.
func holdPort(p PortMapping) (io.Closer, error) {
	addr := net.JoinHostPort(hostIP(p), strconv.Itoa(p.Host))
	// The rules are per family: an IPv4 port is held on IPv4 only (Go would
	// make 0.0.0.0 a dual-stack socket, refused by a v6-only listener).
	family := "6"
	if ip := net.ParseIP(hostIP(p)); ip != nil && ip.To4() != nil {
		family = "4"
	}
	var c io.Closer
	var err error
	if p.Protocol == ProtocolUDP {
		c, err = net.ListenPacket("udp"+family, addr)
	} else {
		c, err = net.Listen("tcp"+family, addr)
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return nil, nil
	}
	return c, err
}

// HolderOf names what holds a mapping's host port, as far as /proc tells:
// "process NAME (pid N)", else "a process on the host".
func HolderOf(p PortMapping) string {
	const unknown = "a process on the host"
	inode, ok := socketInode(p)
	if !ok {
		return unknown
	}
	procs, err := procfs.AllProcs()
	if err != nil {
		return unknown
	}
	target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	for _, proc := range procs {
		fds, err := proc.FileDescriptorTargets()
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if fd == target {
				name, _ := proc.Comm()
				return fmt.Sprintf("process %s (pid %d)", name, proc.PID)
			}
		}
	}
	return unknown
}

// tcpListen is the TCP_LISTEN state in /proc/net/tcp.
const tcpListen = 10

// socketInode finds the socket that holds the mapping's host port: a
// listening TCP socket or any UDP socket on that port, on the same address
// or on every address.
func socketInode(p PortMapping) (uint64, bool) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, false
	}
	// The UDP tables have the TCP tables' type under another name.
	var tables []procfs.NetTCP
	if p.Protocol == ProtocolUDP {
		for _, read := range []func() (procfs.NetUDP, error){fs.NetUDP, fs.NetUDP6} {
			if t, err := read(); err == nil {
				tables = append(tables, procfs.NetTCP(t))
			}
		}
	} else {
		for _, read := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
			if t, err := read(); err == nil {
				tables = append(tables, t)
			}
		}
	}
	want := net.ParseIP(hostIP(p))
	for _, table := range tables {
		for _, l := range table {
			if l.LocalPort != uint64(p.Host) || (p.Protocol != ProtocolUDP && l.St != tcpListen) {
				continue
			}
			if want.IsUnspecified() || l.LocalAddr.IsUnspecified() || l.LocalAddr.Equal(want) {
				return l.Inode, true
			}
		}
	}
	return 0, false
}
