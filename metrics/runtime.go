package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Error kinds of vigil_runtime_errors_total, from runtime's typed errors.
const (
	KindImageNotFound     = "image_not_found"
	KindContainerNotFound = "container_not_found"
	KindUnavailable       = "unavailable"
	KindCanceled          = "canceled"
	KindOther             = "other"
)

// ErrorKind names a runtime error's kind for the error counter.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, runtime.ErrImageNotFound):
		return KindImageNotFound
	case errors.Is(err, runtime.ErrContainerNotFound):
		return KindContainerNotFound
	case errors.Is(err, runtime.ErrUnavailable):
		return KindUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return KindCanceled
	}
	return KindOther
}

// Instrument wraps rt so that every failed call is counted by operation and
// kind. Methods it does not wrap pass through unchanged.
func (m *Metrics) Instrument(rt runtime.Runtime) runtime.Runtime {
	return &instrumented{Runtime: rt, m: m}
}

type instrumented struct {
	runtime.Runtime
	m *Metrics
}

func (r *instrumented) count(op string, err error) {
	if err != nil {
		r.m.rtErrors.WithLabelValues(op, ErrorKind(err)).Inc()
	}
}

func (r *instrumented) Create(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	err := r.Runtime.Create(ctx, id, spec)
	if !errors.Is(err, runtime.ErrSpecChanged) { // an answer (replace it), not a failure
		r.count("create", err)
	}
	return err
}

func (r *instrumented) Start(ctx context.Context, id replica.ID) (runtime.StartInfo, error) {
	info, err := r.Runtime.Start(ctx, id)
	r.count("start", err)
	return info, err
}

func (r *instrumented) State(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	st, err := r.Runtime.State(ctx, id)
	r.count("state", err)
	return st, err
}

func (r *instrumented) Wait(ctx context.Context, id replica.ID) (runtime.ContainerState, error) {
	st, err := r.Runtime.Wait(ctx, id)
	r.count("wait", err)
	return st, err
}

func (r *instrumented) Stop(ctx context.Context, id replica.ID, grace time.Duration) error {
	err := r.Runtime.Stop(ctx, id, grace)
	r.count("stop", err)
	return err
}

func (r *instrumented) Remove(ctx context.Context, id replica.ID) error {
	err := r.Runtime.Remove(ctx, id)
	r.count("remove", err)
	return err
}

func (r *instrumented) Isolate(ctx context.Context, id replica.ID) error {
	err := r.Runtime.Isolate(ctx, id)
	r.count("isolate", err)
	return err
}

func (r *instrumented) MarkReported(ctx context.Context, id replica.ID, exitedAt time.Time) error {
	err := r.Runtime.MarkReported(ctx, id, exitedAt)
	r.count("mark_reported", err)
	return err
}

func (r *instrumented) Logs(ctx context.Context, id replica.ID, tail int) ([]byte, error) {
	out, err := r.Runtime.Logs(ctx, id, tail)
	r.count("logs", err)
	return out, err
}
