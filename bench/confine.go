package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// ConfinementResult is the start latency (Vigil's runtime Start: the old
// task deleted, a new one created and started) of one container with the
// default confinement and of one with none, measured alternately in one run
// so that both see the same machine.
type ConfinementResult struct {
	Defaults Dist `json:"defaults"`
	None     Dist `json:"none"`
	// AddedP50 is Defaults.P50 - None.P50, in ms.
	AddedP50 float64 `json:"added_p50_ms"`
}

// noConfinement is what containers got before v0.3.0: no seccomp filter,
// Docker's fourteen capabilities (no_new_privileges was already set).
var noConfinement = &runtime.Security{Seccomp: runtime.ProfileUnconfined, AppArmor: runtime.ProfileUnconfined,
	CapAdd: []string{"CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE"}}

// confinement starts each container n times, alternating which goes first.
func (v *vigilBench) confinement(ctx context.Context, n int) (*ConfinementResult, error) {
	r, err := v.runtime(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*10*time.Second+time.Minute)
	defer cancel()
	kinds := []struct {
		id  replica.ID
		sec *runtime.Security
		ds  []time.Duration
	}{
		{id: replica.ID{Deployment: "confine", Service: "defaults", Replica: 1}},
		{id: replica.ID{Deployment: "confine", Service: "none", Replica: 1}, sec: noConfinement},
	}
	for i := range kinds {
		spec := crashSpec("true")
		spec.Security = kinds[i].sec
		if err := r.Create(ctx, kinds[i].id, spec); err != nil {
			return nil, err
		}
		defer func(id replica.ID) { _ = r.Remove(context.WithoutCancel(ctx), id) }(kinds[i].id)
	}
	for i := 0; i < n; i++ {
		for j := range kinds {
			k := &kinds[(i+j)%len(kinds)]
			t0 := time.Now()
			if _, err := r.Start(ctx, k.id); err != nil {
				return nil, fmt.Errorf("start %s: %w", k.id.Ref(), err)
			}
			k.ds = append(k.ds, time.Since(t0))
			if st, err := r.Wait(ctx, k.id); err != nil || st.ExitCode != 0 {
				return nil, fmt.Errorf("wait %s: exit %d, %v", k.id.Ref(), st.ExitCode, err)
			}
		}
	}
	res := &ConfinementResult{Defaults: dist(kinds[0].ds), None: dist(kinds[1].ds)}
	res.AddedP50 = round1(res.Defaults.P50 - res.None.P50)
	return res, nil
}

func printConfinement(c *ConfinementResult) {
	if c == nil {
		return
	}
	fmt.Printf("\nSTART LATENCY BY CONFINEMENT (runtime Start, alternated)\n  defaults (seccomp, 11 capabilities): %s\n  none (pre-v0.3.0):                   %s\n  added by the defaults: p50 %+.1f ms\n",
		c.Defaults, c.None, c.AddedP50)
}
