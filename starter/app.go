package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
)

// Exit codes of the vigil command.
const (
	exitOK    = 0
	exitFail  = 1 // the operation failed: unknown ID, server unreachable, rejected update
	exitUsage = 2 // bad flags or arguments, invalid deployment file
)

// usageError is a mistake in the command line or the deployment file: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// failure is an operation that was attempted and failed: exit 1.
type failure struct{ err error }

func (e failure) Error() string { return e.err.Error() }
func (e failure) Unwrap() error { return e.err }

// exitCode maps an error to the process exit code. Errors cobra itself
// returns (unknown flag or command, wrong argument count) are usage errors.
func exitCode(err error) int {
	var f failure
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &f):
		return exitFail
	default:
		return exitUsage
	}
}

// dialer connects to Temporal; tests replace it with one returning a mock.
type dialer func(ctx context.Context, opts client.Options) (client.Client, error)

// convertingClient is the client with the data converter it was dialed
// with: the SDK leaves memos encoded, and decodeMemo reads them with it
// (decrypts them when a codec key is given).
type convertingClient struct {
	client.Client
	dc converter.DataConverter
}

// decodeMemo decodes a memo field read from c into out.
func decodeMemo(c client.Client, field *commonpb.Payload, out any) error {
	return dataConverter(c).FromPayload(field, out)
}

// dataConverter is the converter c was dialed with, for what the SDK
// leaves encoded (memos, heartbeat details).
func dataConverter(c client.Client) converter.DataConverter {
	if cc, ok := c.(convertingClient); ok {
		return cc.dc
	}
	return humanjson.DataConverter() // a client made in tests
}

// app is the state shared by the commands: output, connection, and the
// client, which is made only when a command first needs it so that local
// mistakes (a bad deployment file) never touch the network.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	json           bool
	timeout        time.Duration
	conn           config.Connection

	connect func(ctx context.Context) (client.Client, error)
	c       client.Client
}

// onReplica is the prologue of every command about one replica: parse its
// ID (a usage error), dial the server within the command's timeout, run fn.
func (a *app) onReplica(cmd *cobra.Command, ref string, fn func(ctx context.Context, c client.Client, id replica.ID) error) error {
	id, err := parseRef(ref)
	if err != nil {
		return err
	}
	ctx, cancel := a.withTimeout(cmd)
	defer cancel()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	return fn(ctx, c, id)
}

// client returns the connected client, dialing on first use.
func (a *app) client(ctx context.Context) (client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	c, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

func (a *app) close() {
	if a.c != nil {
		a.c.Close()
	}
}

// warn prints a warning on stderr: the command goes on and exits 0.
func (a *app) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if a.json {
		b, _ := json.Marshal(map[string]string{"warning": msg})
		fmt.Fprintf(a.stderr, "%s\n", b)
		return
	}
	fmt.Fprintf(a.stderr, "vigil: warning: %s\n", msg)
}

func (a *app) printer() printer {
	return printer{out: a.stdout, json: a.json}
}

// quietLogger keeps the SDK's own log lines out of the CLI's output; the CLI
// reports what matters itself.
func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

// describeErr turns a Temporal error about replica ref into one line an
// operator can act on, marked as a failed operation.
func describeErr(ref string, err error) error {
	var notFound *serviceerror.NotFound
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	var appErr *temporal.ApplicationError
	switch {
	case errors.As(err, &notFound):
		return failure{fmt.Errorf("unknown ID %s: no replica with this ID is supervised; see vigil list", ref)}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &deadline):
		return failure{fmt.Errorf("%s: timed out; is a vigil-worker running and the server reachable? (raise --timeout to wait longer)", ref)}
	case errors.As(err, &unavailable):
		return failure{fmt.Errorf("%s: Temporal is unavailable: %s", ref, errtext.OneLine(err.Error()))}
	case isUnknownSearchAttribute(err):
		return failure{fmt.Errorf("%s: %s; start vigil-worker once, it registers Vigil's search attributes", ref, errtext.OneLine(err.Error()))}
	case errors.As(err, &appErr):
		// The workflow's own refusal, e.g. "restart: replica is Isolated; ...".
		return failure{fmt.Errorf("%s: %s", ref, errtext.OneLine(appErr.Message()))}
	}
	return failure{fmt.Errorf("%s: %s", ref, errtext.OneLine(err.Error()))}
}

// isUnknownSearchAttribute reports whether Temporal refused a request because
// a search attribute is not registered in the namespace. The server says so
// only in the text of an InvalidArgument (no detail type marks it), so this
// is the one place that reads that text.
func isUnknownSearchAttribute(err error) bool {
	var invalid *serviceerror.InvalidArgument
	return errors.As(err, &invalid) && strings.Contains(invalid.Error(), "search attribute")
}
