package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-run/vigil/runtime"
)

const serving = `version: v1
deployment: shop
services:
  web:
    image: { name: busybox }
    scale: { replicas: 2 }
    ports:
      - { container: 8080, host: 18080, protocol: tcp, host_ip: 127.0.0.1 }
      - { container: 53, host: 18053, protocol: udp }
    volumes:
      - { source: /srv/web, target: /data, readonly: true }
      - { name: cache, target: /cache }
    init: true
    stop_signal: SIGQUIT
  db:
    image: { name: busybox }
    network: host
  batch:
    image: { name: busybox }
    network: none
    ports: null
`

func TestParseServing(t *testing.T) {
	d, err := Parse([]byte(serving))
	if err != nil {
		t.Fatal(err)
	}
	in := d.Inputs("n")
	web2 := in[1].Spec.Serving
	web2.Ports = runtime.ReplicaPorts(web2.Ports, in[1].ID.Replica)
	want := runtime.Serving{
		Network: runtime.NetworkBridge,
		Ports: []runtime.PortMapping{
			{Container: 8080, Host: 18081, Protocol: "tcp", HostIP: "127.0.0.1"},
			{Container: 53, Host: 18054, Protocol: "udp"},
		},
		Volumes: []runtime.Volume{{Source: "/srv/web", Target: "/data", ReadOnly: true}, {Name: "cache", Target: "/cache"}},
		Init:    true, StopSignal: "SIGQUIT",
	}
	if !reflect.DeepEqual(web2, want) {
		t.Errorf("web-rep-2:\n got %+v\nwant %+v", web2, want)
	}
	if got := in[0].Spec.Ports[0].Host; got != 18080 {
		t.Errorf("web-rep-1 publishes on %d, want 18080 (the file's host port)", got)
	}
	if in[2].Spec.Network != runtime.NetworkHost || in[3].Spec.Network != runtime.NetworkNone {
		t.Errorf("networks: db %q, batch %q", in[2].Spec.Network, in[3].Spec.Network)
	}
	in[0].Spec.Volumes[0].Target = "/changed"
	if in[1].Spec.Volumes[0].Target != "/data" {
		t.Error("replicas share their volumes slice")
	}
}

func TestSameHostPortOnTwoNodes(t *testing.T) {
	_, err := Parse([]byte("version: v1\ndeployment: shop\nservices:\n  api:\n    image: { name: busybox }\n    node: a\n    ports: [{ container: 80, host: 18080 }]\n  web:\n    image: { name: busybox }\n    node: b\n    ports: [{ container: 80, host: 18080 }]\n"))
	if err != nil {
		t.Fatalf("one host port on two nodes: %v", err)
	}
}

