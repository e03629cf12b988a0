package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestJSONSharedBySDKAndVigil(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{Format: "json", Level: "info"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("vigil line", zap.String("k", "v"))
	Temporal(l).Info("sdk line", "TaskQueue", "vigil")
	Temporal(l).Debug("hidden at info")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if m["level"] != "info" || m["ts"] == nil || m["msg"] == nil {
			t.Errorf("missing common keys: %q", line)
		}
	}
	if !strings.Contains(lines[1], `"TaskQueue":"vigil"`) || !strings.Contains(lines[1], `"logger":"temporal"`) {
		t.Errorf("SDK line lost its fields: %q", lines[1])
	}
}

func TestConsoleAndLevel(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{Format: "console", Level: "warn"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	Temporal(l).Info("dropped")
	Temporal(l).Warn("kept", "Attempt", 2)
	out := buf.String()
	if strings.Contains(out, "dropped") || !strings.Contains(out, "WARN") || !strings.Contains(out, "kept") {
		t.Errorf("console output: %q", out)
	}
}

func TestBadFlags(t *testing.T) {
	for _, o := range []Options{{Format: "xml", Level: "info"}, {Format: "json", Level: "loud"}, {Format: "json", Level: "fatal"}} {
		_, err := New(o, &bytes.Buffer{})
		if err == nil || !strings.HasPrefix(err.Error(), "--log-") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
