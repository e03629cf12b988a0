package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

const shop = `version: v1
deployment: shop
services:
  api:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec httpd -f -p 8080"], workdir: / }
    env: { MODE: prod, PORT: 8080, TOKEN: "$E:API_TOKEN" }
    scale: { mode: fixed, replicas: 2 }
    errors:
      on_panic:
        action: restart
        max_restarts: 5
        restart_window: 300s
        backoff: 30s
        poll_interval: 5s
  worker:
    image:
      name: busybox
    errors:
      on_panic:
        action: isolate
        isolate_webhook: https://hooks.example.com/vigil
    stop_grace: 3s
    node: node-b
`

func TestParseShop(t *testing.T) {
	d, err := Parse([]byte(shop))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "shop" || len(d.Services) != 2 || d.ReplicaCount() != 3 {
		t.Fatalf("got %+v", d)
	}
	in := d.Inputs("node-a")
	if len(in) != 3 {
		t.Fatalf("got %d inputs, want 3", len(in))
	}
	want := workflows.SupervisionInput{
		ID: runtime.ContainerID{Deployment: "shop", Service: "api", Replica: 2},
		Spec: runtime.ContainerSpec{
			Image:      "docker.io/library/busybox:local",
			PullPolicy: runtime.PullNever,
			Entrypoint: []string{"/bin/sh", "-c"},
			Args:       []string{"exec httpd -f -p 8080"},
			WorkDir:    "/",
			Env:        map[string]string{"MODE": "prod", "PORT": "8080", "TOKEN": "$E:API_TOKEN"},
		},
		Policy:    policy.Policy{Action: policy.ActionRestart, MaxRestarts: 5, RestartWindow: 300 * time.Second, Backoff: 30 * time.Second, PollInterval: 5 * time.Second},
		Node:      "node-a",
		StopGrace: DefaultStopGrace,
	}
	if !reflect.DeepEqual(in[1], want) {
		t.Errorf("api-rep-2:\n got %+v\nwant %+v", in[1], want)
	}
	if got := workflows.WorkflowID(in[1].ID); got != "vigil/shop/api-rep-2" {
		t.Errorf("workflow ID %q", got)
	}
	w := in[2]
	if w.ID.Service != "worker" || !reflect.DeepEqual(w.Policy, (policy.Policy{Action: policy.ActionIsolate}).WithDefaults()) ||
		w.IsolateWebhook != "https://hooks.example.com/vigil" || w.StopGrace != 3*time.Second ||
		w.Spec.PullPolicy != runtime.PullIfNotPresent || w.ID.Replica != 1 || w.Node != "node-b" {
		t.Errorf("worker-rep-1: %+v", w)
	}
	// Inputs must not share memory: a caller editing one must not change another.
	in[0].Spec.Env["MODE"] = "changed"
	if in[1].Spec.Env["MODE"] != "prod" {
		t.Error("inputs share their env map")
	}
}

