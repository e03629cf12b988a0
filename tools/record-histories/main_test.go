package main

import (
	"strings"
	"testing"

	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/version"
)

func TestPickHonoursSinceAndOnly(t *testing.T) {
	rels := []version.Entry{{Release: "v0.1.0", Commit: "5c145e4"}, {Release: "v0.2.0", Commit: "81330dd"}, {Release: "v0.3.0"}}
	all, err := pick(rels, 2, nil)
	if err != nil || len(all) != len(histories.Scenarios) {
		t.Fatalf("v0.3.0: %d scenarios (%v); want all %d", len(all), err, len(histories.Scenarios))
	}
	old, err := pick(rels, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range old {
		if sc.Since != "v0.1.0" {
			t.Errorf("v0.1.0 would record %s (since %s)", sc.Name, sc.Since)
		}
	}
	if len(old) < 11 {
		t.Errorf("v0.1.0 records %d scenarios, want at least 11", len(old))
	}
	one, err := pick(rels, 0, []string{"healthy"})
	if err != nil || len(one) != 1 || one[0].Name != "healthy" {
		t.Fatalf("--only healthy: %v %v", one, err)
	}
	if _, err := pick(rels, 0, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("--only nope: %v", err)
	}
}

// Every scenario has a unique name and a release that RELEASES lists.
func TestScenariosAreWellFormed(t *testing.T) {
	rels, err := version.ReadReleases("../../RELEASES")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sc := range histories.Scenarios {
		if seen[sc.Name] || sc.Run == nil || version.Index(rels, sc.Since) < 0 {
			t.Errorf("scenario %+v: duplicate name, no Run, or Since not in RELEASES", sc.Name)
		}
		seen[sc.Name] = true
	}
}
