package activities

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// A refused credential is permanent, a stalled pull is retried; each
// shows as its type first, as the replica's start error.
func TestPullErrorsAreTyped(t *testing.T) {
	id := replica.ID{Deployment: "d", Service: "web", Replica: 1}
	for _, c := range []struct {
		kind      error
		typ       string
		retryable bool
	}{
		{runtime.ErrImagePullUnauthorized, replica.ErrTypeImagePullUnauthorized, false},
		{runtime.ErrImagePullStalled, replica.ErrTypeImagePullStalled, true},
	} {
		err := activityError("create", id, fmt.Errorf("image: %w", &runtime.PullFailed{Kind: c.kind, Image: "reg.example/app:v1", Why: "because"}))
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != c.typ || app.NonRetryable() == c.retryable ||
			!strings.HasPrefix(app.Error(), c.typ+": ") {
			t.Errorf("%v: got %v (%T), want type %s, retryable %v, text starting with the type", c.kind, err, err, c.typ, c.retryable)
		}
	}
}
