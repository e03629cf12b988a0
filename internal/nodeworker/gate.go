package nodeworker

import (
	"context"
	"sync/atomic"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
)

// Gate lets node activities run only while this worker is its node's
// accepted claimant: an activity that reaches a worker whose claim was
// refused or taken over fails at once, typed and not retried here.
type Gate struct {
	interceptor.WorkerInterceptorBase
	node  string
	owner atomic.Bool
}

func (g *Gate) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &gatedActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, g: g}
}

type gatedActivity struct {
	interceptor.ActivityInboundInterceptorBase
	g *Gate
}

func (a *gatedActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	if !a.g.owner.Load() {
		return nil, temporal.NewNonRetryableApplicationError("this worker does not hold node "+a.g.node+" (another worker claimed it)", replica.ErrTypeNotNodeOwner, nil)
	}
	return a.Next.ExecuteActivity(ctx, in)
}
