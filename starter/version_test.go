package main

import (
	"encoding/json"
	"testing"

	"github.com/vigil-run/vigil/version"
)

// vigil version needs no server, and works even with a bad connection setting.
func TestVersionPrintsReleaseAndCommit(t *testing.T) {
	r := vigil(t, nil, map[string]string{"TEMPORAL_ADDRESS": "noport"}, "version")
	if r.code != exitOK || r.dialed || r.stdout != "vigil "+version.String()+"\n" {
		t.Fatalf("exit %d, dialed %t, stdout %q, stderr %q", r.code, r.dialed, r.stdout, r.stderr)
	}
	r = vigil(t, nil, nil, "version", "--json")
	var v VersionResult
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Release != version.Release || v.Commit != version.Commit() {
		t.Fatalf("version --json: %q (%v)", r.stdout, err)
	}
	if r := vigil(t, nil, nil, "version", "extra"); r.code != exitUsage {
		t.Fatalf("version with an argument: exit %d", r.code)
	}
}
