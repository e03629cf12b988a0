package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The node's lease (since v0.3.0) is its watch's heartbeat: the server
// records each one's arrival (the watch's last heartbeat time, which
// `describe` reads), and it adds no history. The watch sends it itself,
// every lease.Renewal, waiting for the answer, so that it knows which
// renewals succeeded: after each, it writes the time it sent it to the
// lease file the node's fences read (package lease).

// Renewer sends one heartbeat of the activity with taskToken and waits for
// the server's answer (client.Client.RecordActivityHeartbeat).
type Renewer func(ctx context.Context, taskToken []byte, details ...any) error

// leaseRenewal is one watch's renewal loop.
type leaseRenewal struct {
	renew Renewer
	dir   string
	node  string
	every time.Duration
	token []byte
	// end ends the watch: its activity was cancelled (another claim) or
	// is gone on the server (it timed out while the node was cut off).
	end    context.CancelFunc
	status func() any
	log    *leaseLog
}

// run renews at once, then every r.every, until ctx ends.
func (r *leaseRenewal) run(ctx context.Context) {
	log := activity.GetLogger(ctx)
	tick := time.NewTicker(r.every)
	defer tick.Stop()
	for {
		if err := r.once(ctx); err != nil {
			var notFound *serviceerror.NotFound
			switch {
			case temporal.IsCanceledError(err), errors.As(err, &notFound):
				log.Info("Node watch ended on the server; ending it here", "node", r.node, "error", err)
				r.end()
				return
			case ctx.Err() == nil:
				log.Warn("Node lease not renewed", "node", r.node, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// once sends one renewal and, if the server took it, records it.
func (r *leaseRenewal) once(ctx context.Context) error {
	sent, at := lease.Now(), time.Now()
	rctx, cancel := context.WithTimeout(ctx, r.every)
	defer cancel()
	if err := r.renew(rctx, r.token, r.status()); err != nil {
		return err
	}
	if r.dir == "" {
		return nil
	}
	r.log.renewed(at)
	if err := lease.Write(r.dir, lease.Lease{Node: r.node, Sent: sent, At: at.UTC()}); err != nil {
		// The fences then act on the last lease written: as if partitioned.
		activity.GetLogger(ctx).Error("Cannot write the node's lease file", "dir", r.dir, "error", err)
	}
	return nil
}

// leaseFresh waits, up to two renewals, until a container whose fence
// would end it at once may start: while the node's lease is older than the
// fence's limit less half a renewal (a worker that just started and has
// not renewed yet, or a node cut off), it would. Then it gives up, typed.
func (a *Activities) leaseFresh(ctx context.Context, fence time.Duration) error {
	if fence <= 0 || a.opts.LeaseDir == "" {
		return nil
	}
	deadline := time.Now().Add(2 * lease.Renewal)
	for {
		l, err := lease.Read(a.opts.LeaseDir)
		if err == nil && l.Age() < fence-lease.Renewal/2 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			why := "none yet"
			if err == nil {
				why = "renewed " + l.Age().Round(time.Millisecond).String() + " ago"
			}
			return temporal.NewApplicationError(fmt.Sprintf("the node's lease is not fresh (%s); a movable replica starts once it is renewed", why), replica.ErrTypeLeaseStale)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leaseLog remembers this worker's lapses of its node's lease: each time
// between two renewals that succeeded (or from the renewal in the lease
// file a worker finds at its start to its first) longer than a renewal and
// a half. A fence ends a container only in such a lapse.
type leaseLog struct {
	mu     sync.Mutex
	last   time.Time // the last successful renewal's send (wall clock)
	lapses []lapse   // the latest maxLapses
}

type lapse struct{ from, to time.Time }

const maxLapses = 32

// newLeaseLog starts from the lease file in dir, if any.
func newLeaseLog(dir string) *leaseLog {
	l := &leaseLog{}
	if dir != "" {
		if prev, err := lease.Read(dir); err == nil {
			l.last = prev.At
		}
	}
	return l
}

// renewed records a successful renewal sent at at.
func (l *leaseLog) renewed(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && at.Sub(l.last) > lease.Renewal*3/2 {
		l.lapses = append(l.lapses, lapse{from: l.last, to: at})
		if len(l.lapses) > maxLapses {
			l.lapses = l.lapses[1:]
		}
	}
	l.last = at
}

// ageAt is how old the lease was at t (the wall clock) if t fell in a
// lapse, or after the last renewal; 0 otherwise (it was fresh, or t is
// older than this worker knows).
func (l *leaseLog) ageAt(t time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && t.After(l.last) {
		return t.Sub(l.last)
	}
	for _, p := range l.lapses {
		if t.After(p.from) && !t.After(p.to) {
			return t.Sub(p.from)
		}
	}
	return 0
}

// fenced reports whether an exit of a container with the fence limit
// fence was its fence's: the fence's status, when the node's lease was
// that old (less a second for the clocks and the fence's polling).
func (a *Activities) fenced(e runtime.Exit, fence time.Duration) bool {
	return fence > 0 && e.ExitCode == lease.FencedExit && a.leases.ageAt(e.ExitedAt) >= fence-time.Second
}
