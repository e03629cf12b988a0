package runtime_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vigil-run/vigil/runtime"
)

// A port a process of the host listens on is PortInUse, naming the process;
// a free port is held until release, so nothing else can take it meanwhile.
func TestHoldPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := runtime.PortMapping{Container: 80, Host: l.Addr().(*net.TCPAddr).Port, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}
	free := freePort(t)

	for _, p := range []runtime.PortMapping{taken, {Container: 80, Host: taken.Host, Protocol: runtime.ProtocolTCP}} {
		_, err = runtime.HoldPorts([]runtime.PortMapping{free, p})
		var inUse *runtime.PortInUse
		if !errors.As(err, &inUse) || inUse.Index != 1 || !errors.Is(err, runtime.ErrInvalidSpec) {
			t.Fatalf("HoldPorts of a port in use (host IP %q): %v, want PortInUse of ports[1]", p.HostIP, err)
		}
		want := "PortInUse: host port " + runtime.HostPortString(p) + " is in use by process "
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) {
			t.Fatalf("error %q, want it to begin with %q and name this process (pid %d)", err, want, os.Getpid())
		}
	}
	// The free port was let go with the failure.
	if l2, err := net.Listen("tcp", runtime.HostPortString(free)); err != nil {
		t.Fatalf("the free port stays held after a failed HoldPorts: %v", err)
	} else {
		l2.Close()
	}

	udp := runtime.PortMapping{Container: 53, Host: free.Host, Protocol: runtime.ProtocolUDP, HostIP: "127.0.0.1"}
	release, err := runtime.HoldPorts([]runtime.PortMapping{free, udp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.Listen("tcp", runtime.HostPortString(free)); err == nil {
		t.Fatal("a held TCP port could be listened on")
	}
	if _, err := net.ListenPacket("udp", "127.0.0.1:"+fmt.Sprint(udp.Host)); err == nil {
		t.Fatal("a held UDP port could be bound")
	}
	release()
	if l2, err := net.Listen("tcp", runtime.HostPortString(free)); err != nil {
		t.Fatalf("a released port cannot be listened on: %v", err)
	} else {
		l2.Close()
	}
}

// An IPv4 port is held on IPv4 only: a listener on IPv6 alone keeps its
// port, and the container's IPv4 rules take nothing from it.
func TestHoldPortsIPv4Only(t *testing.T) {
	l, err := net.Listen("tcp6", "[::]:0") // Go makes it v6-only
	if err != nil {
		t.Skipf("no IPv6 here: %v", err)
	}
	defer l.Close()
	p := runtime.PortMapping{Container: 80, Host: l.Addr().(*net.TCPAddr).Port, Protocol: runtime.ProtocolTCP}
	release, err := runtime.HoldPorts([]runtime.PortMapping{p})
	if err != nil {
		t.Fatalf("an IPv4 port a v6-only listener holds: %v", err)
	}
	release()
}

func freePort(t *testing.T) runtime.PortMapping {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return runtime.PortMapping{Container: 80, Host: l.Addr().(*net.TCPAddr).Port, Protocol: runtime.ProtocolTCP, HostIP: "127.0.0.1"}
}
