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
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
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
	want := Input{
		ID: replica.ID{Deployment: "shop", Service: "api", Replica: 2},
		Spec: runtime.ContainerSpec{
			Image:      "docker.io/library/busybox:local",
			PullPolicy: runtime.PullNever,
			Entrypoint: []string{"/bin/sh", "-c"},
			Args:       []string{"exec httpd -f -p 8080"},
			WorkDir:    "/",
			Env:        map[string]string{"MODE": "prod", "PORT": "8080", "TOKEN": "$E:API_TOKEN"},
			Serving:    runtime.Serving{Network: runtime.NetworkBridge},
		},
		Policy:    policy.Policy{Action: policy.ActionRestart, MaxRestarts: 5, RestartWindow: 300 * time.Second, Backoff: 30 * time.Second, PollInterval: 5 * time.Second},
		Node:      "node-a",
		StopGrace: runtime.DefaultStopGrace,
	}
	if !reflect.DeepEqual(in[1], want) {
		t.Errorf("api-rep-2:\n got %+v\nwant %+v", in[1], want)
	}
	if got := in[1].ID.WorkflowID(); got != "vigil/shop/api-rep-2" {
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
	if s.Replicas != 1 || !reflect.DeepEqual(s.Policy, policy.Default()) || s.RType != RTypeService || s.StopGrace != runtime.DefaultStopGrace {
		t.Errorf("defaults: %+v", s)
	}
}

