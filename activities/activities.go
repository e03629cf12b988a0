// Package activities are Vigil's hands on a node: thin, idempotent adapters
// over runtime.Runtime, run by the worker on the node that owns the containers.
package activities

import (
	"context"
	"errors"
	"net/http"

	"github.com/vigil-run/vigil/runtime"
)

// Options tune the activities. The zero value is usable.
type Options struct {
	// HTTPClient calls isolate webhooks (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// LookupEnv resolves "$E:NAME" env references (default: os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// Activities holds the dependencies of every container activity.
type Activities struct {
	rt   runtime.Runtime
	opts Options
}

// New returns the activities over rt.
func New(rt runtime.Runtime, opts Options) *Activities {
	return &Activities{rt: rt, opts: opts}
}

var errTODO = errors.New("not implemented yet")

// EnsureRunning creates and starts the container unless its task already runs.
func (a *Activities) EnsureRunning(ctx context.Context, in EnsureRunningInput) (EnsureRunningResult, error) {
	return EnsureRunningResult{}, errTODO
}

// WaitForExit blocks until the container leaves Running, heartbeating meanwhile.
func (a *Activities) WaitForExit(ctx context.Context, in WaitForExitInput) (WaitForExitResult, error) {
	return WaitForExitResult{}, errTODO
}

// Stop stops the container (SIGTERM, then SIGKILL after the grace period).
func (a *Activities) Stop(ctx context.Context, in StopInput) (StopResult, error) {
	return StopResult{}, errTODO
}

// Isolate marks a crashed container isolated and calls the webhook.
func (a *Activities) Isolate(ctx context.Context, in IsolateInput) error {
	return errTODO
}

// Logs returns the tail of the container's captured output.
func (a *Activities) Logs(ctx context.Context, in LogsInput) (LogsResult, error) {
	return LogsResult{}, errTODO
}
