package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// program is one binary built from a module under tools/.
type program struct {
	toolsDir string // tools/<dir>: go.mod and go.sum with the module required
	module   string // the module whose version .env pins
	version  string // without "v"
	pkg      string // the main package
	out      string // where it goes in the cache
}

func (v Versions) programs(repo string) []program {
	b := v.Binaries()
	server := filepath.Join(repo, "tools", "temporal-server")
	return []program{
		{server, "go.temporal.io/server", v.Temporal, "go.temporal.io/server/cmd/server", b.Server},
		{server, "go.temporal.io/server", v.Temporal, "go.temporal.io/server/cmd/tools/sql", b.SQLTool},
		{filepath.Join(repo, "tools", "temporal-ui"), "github.com/temporalio/ui-server/v2", v.UI, "github.com/temporalio/ui-server/v2/cmd/server", b.UI},
	}
}

// Build builds the Temporal binaries that are missing from the cache, from
// the modules under tools/ at the versions .env pins. The first build takes
// minutes (the server has hundreds of packages); later calls return at once.
// A lock file keeps concurrent callers (make test runs several packages) from
// building twice.
func Build(ctx context.Context, repo string, v Versions, log io.Writer) (Binaries, error) {
	b := v.Binaries()
	if len(b.Missing()) == 0 {
		return b, nil
	}
	if err := os.MkdirAll(BinDir(), 0o755); err != nil {
		return b, err
	}
	lock, err := os.OpenFile(filepath.Join(BinDir(), ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return b, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return b, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for _, p := range v.programs(repo) {
		if st, err := os.Stat(p.out); err == nil && st.Mode()&0o111 != 0 {
			continue // built meanwhile by another caller
		}
		start := time.Now()
		fmt.Fprintf(log, "==> building %s@v%s into %s (first time only; takes minutes)\n", p.pkg, p.version, filepath.Dir(p.out))
		if err := p.build(ctx); err != nil {
			return b, err
		}
		fmt.Fprintf(log, "==> built %s in %s\n", filepath.Base(p.out), time.Since(start).Round(time.Second))
	}
	return b, nil
}

// build compiles in a scratch copy of the tools module with the pinned
// version required, so .env stays the one place to change a version: when
// the committed go.mod already requires it (the usual case) its go.sum is
// used as is; otherwise the go command fetches and verifies the new one.
func (p program) build(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "vigil-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(p.toolsDir, f))
		if err != nil {
			return fmt.Errorf("build %s: %w", p.pkg, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.out), 0o755); err != nil {
		return err
	}
	partial := p.out + ".partial"
	for _, args := range [][]string{
		{"mod", "edit", "-require=" + p.module + "@v" + p.version},
		{"build", "-o", partial, p.pkg},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s (module %s@v%s): %v\n%s", args[0], p.module, p.version, err, out)
		}
	}
	return os.Rename(partial, p.out)
}
