package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

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
