// Command chaos is Vigil's chaos soak: against a real private containerd, a
// real Temporal dev server on a database file and real vigil-worker
// processes, it supervises replicas of mixed behaviour while injecting
// faults at seeded random times (worker SIGKILL, dev server restart,
// containerd restart, task SIGKILL, container deletion, a host reboot, a
// second worker for the node, corrupt signals, ...), then checks from
// outside Vigil that supervision held up, and prints a table. Any violation
// exits 1; the seed and the fault log replay the run.
//
//	go run ./chaos [--seed N] [--duration 10m] [--replicas 20]
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/vigil-run/vigil/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := config{Out: stdout}
	fs := pflag.NewFlagSet("chaos", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed; a failed soak prints its seed to replay it")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long faults are injected")
	fs.IntVar(&cfg.Replicas, "replicas", 20, "supervised replicas, spread over the behaviours")
	fs.IntVar(&cfg.MaxFaults, "max-faults", 500, "most faults injected")
	fs.DurationVar(&cfg.MinGap, "min-gap", 5*time.Second, "shortest pause between faults")
	fs.DurationVar(&cfg.MaxGap, "max-gap", 20*time.Second, "longest pause between faults")
	fs.DurationVar(&cfg.Warmup, "warmup", 20*time.Second, "time the replicas run before the first fault")
	fs.DurationVar(&cfg.Heal, "heal", 2*time.Minute, "time the last fault gets to heal before a violation counts")
	fs.IntVar(&cfg.ExitsPerRun, "exits-per-run", defaultExitsPerRun, "supervise a crasher beside the deployment whose workflow continues as new after this many exits (0: none)")
	faults := fs.StringSlice("faults", nil, "inject only these faults (comma-separated kinds; default: all)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the soak's directory even when it passes")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		return 2
	}
	var err error
	if cfg.Faults, err = parseFaults(*faults); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	repo, err := stack.ModuleRoot()
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	cfg.Repo = repo
	rep, err := soak(ctx, cfg)
	if rep != nil {
		printReport(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: the soak could not run (seed %d): %v\n", cfg.Seed, err)
		return 1
	}
	if len(rep.Violations) > 0 {
		return 1
	}
	return 0
}

func (c config) validate() error {
	switch {
	case c.Duration <= 0:
		return fmt.Errorf("--duration: %s must be positive, e.g. 10m", c.Duration)
	case c.MaxFaults < 1:
		return fmt.Errorf("--max-faults: %d must be at least 1", c.MaxFaults)
	case c.MinGap <= 0 || c.MaxGap < c.MinGap:
		return fmt.Errorf("--min-gap, --max-gap: want 0 < min-gap <= max-gap, got %s and %s", c.MinGap, c.MaxGap)
	case c.ExitsPerRun < 0:
		return fmt.Errorf("--exits-per-run: %d must be 0 (none) or more", c.ExitsPerRun)
	case c.Heal <= 0:
		return fmt.Errorf("--heal: %s must be positive, e.g. 2m", c.Heal)
	}
	_, err := roster(c.Replicas)
	return err
}

// printReport prints the fault log, the table of replicas and the verdict.
func printReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "\nseed %d: %d faults (%s)\n%s\n", rep.Seed, len(rep.Faults), byKind(rep.Faults), faultLog(rep.Faults))
	if len(rep.Rows) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REPLICA\tBEHAVIOUR\tSTATE\tWORKFLOW\tRESTARTS\tSTARTS(LOG)\tSTARTS(EVENTS)\tEXITS\tKILLED\tBACKOFFS\tMIN BACKOFF\tTASK\tHISTORY\tRUNS\tEXITS/RUN\tOK")
		for _, r := range rep.Rows {
			ok := "ok"
			if len(r.Violations) > 0 {
				ok = fmt.Sprintf("%d violations", len(r.Violations))
			}
			minBackoff := "-"
			if r.Backoffs > 0 {
				minBackoff = r.MinBackoff.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d/%d\t%s\n", r.Replica, r.Behaviour, r.State, r.Workflow,
				r.Restarts, r.StartsLog, r.StartsEvents, r.Exits, r.Hits, r.Backoffs, minBackoff, r.Task, r.HistoryLength, r.Runs, r.MostExitsPerRun, r.ExitBound, ok)
		}
		_ = tw.Flush()
	}
	if len(rep.Violations) == 0 {
		fmt.Fprintf(w, "\nPASS: every invariant held (seed %d)\n", rep.Seed)
		return
	}
	fmt.Fprintf(w, "\nFAIL: %d violations (replay with --seed %d):\n", len(rep.Violations), rep.Seed)
	for _, v := range rep.Violations {
		fmt.Fprintln(w, "  "+v)
	}
}
