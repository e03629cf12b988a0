package activities

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// OrphansInput asks a node for the containers of Vigil's namespace that no
// replica owns (`vigil node orphans`).
type OrphansInput struct {
	Node string `json:"node"`
	// Remove also removes them (task, container and snapshot; the log is kept).
	Remove bool `json:"remove,omitempty"`
}

// Orphan is one container on the node that no replica owns: e.g. left by
// `vigil unsupervise` without --stop, or by a replica moved to another node.
type Orphan struct {
	ID     replica.ID     `json:"id"`
	Status runtime.Status `json:"status"`
	// Removed: Remove was asked and done.
	Removed bool `json:"removed,omitempty"`
}

// OrphansResult lists the node's orphans.
type OrphansResult struct {
	Orphans []Orphan `json:"orphans"`
}

// Orphans lists the containers on the node that no replica owns (asking the
// roster about each), and removes them when asked. It stops at the first
// container whose owner cannot be told: nothing is removed on a guess.
func (a *Activities) Orphans(ctx context.Context, in OrphansInput) (OrphansResult, error) {
	if a.opts.Roster == nil {
		return OrphansResult{}, temporal.NewNonRetryableApplicationError("this worker cannot tell who owns a container (no Roster)", replica.ErrTypeBadSpec, nil)
	}
	list, err := a.rt.List(ctx)
	if err != nil {
		return OrphansResult{}, fmt.Errorf("list the containers: %w", err)
	}
	res := OrphansResult{Orphans: []Orphan{}}
	for _, c := range list {
		owned, err := a.opts.Roster.Owns(ctx, c.ID, in.Node)
		if err != nil {
			return OrphansResult{}, fmt.Errorf("who owns %s: %w", c.ID.Ref(), err)
		}
		if owned {
			continue
		}
		o := Orphan{ID: c.ID, Status: c.State.Status}
		if in.Remove {
			if err := a.rt.Remove(ctx, c.ID); err != nil {
				return OrphansResult{}, fmt.Errorf("remove %s: %w", c.ID.Ref(), err)
			}
			o.Removed = true
		}
		res.Orphans = append(res.Orphans, o)
	}
	return res, nil
}
