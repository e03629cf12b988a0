// Command record-histories records the workflow histories of one release for
// the replay test (workflows/replay_test.go), from real runs: it builds that
// release's vigil-worker and vigil from a git worktree of its commit, starts a
// private containerd and a Temporal dev server, drives every scenario of
// internal/histories the release can play, and writes each run's history to
// <out>/<scenario>.json and the commit to <out>/COMMIT. Run it by hand, once
// per release (make test only replays):
//
//	go run ./tools/record-histories --release v0.2.0               # its commit in RELEASES
//	go run ./tools/record-histories --release v0.3.0 --commit HEAD # the release in development
//	go run ./tools/record-histories --release v0.3.0 --commit .    # the working tree
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "record-histories: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	release, commit, out string
	only                 []string
	timeout              time.Duration
	keep                 bool
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg config
	fs := pflag.NewFlagSet("record-histories", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.release, "release", version.Release, "the release being recorded (a line of RELEASES)")
	fs.StringVar(&cfg.commit, "commit", "", "git revision to build (default: the release's commit in RELEASES); \".\" builds the working tree")
	fs.StringVar(&cfg.out, "out", "", "output directory (default workflows/testdata/histories/<release>)")
	fs.StringSliceVar(&cfg.only, "only", nil, "record only these scenarios (default: every scenario the release can play)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the stack's directory (worker and containerd logs) afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	repo, err := stack.ModuleRoot()
	if err != nil {
		return err
	}
	releases, err := version.ReadReleases(filepath.Join(repo, "RELEASES"))
	if err != nil {
		return err
	}
	idx := version.Index(releases, cfg.release)
	if idx < 0 {
		return fmt.Errorf("--release: %s is not in RELEASES; add a line for it first", cfg.release)
	}
	if cfg.commit == "" {
		cfg.commit = releases[idx].Commit
		if cfg.commit == "" {
			return fmt.Errorf("--commit: %s is unreleased; give --commit HEAD (or . for the working tree)", cfg.release)
		}
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(repo, "workflows", "testdata", "histories", cfg.release)
	}
	scenarios, err := pick(releases, idx, cfg.only)
	if err != nil {
		return err
	}
	cli, err := stack.FindTemporalCLI()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "rec")
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	commit, vigilBin, workerBin, err := build(repo, cfg.commit, filepath.Join(dir, "bin"), logf)
	if err != nil {
		return err
	}
	logf("built %s at %s", cfg.release, commit)

	st, err := stack.Start(ctx, stack.Options{Dir: dir, TemporalCLI: cli, VigilBin: vigilBin, WorkerBin: workerBin, Node: "rec"})
	if err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if err := st.Close(cctx); err != nil {
			logf("stop the stack: %v", err)
		}
		if cfg.keep {
			logf("kept %s", dir)
		}
	}()
	if err := st.StartWorker(); err != nil {
		return err
	}
	c, err := st.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	env := &histories.Env{Stack: st, Client: c, Release: cfg.release, Logf: logf}

	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	// Scenarios run side by side (each has its own deployment); each records
	// its runs as soon as it has driven them.
	var wg sync.WaitGroup
	errs := make([]error, len(scenarios))
	for i, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = record(ctx, env, sc, cfg.out, logf)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		logf("worker log:\n%s", st.WorkerLogTail(40))
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "COMMIT"), []byte(commit+"\n"), 0o644); err != nil {
		return err
	}
	logf("recorded %d scenarios of %s into %s", len(scenarios), cfg.release, cfg.out)
	return nil
}

// pick returns the scenarios the release can play (Since at or before it).
func pick(releases []version.Entry, idx int, only []string) ([]histories.Scenario, error) {
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
	}
	var out []histories.Scenario
	for _, sc := range histories.Scenarios {
		since := version.Index(releases, sc.Since)
		if since < 0 {
			return nil, fmt.Errorf("scenario %s: Since %s is not in RELEASES", sc.Name, sc.Since)
		}
		if since > idx || (len(only) > 0 && !want[sc.Name]) {
			continue
		}
		delete(want, sc.Name)
		out = append(out, sc)
	}
	for n := range want {
		return nil, fmt.Errorf("--only: no scenario %q for this release; see internal/histories.Scenarios", n)
	}
	return out, nil
}

func record(ctx context.Context, env *histories.Env, sc histories.Scenario, out string, logf func(string, ...any)) error {
	start := time.Now()
	caps, err := sc.Run(ctx, env, sc.Name)
	if err != nil {
		return fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	for _, c := range caps {
		n, err := histories.Record(ctx, env, c, out)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		logf("%s: %s.json, %d events (%s)", sc.Name, c.File, n, time.Since(start).Round(time.Second))
	}
	return nil
}

// build builds the binaries of rev ("." is the working tree) and returns the
// full commit hash recorded in COMMIT.
func build(repo, rev, dir string, logf func(string, ...any)) (commit, vigilBin, workerBin string, err error) {
	if rev == "." {
		commit = gitRev(repo, "HEAD")
		if c := stack.CommitOf(repo); strings.HasSuffix(c, "+dirty") {
			commit += "+dirty"
		}
		logf("building the working tree (%s)", commit)
		vigilBin, workerBin, err = stack.Build(repo, dir)
		return commit, vigilBin, workerBin, err
	}
	commit = gitRev(repo, rev)
	if commit == "" {
		return "", "", "", fmt.Errorf("--commit: %s is not a commit of %s", rev, repo)
	}
	logf("building %s from a git worktree", commit)
	vigilBin, workerBin, err = stack.BuildCommit(repo, commit, dir)
	return commit, vigilBin, workerBin, err
}

func gitRev(repo, rev string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