func TestParseServingBad(t *testing.T) {
	head := "version: v1\ndeployment: shop\nservices:\n  api:\n    image: { name: busybox }\n"
	svc := func(body string) string { return head + body }
	tests := []struct {
		name, yaml, path, want string
	}{
		{"network", svc("    network: overlay\n"), "services.api.network", `"overlay" is not one of bridge, host, none`},
		{"port out of range", svc("    ports: [{ container: 8080, host: 70000 }]\n"), "services.api.ports[0].host", "70000 is out of range"},
		{"container port zero", svc("    ports: [{ container: 0, host: 80 }]\n"), "services.api.ports[0].container", "0 is out of range"},
		{"replicas past the range", svc("    scale: { replicas: 3 }\n    ports: [{ container: 80, host: 65534 }]\n"), "services.api.ports[0].host", "publishes up to 65536"},
		{"host missing", svc("    ports: [{ container: 80 }]\n"), "services.api.ports[0].host", "missing"},
		{"port as text", svc("    ports: [{ container: http, host: 80 }]\n"), "services.api.ports[0].container", "whole number"},
		{"protocol", svc("    ports: [{ container: 80, host: 80, protocol: sctp }]\n"), "services.api.ports[0].protocol", "not one of tcp, udp"},
		{"host_ip", svc("    ports: [{ container: 80, host: 80, host_ip: localhost }]\n"), "services.api.ports[0].host_ip", "not an IPv4 address"},
		{"host_ip v6", svc("    ports: [{ container: 80, host: 80, host_ip: '::1' }]\n"), "services.api.ports[0].host_ip", "not an IPv4 address"},
		{"ports not a list", svc("    ports: { container: 80, host: 80 }\n"), "services.api.ports", "want a list"},
		{"ports with network host", svc("    network: host\n    ports: [{ container: 80, host: 80 }]\n"), "services.api.ports", "need network: bridge"},
		{"ports with network none", svc("    network: none\n    ports: [{ container: 80, host: 80 }]\n"), "services.api.ports", "need network: bridge"},
		{"same host port twice in a service", svc("    ports: [{ container: 80, host: 18080 }, { container: 81, host: 18080 }]\n"), "services.api.ports[1].host", "clash with services.api.ports[0]"},
		{"two services on one host port", svc("    ports: [{ container: 80, host: 18080 }]\n  web:\n    image: { name: busybox }\n    ports: [{ container: 8080, host: 18080, host_ip: 127.0.0.1 }]\n"), "services.web.ports[0].host", "clash with services.api.ports[0]"},
		{"replica ranges overlap", svc("    scale: { replicas: 2 }\n    ports: [{ container: 80, host: 18080 }]\n  web:\n    image: { name: busybox }\n    ports: [{ container: 80, host: 18081 }]\n"), "services.web.ports[0].host", "18080-18081 (one per replica)"},
		{"one node named twice", svc("    node: a\n    ports: [{ container: 80, host: 18080 }]\n  web:\n    image: { name: busybox }\n    node: a\n    ports: [{ container: 80, host: 18080 }]\n"), "services.web.ports[0].host", "clash"},
		{"relative bind source", svc("    volumes: [{ source: srv/web, target: /data }]\n"), "services.api.volumes[0].source", "not an absolute path"},
		{"dotdot bind source", svc("    volumes: [{ source: /srv/../etc, target: /data }]\n"), "services.api.volumes[0].source", `contains ".."`},
		{"relative target", svc("    volumes: [{ name: cache, target: cache }]\n"), "services.api.volumes[0].target", "not an absolute path"},
		{"unclean target", svc("    volumes: [{ name: cache, target: /cache/ }]\n"), "services.api.volumes[0].target", "not a clean path"},
		{"target missing", svc("    volumes: [{ name: cache }]\n"), "services.api.volumes[0].target", "missing"},
		{"source and name", svc("    volumes: [{ source: /srv, name: x, target: /data }]\n"), "services.api.volumes[0].name", "not both"},
		{"neither", svc("    volumes: [{ target: /data }]\n"), "services.api.volumes[0]", "give source"},
		{"bad volume name", svc("    volumes: [{ name: ../x, target: /data }]\n"), "services.api.volumes[0].name", "not a valid name"},
		{"duplicate target", svc("    volumes: [{ name: a, target: /data }, { name: b, target: /data }]\n"), "services.api.volumes[1].target", "already the target"},
		{"readonly text", svc("    volumes: [{ name: a, target: /data, readonly: yes please }]\n"), "services.api.volumes[0].readonly", "want true or false"},
		{"unknown volume field", svc("    volumes: [{ name: a, target: /data, mode: rw }]\n"), "services.api.volumes[0].mode", "unknown field"},
		{"init text", svc("    init: tini\n"), "services.api.init", "want true or false"},
		{"unknown signal", svc("    stop_signal: SIGNOPE\n"), "services.api.stop_signal", "not a signal"},
		{"signal zero", svc("    stop_signal: 0\n"), "services.api.stop_signal", "not a signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Path != tt.path || !strings.Contains(fe.Msg, tt.want) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("got path %q msg %q\nwant path %q msg containing %q", fe.Path, fe.Msg, tt.path, tt.want)
			}
		})
	}
}
