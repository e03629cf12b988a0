package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/stack"
)

// TestShortSoak is a bounded soak with a fixed seed inside `make test`: the
// same replicas and fault kinds as `make chaos`, each kind once, for about two minutes.
func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the chaos soak in -short mode")
	}
	if os.Getenv(containerdtest.RequireEnv) != "1" {
		t.Skip("skipping the chaos soak (about 2 minutes); set " + containerdtest.RequireEnv + "=1 or run make chaos")
	}
	if _, err := stack.FindTemporalCLI(); err != nil {
		containerdtest.Unavailable(t, err.Error())
	}
	if err := containerdtest.Prerequisites(); err != nil {
		containerdtest.Unavailable(t, err.Error())
	}
	repo, err := stack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cfg := config{
		// Every kind once: the soak ends after its len(allFaults)-th fault;
		// Duration only bounds a slow machine.
		Seed: 6, Duration: 4 * time.Minute, Replicas: 20, MaxFaults: len(allFaults),
		MinGap: 3 * time.Second, MaxGap: 6 * time.Second,
		Warmup: 15 * time.Second, Heal: 90 * time.Second, ExitsPerRun: defaultExitsPerRun,
		Repo: repo, Out: &out,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := soak(ctx, cfg)
	if rep != nil {
		printReport(&out, rep)
	}
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("the soak could not run: %v", err)
	}
	if len(rep.Violations) > 0 {
		t.Fatalf("%d invariant violations (seed %d):\n%s", len(rep.Violations), rep.Seed, strings.Join(rep.Violations, "\n"))
	}
	kinds := map[faultKind]bool{}
	for _, f := range rep.Faults {
		kinds[f.Kind] = true
	}
	if len(kinds) != len(allFaults) {
		t.Fatalf("only %d of %d fault kinds were injected", len(kinds), len(allFaults))
	}
}
