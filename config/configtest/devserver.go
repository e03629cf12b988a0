// Package configtest starts a Temporal dev server for tests, from the
// Temporal CLI that `make deps` installs.
package configtest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
)

// TemporalCLI returns the path of the Temporal CLI: $VIGIL_BIN/temporal,
// ~/.cache/vigil/bin/temporal or temporal on PATH. When it is missing the
// test is skipped, or fails if VIGIL_REQUIRE_INTEGRATION=1.
func TemporalCLI(t testing.TB) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("VIGIL_BIN"), filepath.Join(os.Getenv("HOME"), ".cache", "vigil", "bin")} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "temporal")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p
	}
	if os.Getenv("VIGIL_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("temporal CLI not found in $VIGIL_BIN, ~/.cache/vigil/bin or PATH (VIGIL_REQUIRE_INTEGRATION=1)")
	}
	t.Skip("temporal CLI not found; run make deps or set VIGIL_BIN")
	return ""
}

// StartDevServer starts an in-memory dev server on free ports and stops it
// when the test ends.
func StartDevServer(t testing.TB) *testsuite.DevServer {
	t.Helper()
	cli := TemporalCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cli, LogLevel: "error", Stdout: io.Discard, Stderr: io.Discard,
	})
	if err != nil {
		t.Fatalf("dev server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}
