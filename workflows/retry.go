package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
)

// retryDoubling retries without limit, the first retry after first, each
// wait twice the one before, up to most.
func retryDoubling(first, most time.Duration) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: first, BackoffCoefficient: 2, MaximumInterval: most}
}
