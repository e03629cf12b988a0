// Command vigil is the operator CLI: it starts supervision from a deployment
// file and inspects and steers supervised replicas through Temporal.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/errtext"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv, client.DialContext))
}

// run executes the command line and returns the exit code. Errors are
// printed as one line on stderr: {"error": "..."} with --json.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookup func(string) (string, bool), dial dialer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	root := newRootCommand(a, lookup, dial)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(stderr, a.json || wantsJSON(args), err)
	}
	return exitCode(err)
}

// printError prints err on one line. With --json it is a JSON object, so a
// script reads every answer, good or bad, the same way.
func printError(w io.Writer, asJSON bool, err error) {
	msg := errtext.OneLine(err.Error())
	if !asJSON {
		fmt.Fprintf(w, "vigil: %s\n", msg)
		return
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	fmt.Fprintf(w, "%s\n", b)
}

// wantsJSON finds --json on a command line that cobra could not parse (the
// flag was never set then, but the caller still reads JSON).
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

func newRootCommand(a *app, lookup func(string) (string, bool), dial dialer) *cobra.Command {
	conn := &a.conn
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Durable container supervision on Temporal",
		Long: "vigil starts and steers the supervision of container replicas. Each replica is a\n" +
			"long-running Temporal workflow; a vigil-worker on each node runs its containers.\n" +
			"IDs are <deployment>/<service>-rep-<replica>, e.g. shop/api-rep-1.",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		// Connection settings are checked before any command runs, but the
		// connection itself is made lazily, by the first command that needs it.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := conn.Resolve(cmd.Flags(), lookup); err != nil {
				return usageError{err}
			}
			if a.timeout <= 0 {
				return usagef("--timeout: %s must be positive, e.g. 30s", a.timeout)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	conn.AddFlags(pf)
	pf.BoolVar(&a.json, "json", false, "print the result as JSON")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "give up on the operation after this long")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	a.connect = func(ctx context.Context) (client.Client, error) {
		opts, err := conn.ClientOptions(quietLogger())
		if err != nil {
			return nil, usageError{err}
		}
		dctx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		c, err := dial(dctx, opts)
		if err != nil {
			return nil, failure{fmt.Errorf("cannot reach Temporal at %s (namespace %s): %s", conn.Address, conn.Namespace, errtext.OneLine(err.Error()))}
		}
		return convertingClient{Client: c, dc: opts.DataConverter}, nil
	}
	taskQueue := func() string { return conn.TaskQueue }

	root.AddCommand(
		applyCommand(a, "apply", taskQueue, lookup),
		applyCommand(a, "supervise", taskQueue, lookup),
		rolloutCommand(a),
		deleteCommand(a),
		statusCommand(a),
		listCommand(a),
		eventsCommand(a),
		updateCommand(a, "release", "Let an Isolated or Shutdown replica (or every one of a service: DEPLOYMENT/SERVICE) run again"),
		updateCommand(a, "restart", "Restart a Running or CrashLoopBackOff replica now"),
		updateCommand(a, "rollover", "Move a replica's supervision to a new workflow run now (after an upgrade), leaving its container alone"),
		unsuperviseCommand(a),
		logsCommand(a, taskQueue, lookup),
		codecServerCommand(a),
		nodeCommand(a),
		versionCommand(a),
	)
	return root
}

// withTimeout bounds a whole command by --timeout.
func (a *app) withTimeout(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%s: want exactly one %s, got %d arguments; e.g. vigil %s shop/api-rep-1", cmd.Name(), what, len(args), cmd.Name())
		}
		return nil
	}
}