func TestParseMinimal(t *testing.T) {
	d, err := Parse([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := d.Services[0]
	if s.Replicas != 1 || !reflect.DeepEqual(s.Policy, policy.Default()) || s.RType != RTypeService || s.StopGrace != DefaultStopGrace {
		t.Errorf("defaults: %+v", s)
	}
}

func TestParseBad(t *testing.T) {
	long := strings.Repeat("a", 41)
	head := "version: v1\ndeployment: shop\nservices:\n"
	svc := func(body string) string {
		return head + "  api:\n    image: { name: busybox }\n" + body
	}
	tests := []struct {
		name, yaml string
		// path is the field the error must name; want is a part of the message.
		path, want string
		line       int
	}{
		{"empty", "", "document", "empty", 0},
		{"comment only", "# nothing\n", "document", "empty", 0},
		{"syntax", "version: v1\n  deployment: [\n", "document", "invalid YAML", 2},
		{"tab indent", "version: v1\n\tdeployment: x\n", "document", "invalid YAML", 0},
		{"two documents", "version: v1\n---\nversion: v1\n", "document", "more than one YAML document", 2},
		{"not a mapping", "- a\n- b\n", "document", "want a mapping", 1},
		{"unknown top", "version: v1\ndeploymnet: shop\n", "deploymnet", "unknown field; valid fields are version, deployment, services", 2},
		{"missing version", "deployment: shop\nservices: {}\n", "version", "missing", 1},
		{"bad version", "version: v2\n", "version", `"v2" is not supported; use v1`, 1},
		{"missing deployment", "version: v1\nservices: {}\n", "deployment", "missing", 1},
		{"deployment slash", "version: v1\ndeployment: a/b\n", "deployment", "not a valid name", 2},
		{"deployment dotdot", "version: v1\ndeployment: ..\n", "deployment", "not a valid name", 2},
		{"deployment dot", "version: v1\ndeployment: a.b\n", "deployment", "not a valid name", 2},
		{"deployment newline", "version: v1\ndeployment: \"a\\nb\"\n", "deployment", `"a\nb" is not a valid name`, 2},
		{"deployment control", "version: v1\ndeployment: \"a\\x01b\"\n", "deployment", "not a valid name", 2},
		{"deployment unicode", "version: v1\ndeployment: café\n", "deployment", "not a valid name", 2},
		{"deployment too long", "version: v1\ndeployment: " + long + "\n", "deployment", "at most 40 characters", 2},
		{"deployment trailing dash", "version: v1\ndeployment: shop-\n", "deployment", "not a valid name", 2},
		{"deployment list", "version: v1\ndeployment: [a]\n", "deployment", "want a single value, got a list", 2},
		{"missing services", "version: v1\ndeployment: shop\n", "services", "missing", 1},
		{"empty services", head, "services", "missing", 1},
		{"services list", head + "  - api\n", "services", "want a mapping", 4},
		{"service slash", head + "  a/b:\n    image: { name: busybox }\n", `services."a/b"`, "not a valid name", 4},
		{"service dotdot", head + "  ..:\n    image: { name: busybox }\n", `services.".."`, "not a valid name", 4},
		{"service space", head + "  \"a b\":\n    image: { name: busybox }\n", `services."a b"`, "not a valid name", 4},
		{"service newline", head + "  \"a\\nb\":\n    image: { name: busybox }\n", `services."a\nb"`, "not a valid name", 4},
		{"duplicate service", head + "  api:\n    image: { name: busybox }\n  api:\n    image: { name: busybox }\n", "services.api", "duplicate key", 6},
		{"ID too long", "version: v1\ndeployment: " + strings.Repeat("d", 40) + "\nservices:\n  " + strings.Repeat("s", 30) + ":\n    image: { name: busybox }\n    scale: { replicas: 100 }\n", "services." + strings.Repeat("s", 30), "longer than containerd's 76", 4},
		{"service scalar", head + "  api: busybox\n", "services.api", "want a mapping", 4},
		{"unknown service field", svc("    ports: [80]\n"), "services.api.ports", "unknown field; valid fields are rtype, image,", 6},
		{"rtype job", svc("    rtype: job\n"), "services.api.rtype", `"job" is not supported; use service`, 6},
		{"missing image", head + "  api:\n    rtype: service\n", "services.api.image", "missing", 5},
		{"image scalar", head + "  api:\n    image: busybox\n", "services.api.image", `want a mapping; write image: { name: "busybox" }`, 5},
		{"image no name", head + "  api:\n    image: { pull_policy: never }\n", "services.api.image.name", "missing", 5},
		{"image bad name", head + "  api:\n    image: { name: \"Bad Image!\" }\n", "services.api.image.name", "not a valid image reference", 5},
		{"image typo", head + "  api:\n    image: { nmae: busybox }\n", "services.api.image.nmae", "unknown field; valid fields are name, pull_policy", 5},
		{"pull policy", head + "  api:\n    image: { name: busybox, pull_policy: IfNotPresent }\n", "services.api.image.pull_policy", "not one of always, if_not_present, never", 5},
		{"entrypoint string", svc("    command: { entrypoint: /bin/sh }\n"), "services.api.command.entrypoint", "want a list of strings", 6},
		{"args nested", svc("    command: { args: [[a]] }\n"), "services.api.command.args[0]", "want a single value, got a list", 6},
		{"args NUL", svc("    command: { args: [\"a\\0b\"] }\n"), "services.api.command.args[0]", "NUL", 6},
		{"workdir relative", svc("    command: { workdir: tmp }\n"), "services.api.command.workdir", "not an absolute path", 6},
		{"command typo", svc("    command: { entrypiont: [a] }\n"), "services.api.command.entrypiont", "unknown field; valid fields are entrypoint, args, workdir", 6},
		{"env list", svc("    env: [A=b]\n"), "services.api.env", "want a mapping", 6},
		{"env bad name", svc("    env: { \"A-B\": x }\n"), "services.api.env.A-B", "not a valid variable name", 6},
		{"env digit name", svc("    env: { 1A: x }\n"), "services.api.env.1A", "not a valid variable name", 6},
		{"env null", svc("    env: { A: }\n"), "services.api.env.A", `no value; write ""`, 6},
		{"env nested", svc("    env: { A: { b: c } }\n"), "services.api.env.A", "want a single value", 6},
		{"env bad ref", svc("    env: { A: \"$E:not valid\" }\n"), "services.api.env.A", "not a valid reference", 6},
		{"env empty ref", svc("    env: { A: \"$E:\" }\n"), "services.api.env.A", "not a valid reference", 6},
		{"env duplicate", svc("    env:\n      A: x\n      A: y\n"), "services.api.env.A", "duplicate key", 8},
		{"scale mode", svc("    scale: { mode: adaptive }\n"), "services.api.scale.mode", `"adaptive" is not supported; use fixed`, 6},
		{"replicas zero", svc("    scale: { replicas: 0 }\n"), "services.api.scale.replicas", "0 is out of range; use 1 to 1000", 6},
		{"replicas negative", svc("    scale: { replicas: -3 }\n"), "services.api.scale.replicas", "out of range", 6},
		{"replicas huge", svc("    scale: { replicas: 1000000 }\n"), "services.api.scale.replicas", "out of range", 6},
		{"replicas overflow", svc("    scale: { replicas: 99999999999999999999999 }\n"), "services.api.scale.replicas", "whole number", 6},
		{"replicas string", svc("    scale: { replicas: two }\n"), "services.api.scale.replicas", `want a whole number, got "two"`, 6},
		{"replicas float", svc("    scale: { replicas: 1.5 }\n"), "services.api.scale.replicas", "want a whole number", 6},
		{"errors typo", svc("    errors: { on_panik: {} }\n"), "services.api.errors.on_panik", "unknown field; valid fields are on_panic", 6},
		{"on_panic typo", svc("    errors:\n      on_panic:\n        actoin: restart\n"), "services.api.errors.on_panic.actoin", "unknown field; valid fields are action, max_restarts, restart_window, backoff, poll_interval, isolate_webhook", 8},
		{"action", svc("    errors: { on_panic: { action: reboot } }\n"), "services.api.errors.on_panic.action", `"reboot" is not one of restart, shutdown, isolate`, 6},
		{"max_restarts zero", svc("    errors: { on_panic: { max_restarts: 0 } }\n"), "services.api.errors.on_panic.max_restarts", "use 1 or more", 6},
		{"max_restarts negative", svc("    errors: { on_panic: { max_restarts: -1 } }\n"), "services.api.errors.on_panic.max_restarts", "use 1 or more", 6},
		{"backoff no unit", svc("    errors: { on_panic: { backoff: 30 } }\n"), "services.api.errors.on_panic.backoff", `"30" has no unit; write a Go duration such as 30s`, 6},
		{"backoff words", svc("    errors: { on_panic: { backoff: 30 seconds } }\n"), "services.api.errors.on_panic.backoff", "not a duration; use Go syntax", 6},
		{"backoff negative", svc("    errors: { on_panic: { backoff: -5s } }\n"), "services.api.errors.on_panic.backoff", "must be positive", 6},
		{"window zero", svc("    errors: { on_panic: { restart_window: 0s } }\n"), "services.api.errors.on_panic.restart_window", "must be positive", 6},
		{"poll too short", svc("    errors: { on_panic: { poll_interval: 1ms } }\n"), "services.api.errors.on_panic.poll_interval", "too short", 6},
		{"webhook not url", svc("    errors: { on_panic: { action: isolate, isolate_webhook: \"file:///etc/passwd\" } }\n"), "services.api.errors.on_panic.isolate_webhook", "not an http(s) URL", 6},
		{"webhook with restart", svc("    errors: { on_panic: { isolate_webhook: \"https://x.example\" } }\n"), "services.api.errors.on_panic.isolate_webhook", "only used when action is isolate", 6},
		{"stop_grace", svc("    stop_grace: soon\n"), "services.api.stop_grace", "not a duration", 6},
		{"node spaces", svc("    node: node b\n"), "services.api.node", `"node b" is not a valid node name`, 6},
		{"node slash", svc("    node: a/b\n"), "services.api.node", "use the --node name of a vigil-worker", 6},
		{"node list", svc("    node: [a]\n"), "services.api.node", "", 6},
		{"alias", "version: v1\ndeployment: &d shop\nservices:\n  api:\n    image: { name: *d }\n", "services.api.image.name", "aliases", 5},
		{"merge key", head + "  api:\n    <<: {}\n    image: { name: busybox }\n", `services.api."<<"`, "unknown field", 5},
		{"non-scalar key", head + "  api:\n    ? [a]\n    : b\n", "services.api", "keys must be plain names", 5},
		{"huge", "# " + strings.Repeat("x", MaxFileSize), "file", "larger than", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %q is not a *FieldError", err, err)
			}
			msg := err.Error()
			if fe.Path != tt.path || !strings.Contains(fe.Msg, tt.want) {
				t.Errorf("got path %q msg %q\nwant path %q msg containing %q", fe.Path, fe.Msg, tt.path, tt.want)
			}
			if tt.line != 0 && fe.Line != tt.line {
				t.Errorf("line %d, want %d (%s)", fe.Line, tt.line, msg)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte("version: v1\ndeployment: shop\nservices:\n  api:\n    image: { name: busybox, tag: x }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	want := path + ":5: services.api.image.tag: unknown field; valid fields are name, pull_policy"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	_, err = ParseFile(filepath.Join(dir, "missing.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "missing.yaml")+": file: cannot read: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
}

func TestExampleParses(t *testing.T) {
	d, err := ParseFile("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Services) < 2 {
		t.Errorf("demo has %d services, want a healthy and a crashing one", len(d.Services))
	}
}
