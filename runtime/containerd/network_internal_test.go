package containerd

import "testing"

// portmap's rules as `iptables -t nat -S CNI-HOSTPORT-DNAT` prints them.
func TestHostportRule(t *testing.T) {
	r := `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"vigil\" id: \"demo.web-rep-1\"" -m multiport --dports 18080,9000:9010 -j CNI-DN-b58dd362ba38107336eeb`
	m := hostportRule.FindStringSubmatch(r)
	if m == nil || m[1] != "tcp" || m[2] != "vigil" || m[3] != "demo.web-rep-1" || m[4] != "18080,9000:9010" {
		t.Fatalf("matched %q", m)
	}
	for port, want := range map[int]bool{18080: true, 9000: true, 9005: true, 9010: true, 9011: false, 80: false} {
		if got := inPortList(m[4], port); got != want {
			t.Errorf("port %d in %s: %v, want %v", port, m[4], got, want)
		}
	}
}
