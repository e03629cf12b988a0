package containerd

import (
	"context"
	"errors"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Preflight is runtime.Runtime's: the image (pulled now if its pull policy
// allows, so the replacement does not wait for it), each host port, each
// bind source and the init. It changes no container.
func (r *Runtime) Preflight(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) ([]runtime.Problem, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	var out []runtime.Problem
	if _, err := r.ensureImage(r.nsCtx(ctx), spec); err != nil {
		if errors.Is(err, runtime.ErrUnavailable) {
			return nil, err
		}
		reason := err.Error()
		var e *Error
		if errors.As(err, &e) {
			reason = e.ID + ": " + e.Err.Error()
		}
		out = append(out, runtime.Problem{Field: "image", Reason: reason})
	}
	out = append(out, r.servingProblems(spec)...)
	return out, nil
}
