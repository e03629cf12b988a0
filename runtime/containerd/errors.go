package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-run/vigil/runtime"
)

// Error is a failed runtime call. Kind, when set, is one of runtime's typed
// errors, so callers can use errors.Is(err, runtime.ErrImageNotFound) etc.
type Error struct {
	Op   string // the runtime method, e.g. "start"
	ID   string // the containerd container ID or image reference
	Kind error
	Err  error
}

func (e *Error) Error() string {
	return fmt.Sprintf("containerd %s %s: %v", e.Op, e.ID, e.Err)
}

// Unwrap exposes both the typed kind and the underlying cause.
func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// wrap classifies err from containerd. notFound is the kind a NotFound answer
// means for this call (container or image), nil when NotFound is unexpected.
func wrap(op, id string, err error, notFound error) error {
	if err == nil {
		return nil
	}
	var already *Error
	var pull *runtime.PullFailed // typed and worded already
	if errors.As(err, &already) || errors.As(err, &pull) {
		return err
	}
	e := &Error{Op: op, ID: id, Err: err}
	switch {
	case notFound != nil && errdefs.IsNotFound(err):
		e.Kind = notFound
	case isUnavailable(err):
		e.Kind = runtime.ErrUnavailable
	}
	return e
}

// isShimStartFailure reports whether containerd failed to start the task's
// shim. containerd gives no kind for it: its task manager wraps the cause
// with fmt.Errorf("failed to start shim: %w") (core/runtime/v2), and over
// gRPC that arrives as code Unknown with only this text. So this is the one
// place that matches the text.
func isShimStartFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "failed to start shim")
}

// isUnavailable reports whether err means containerd could not be reached
// (down, restarting, socket missing), as opposed to a refused request.
func isUnavailable(err error) bool {
	if errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	return false
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
