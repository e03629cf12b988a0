package containerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrimLogKeepsNewestLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString("line ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	b.WriteString("newest\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := trimLog(path, 1024); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if len(got) > 1024 || !strings.HasPrefix(string(got), "[vigil: ") || !strings.HasSuffix(string(got), "newest\n") {
		t.Fatalf("trimmed log (%d bytes) = %q", len(got), got)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")[1:] {
		if line != "newest" && !strings.HasPrefix(line, "line ") {
			t.Fatalf("trim cut a line in half: %q", line)
		}
	}
	if err := trimLog(filepath.Join(t.TempDir(), "missing.log"), 10); err != nil {
		t.Fatalf("trimming a missing log: %v", err)
	}
}
