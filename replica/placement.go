package replica

import "time"

// Placement over several nodes (a service's placement.nodes): the lease age
// at which a node counts as lost and its movable replicas move.
const (
	// DefaultLostAfter is reschedule.lost_after when the file sets none.
	DefaultLostAfter = 30 * time.Second
	// MinLostAfter keeps lost_after well above the lease's renewal, so a
	// renewal a little late neither fences nor moves anything: a replica
	// is fenced at lost_after minus a margin of at least 5 s
	// (lease.FenceAfter), here 10 s, two renewals (lease.Renewal).
	MinLostAfter = 15 * time.Second
)