func TestParsePlacement(t *testing.T) {
	d, err := Parse([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n    placement: { nodes: [node-a, node-b] }\n    reschedule: { lost_after: 20s }\n" +
		"  p:\n    image: { name: busybox }\n    node: node-c\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, p := d.Services[0], d.Services[1]
	if !reflect.DeepEqual(s.Placement, []string{"node-a", "node-b"}) || s.LostAfter != 20*time.Second || s.Node != "" {
		t.Errorf("placed service: %+v", s)
	}
	if !reflect.DeepEqual(s.Nodes(), s.Placement) || !reflect.DeepEqual(p.Nodes(), []string{"node-c"}) || p.LostAfter != 0 {
		t.Errorf("nodes: %v, %v (lost_after %s)", s.Nodes(), p.Nodes(), p.LostAfter)
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
		{"tab indent", "version: v1\n\tdeployment: x\n", "document", "invalid YAML", 2},
		// yaml.v3 names the line where the enclosing mapping began; the
		// error must point at the line that has the mistake.
		{"syntax bad indent", svc("   bad: 1\n"), "document", "invalid YAML (did not find expected key)", 6},
		{"syntax two colons", svc("    x: y: z\n"), "document", "mapping values are not allowed", 6},
		{"syntax open quote", svc("    env: \"abc\n"), "document", "invalid YAML", 6},
		{"syntax open list", svc("    command: [a, b\n"), "document", "invalid YAML", 6},
		{"syntax list in mapping", svc("    - a\n"), "document", "invalid YAML", 6},
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
		{"unknown service field", svc("    publish: [80]\n"), "services.api.publish", "unknown field; valid fields are rtype, image,", 6},
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
		{"min_ready huge", svc("    update: { min_ready: 2h }\n"), "services.api.update.min_ready", `"2h" is too long; use at most 1h0m0s`, 6},
		{"node spaces", svc("    node: node b\n"), "services.api.node", `"node b" is not a valid node name`, 6},
		{"node slash", svc("    node: a/b\n"), "services.api.node", "use the --node name of a vigil-worker", 6},
		{"node list", svc("    node: [a]\n"), "services.api.node", "want a single value, got a list", 6},
		{"alias", "version: v1\ndeployment: &d shop\nservices:\n  api:\n    image: { name: *d }\n", "services.api.image.name", "aliases", 5},
		{"merge key", head + "  api:\n    <<: {}\n    image: { name: busybox }\n", `services.api."<<"`, "unknown field", 5},
		{"non-scalar key", head + "  api:\n    ? [a]\n    : b\n", "services.api", "keys must be plain names", 5},
		{"huge", "# " + strings.Repeat("x", MaxFileSize), "file", "larger than", 0},
		{"backoff list", svc("    errors: { on_panic: { backoff: [1s] } }\n"), "services.api.errors.on_panic" + ".backoff", "want a single value", 6},
		{"backoff map typo", svc("    errors: { on_panic: { backoff: { inital: 1s } } }\n"), "services.api.errors.on_panic" + ".backoff.inital", "unknown field; valid fields are initial, max, multiplier, jitter, reset_after", 6},
		{"backoff initial negative", svc("    errors: { on_panic: { backoff: { initial: -1s } } }\n"), "services.api.errors.on_panic" + ".backoff.initial", "must be positive", 6},
		{"backoff max below initial", svc("    errors: { on_panic: { backoff: { initial: 10s, max: 5s } } }\n"), "services.api.errors.on_panic" + ".backoff.max", "less than initial", 6},
		{"backoff multiplier below 1", svc("    errors: { on_panic: { backoff: { multiplier: 0.5 } } }\n"), "services.api.errors.on_panic" + ".backoff.multiplier", "out of range; use 1", 6},
		{"backoff multiplier text", svc("    errors: { on_panic: { backoff: { multiplier: two } } }\n"), "services.api.errors.on_panic" + ".backoff.multiplier", "want a number", 6},
		{"backoff jitter above 1", svc("    errors: { on_panic: { backoff: { jitter: 1.5 } } }\n"), "services.api.errors.on_panic" + ".backoff.jitter", "out of range; use 0 to 1", 6},
		{"backoff jitter negative", svc("    errors: { on_panic: { backoff: { jitter: -0.1 } } }\n"), "services.api.errors.on_panic" + ".backoff.jitter", "out of range", 6},
		{"backoff reset negative", svc("    errors: { on_panic: { backoff: { reset_after: -10m } } }\n"), "services.api.errors.on_panic" + ".backoff.reset_after", "must be positive", 6},
		{"rules not a list", svc("    errors: { on_panic: { rules: { exit_codes: [1] } } }\n"), "services.api.errors.on_panic" + ".rules", "want a list of rules", 6},
		{"rule matches nothing", svc("    errors:\n      on_panic:\n        rules:\n          - { action: shutdown }\n"), "services.api.errors.on_panic" + ".rules[0]", "matches nothing", 9},
		{"rule no action", svc("    errors:\n      on_panic:\n        rules:\n          - { exit_codes: [1] }\n"), "services.api.errors.on_panic" + ".rules[0].action", "missing", 9},
		{"rule bad action", svc("    errors:\n      on_panic:\n        rules:\n          - { exit_codes: [1], action: restart }\n          - { exit_codes: [2], action: reboot }\n"), "services.api.errors.on_panic" + ".rules[1].action", `"reboot" is not one of restart, shutdown, isolate, complete`, 10},
		{"rule exit code range", svc("    errors: { on_panic: { rules: [ { exit_codes: [256], action: shutdown } ] } }\n"), "services.api.errors.on_panic" + ".rules[0].exit_codes[0]", "out of range; use 0 to 255", 6},
		{"rule exit code text", svc("    errors: { on_panic: { rules: [ { exit_codes: [one], action: shutdown } ] } }\n"), "services.api.errors.on_panic" + ".rules[0].exit_codes[0]", "want a whole number", 6},
		{"rule unknown signal", svc("    errors: { on_panic: { rules: [ { signals: [SIGSEGV, SIGBOGUS], action: isolate } ] } }\n"), "services.api.errors.on_panic" + ".rules[0].signals[1]", `"SIGBOGUS" is not a signal name`, 6},
		{"rule signal number", svc("    errors: { on_panic: { rules: [ { signals: [11], action: isolate } ] } }\n"), "services.api.errors.on_panic" + ".rules[0].signals[0]", "not a signal name", 6},
		{"rule typo", svc("    errors: { on_panic: { rules: [ { exit_code: [1], action: isolate } ] } }\n"), "services.api.errors.on_panic" + ".rules[0].exit_code", "unknown field; valid fields are exit_codes, signals, action", 6},
		{"health typo", svc("    health: { livenes: {} }\n"), "services.api.health.livenes", "unknown field; valid fields are liveness, startup", 6},
		{"probe with none", svc("    health: { liveness: { period: 1s } }\n"), "services.api.health.liveness", "has 0 of exec, http and tcp; give exactly one", 6},
		{"probe with two", svc("    health: { startup: { exec: [true], tcp: { port: 80 } } }\n"), "services.api.health.startup", "has 2 of exec, http and tcp", 6},
		{"probe exec empty", svc("    health: { liveness: { exec: [] } }\n"), "services.api.health.liveness.exec", "empty", 6},
		{"probe http no port", svc("    health: { liveness: { http: { path: /healthz } } }\n"), "services.api.health.liveness.http.port", "missing", 6},
		{"probe http path", svc("    health: { liveness: { http: { port: 80, path: healthz } } }\n"), "services.api.health.liveness.http.path", "does not start with /", 6},
		{"probe tcp port", svc("    health: { liveness: { tcp: { port: 70000 } } }\n"), "services.api.health.liveness.tcp.port", "out of range; use 1 to 65535", 6},
		{"probe period negative", svc("    health: { liveness: { exec: [true], period: -1s } }\n"), "services.api.health.liveness.period", "must be positive", 6},
		{"probe timeout no unit", svc("    health: { liveness: { exec: [true], timeout: 2 } }\n"), "services.api.health.liveness.timeout", "has no unit", 6},
		{"probe threshold zero", svc("    health: { liveness: { exec: [true], failure_threshold: 0 } }\n"), "services.api.health.liveness.failure_threshold", "out of range; use 1 to 1000", 6},
		{"probe initial delay negative", svc("    health: { liveness: { exec: [true], initial_delay: -5s } }\n"), "services.api.health.liveness.initial_delay", "must be positive", 6},
		{"resources typo", svc("    resources: { mem: 64Mi }\n"), "services.api.resources.mem", "unknown field; valid fields are memory, cpus, pids", 6},
		{"memory no unit too small", svc("    resources: { memory: 64 }\n"), "services.api.resources.memory", "less than 4Mi", 6},
		{"memory bad unit", svc("    resources: { memory: 64MB }\n"), "services.api.resources.memory", "not a memory size", 6},
		{"memory negative", svc("    resources: { memory: -64Mi }\n"), "services.api.resources.memory", "not a memory size", 6},
		{"cpus zero", svc("    resources: { cpus: 0 }\n"), "services.api.resources.cpus", "out of range", 6},
		{"cpus text", svc("    resources: { cpus: half }\n"), "services.api.resources.cpus", "want a number", 6},
		{"pids zero", svc("    resources: { pids: 0 }\n"), "services.api.resources.pids", "out of range", 6},
		{"node and placement", svc("    node: a\n    placement: { nodes: [a, b] }\n"), "services.api.placement", "services.api.node and services.api.placement are both given", 7},
		{"placement empty", svc("    placement: { nodes: [] }\n"), "services.api.placement.nodes", "empty; list at least one node", 6},
		{"placement no nodes", svc("    placement: {}\n"), "services.api.placement.nodes", "missing", 6},
		{"placement twice", svc("    placement: { nodes: [a, b, a] }\n"), "services.api.placement.nodes[2]", `"a" is listed twice`, 6},
		{"placement bad name", svc("    placement: { nodes: [a, \"b c\"] }\n"), "services.api.placement.nodes[1]", "not a valid node name", 6},
		{"placement typo", svc("    placement: { node: [a] }\n"), "services.api.placement.node", "unknown field; valid fields are nodes", 6},
		{"lost_after short", svc("    reschedule: { lost_after: 2s }\n"), "services.api.reschedule.lost_after", "out of range; use 15s to 1h", 6},
		{"lost_after no unit", svc("    reschedule: { lost_after: 30 }\n"), "services.api.reschedule.lost_after", "no unit", 6},
		{"security typo", svc("    security: { readonly: true }\n"), "services.api.security.readonly", "unknown field; valid fields are user, read_only", 6},
		{"security unknown capability", svc("    security: { cap_add: [NET_BIND_SERVICE, NET_MAGIC] }\n"), "services.api.security.cap_add[1]", `"NET_MAGIC" is not a Linux capability`, 6},
		{"security cap_drop not a list", svc("    security: { cap_drop: ALL }\n"), "services.api.security.cap_drop", "want a list", 6},
		{"security relative seccomp", svc("    security: { seccomp: profiles/seccomp.json }\n"), "services.api.security.seccomp", "not default, unconfined or an absolute path", 6},
		{"security unclean seccomp", svc("    security: { seccomp: /etc//seccomp.json }\n"), "services.api.security.seccomp", "not a clean path", 6},
		{"security malformed user", svc("    security: { user: \"1000:staff\" }\n"), "services.api.security.user", "not uid[:gid]", 6},
		{"security user negative", svc("    security: { user: \"-1\" }\n"), "services.api.security.user", "not uid[:gid]", 6},
		{"security user outside userns", svc("    security: { user: \"1000:70000\", userns: true }\n"), "services.api.security.user", "outside the user namespace", 6},
		{"security relative tmpfs", svc("    security: { tmpfs: [tmp] }\n"), "services.api.security.tmpfs[0]", "not an absolute path", 6},
		{"security tmpfs twice", svc("    security: { tmpfs: [/tmp, /run, /tmp] }\n"), "services.api.security.tmpfs[2]", "listed twice", 6},
		{"security apparmor path", svc("    security: { apparmor: /etc/apparmor.d/x }\n"), "services.api.security.apparmor", "not a profile name", 6},
		{"security userns text", svc("    security: { userns: maybe }\n"), "services.api.security.userns", "want true or false", 6},
		{"placed ports clash with a pinned service", head + "  api:\n    image: { name: busybox }\n    ports: [{ container: 80, host: 8080 }]\n    placement: { nodes: [a, b] }\n" +
			"  web:\n    image: { name: busybox }\n    ports: [{ container: 80, host: 8080 }]\n    node: b\n", "services.web.ports[0].host", "clash with services.api.ports[0]", 0},
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

// contract is the deployment file contract, verbatim apart from the
// commented-out alternatives.
const contract = `version: v1
deployment: shop
services:
  api:
    image: { name: busybox }
    errors:
      on_panic:
        action: restart
        max_restarts: 5
        restart_window: 300s
        backoff: { initial: 10s, max: 5m, multiplier: 2, jitter: 0.1, reset_after: 10m }
        rules:
          - { exit_codes: [42, 43], action: shutdown }
          - { exit_codes: [0], action: restart }
          - { signals: [SIGSEGV], action: isolate }
    health:
      liveness:
        exec: ["/bin/sh", "-c", "test -f /tmp/ok"]
        period: 10s
        timeout: 2s
        failure_threshold: 3
        initial_delay: 0s
      startup: { http: { port: 8080, path: /healthz }, period: 1s, failure_threshold: 30 }
    resources: { memory: 64Mi, cpus: 0.5, pids: 256 }
  web:
    image: { name: busybox }
    errors: { on_panic: { backoff: 30s } }
    health: { liveness: { tcp: { port: 8080 } } }
`

func TestParseContract(t *testing.T) {
	d, err := Parse([]byte(contract))
	if err != nil {
		t.Fatal(err)
	}
	api, web := d.Services[0], d.Services[1]
	wantPolicy := policy.Policy{
		Action: policy.ActionRestart, MaxRestarts: 5, RestartWindow: 300 * time.Second, Backoff: policy.DefaultBackoff,
		PollInterval: policy.DefaultPollInterval,
		Exponential:  &policy.Exponential{Initial: 10 * time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.1, ResetAfter: 10 * time.Minute},
		Rules: []policy.Rule{
			{ExitCodes: []int{42, 43}, Action: policy.ActionShutdown},
			{ExitCodes: []int{0}, Action: policy.ActionRestart},
			{Signals: []string{"SIGSEGV"}, Action: policy.ActionIsolate},
		},
	}
	if !reflect.DeepEqual(api.Policy, wantPolicy) {
		t.Errorf("policy:\n got %+v\nwant %+v", api.Policy, wantPolicy)
	}
	wantHealth := &runtime.Health{
		Liveness:  &runtime.Probe{Exec: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Period: 10 * time.Second, Timeout: 2 * time.Second, FailureThreshold: 3},
		Startup:   &runtime.Probe{HTTP: &runtime.HTTPProbe{Port: 8080, Path: "/healthz"}, Period: time.Second, Timeout: time.Second, FailureThreshold: 30},
		StopGrace: runtime.DefaultStopGrace,
	}
	if !reflect.DeepEqual(api.Spec.Health, wantHealth) {
		t.Errorf("health:\n got %+v\nwant %+v", api.Spec.Health, wantHealth)
	}
	if want := (&runtime.Resources{MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 256}); !reflect.DeepEqual(api.Spec.Resources, want) {
		t.Errorf("resources %+v, want %+v", api.Spec.Resources, want)
	}
	if web.Policy.Exponential != nil || web.Policy.Backoff != 30*time.Second || web.Policy.Rules != nil || web.Spec.Resources != nil {
		t.Errorf("web: a scalar backoff must keep the fixed one: %+v", web.Policy)
	}
	if p := web.Spec.Health.Liveness; p.TCP == nil || p.TCP.Port != 8080 || p.Period != runtime.DefaultProbePeriod || p.FailureThreshold != runtime.DefaultProbeFailureThreshold {
		t.Errorf("web liveness defaults: %+v", p)
	}
	in := d.Inputs("n")
	in[0].Spec.Health.Liveness.Exec[0] = "changed"
	in[0].Spec.Resources.Pids = 1
	if d.Services[0].Spec.Health.Liveness.Exec[0] != "/bin/sh" || d.Services[0].Spec.Resources.Pids != 256 {
		t.Error("inputs share probes or resources with the deployment")
	}
	// Partial exponential backoff: the rest is defaulted.
	d, err = Parse([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n    errors: { on_panic: { backoff: { initial: 2s, max: 8s } } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e := d.Services[0].Policy.Exponential; e == nil || e.Initial != 2*time.Second || e.Max != 8*time.Second || e.Multiplier != 2 || e.Jitter != 0 || e.ResetAfter != policy.DefaultBackoffResetAfter {
		t.Errorf("partial backoff: %+v", e)
	}
	for in, want := range map[string]int64{"1Gi": 1 << 30, "500M": 500e6, "67108864": 64 << 20, "4096Ki": 4 << 20} {
		d, err := Parse([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n    resources: { memory: " + in + " }\n"))
		if err != nil || d.Services[0].Spec.Resources.MemoryBytes != want {
			t.Errorf("memory %s: %v, %v; want %d bytes", in, d, err, want)
		}
	}
}

// The security block: capabilities canonical whatever the spelling, and an
// empty block is the defaults (nil), so it leaves the spec's digest alone.
func TestParseSecurity(t *testing.T) {
	d, err := Parse([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n" +
		"    security: { user: \"1000:1000\", read_only: true, tmpfs: [/tmp, /run], no_new_privileges: false, cap_add: [net_bind_service, CAP_NET_RAW, NET_RAW], cap_drop: [ALL], seccomp: /etc/vigil/seccomp.json, apparmor: unconfined, userns: true }\n" +
		"  t:\n    image: { name: busybox }\n    security: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := &runtime.Security{User: "1000:1000", ReadOnly: true, Tmpfs: []string{"/tmp", "/run"}, NoNewPrivileges: &no,
		CapAdd: []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, CapDrop: []string{"ALL"}, Seccomp: "/etc/vigil/seccomp.json", AppArmor: "unconfined", UserNS: true}
	if got := d.Services[0].Spec.Security; !reflect.DeepEqual(got, want) {
		t.Errorf("security %+v, want %+v", got, want)
	}
	if e := d.Services[0].Spec.Security.Effective(); !reflect.DeepEqual(e.Capabilities, []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}) || e.NoNewPrivileges {
		t.Errorf("effective %+v", e)
	}
	if got := d.Services[1].Spec.Security; got != nil {
		t.Errorf("an empty block is %+v, want nil (the defaults)", got)
	}
	in := d.Inputs("n")
	in[0].Spec.Security.CapAdd[0] = "changed"
	if d.Services[0].Spec.Security.CapAdd[0] != "CAP_NET_BIND_SERVICE" {
		t.Error("inputs share the security block with the deployment")
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
