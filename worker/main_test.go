package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/version"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsAndEnv(t *testing.T) {
	o, err := parseFlags([]string{"--containerd-namespace", "flagns"}, env(map[string]string{
		"VIGIL_NODE": "node-7", "CONTAINERD_ADDRESS": "/tmp/c.sock", "VIGIL_CONTAINERD_NAMESPACE": "envns",
		"TEMPORAL_ADDRESS": "t:7233", "VIGIL_TASK_QUEUE": "q", "VIGIL_METRICS_ADDRESS": "127.0.0.1:9464",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.node != "node-7" || o.containerdAddress != "/tmp/c.sock" || o.containerdNamespace != "flagns" ||
		o.conn.Address != "t:7233" || o.conn.TaskQueue != "q" || o.logDir != "/var/lib/vigil/logs" ||
		o.metricsAddress != "127.0.0.1:9464" {
		t.Errorf("%+v", o)
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"extra"},
		{"--node", ""},
		{"--log-format", "xml"},
		{"--address", "noport"},
		{"--tls-cert-file", "only-cert.pem"},
		{"--max-activities", "0"},
		{"--metrics-address", "9464"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, env(nil), io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
		if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines > 0 && args[0] != "--bogus" {
			t.Errorf("%v: error is not one line: %q", args, stderr.String())
		}
	}
}

func TestHelpExits0(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), io.Discard, &stderr); code != exitOK || !strings.Contains(stderr.String(), "--containerd-address") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

func TestUnreachableServerExits1WithoutSecret(t *testing.T) {
	const key = "sk-worker-secret-key"
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--address", "127.0.0.1:1", "--tls=false", "--no-activities"},
		env(map[string]string{"TEMPORAL_API_KEY": key}), io.Discard, &stderr)
	if code != exitFail {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.Contains(stderr.String(), key) || !strings.Contains(stderr.String(), "cannot reach Temporal") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestVersionPrintsReleaseAndCommit(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--version"}, env(nil), &stdout, &stderr)
	if code != exitOK || stdout.String() != "vigil-worker "+version.String()+"\n" || !strings.Contains(stdout.String(), version.Release) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// A registry config the worker cannot use stops it at once with one line
// naming the flag, and never with the file's content (it holds secrets).
func TestBadRegistryConfigExits2WithoutSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const secret = "hunter2-registry-secret"
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--registry-config", filepath.Join(dir, "missing.json")}, nil, "--registry-config"},
		{nil, map[string]string{"VIGIL_REGISTRY_CONFIG": write("broken.json", `{"auths": {"r": {"password": "`+secret)}, "--registry-config"},
		{nil, map[string]string{"VIGIL_REGISTRY_CONFIG": write("auth.json", `{"auths": {"r": {"auth": "`+secret+`"}}}`)}, "--registry-config"},
		{[]string{"--registry-ca-file", write("ca.pem", secret)}, nil, "--registry-ca-file"},
		{[]string{"--registry-config", write("helper.json", `{"auths": {}, "credsStore": "desktop"}`)}, nil, "credsStore"},
		{[]string{"--pull-stall-timeout", "0s"}, nil, "--pull-stall-timeout"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), c.args, env(c.env), io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v %v: exit %d, want %d (%s)", c.args, c.env, code, exitUsage, stderr.String())
		}
		out := strings.TrimSpace(stderr.String())
		if strings.Contains(out, "\n") || !strings.Contains(out, c.want) || strings.Contains(out, secret) {
			t.Errorf("%v %v: stderr %q, want one line naming %s without the secret", c.args, c.env, out, c.want)
		}
	}
	o, err := parseFlags(nil, env(map[string]string{
		"VIGIL_REGISTRY_CONFIG":    write("ok.json", `{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}}`),
		"VIGIL_PULL_STALL_TIMEOUT": "5s",
	}), io.Discard)
	if err != nil || o.registry.ConfigFile == "" || o.registry.StallTimeout != 5*time.Second {
		t.Errorf("registry settings from the environment: %+v, %v", o, err)
	}
}
