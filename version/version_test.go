package version

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// The release string has one home (Release); RELEASES must end with it, and
// every earlier release must name a commit.
func TestReleasesEndsWithThisRelease(t *testing.T) {
	entries, err := ReadReleases("../RELEASES")
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Release != Release {
		t.Fatalf("RELEASES ends with %s, version.Release is %s; add a line for %s (or update version.Release)", last.Release, Release, Release)
	}
	for _, e := range entries[:len(entries)-1] {
		if len(e.Commit) < 7 {
			t.Errorf("RELEASES: %s has no commit; released versions name theirs", e.Release)
		}
	}
	prev, err := Previous(entries, Release)
	if err != nil {
		t.Fatal(err)
	}
	if prev.Release != "v0.2.0" || !strings.HasPrefix(prev.Commit, "81330dd") {
		t.Fatalf("previous release %+v; want v0.2.0 at 81330dd", prev)
	}
	if Index(entries, "v0.1.0") != 0 || Index(entries, "v9.9.9") != -1 {
		t.Fatal("Index")
	}
}

func TestReadReleasesRejectsBadLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "RELEASES")
	if err := os.WriteFile(p, []byte("# c\nv0.1.0 abc1234\n0.2.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadReleases(p)
	if err == nil || !strings.Contains(err.Error(), ":3:") || !strings.Contains(err.Error(), "<release> <commit>") {
		t.Fatalf("err = %v; want the line number and the format", err)
	}
	if _, err := Previous([]Entry{{Release: "v0.1.0"}}, "v0.1.0"); err == nil {
		t.Fatal("the first release has no previous one")
	}
}

func TestCommitFromBuildSettings(t *testing.T) {
	for _, tc := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, "unknown"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "5c145e4fcc5ec00ab74616df8e123207471f65c7"}}, "5c145e4fcc5e"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "5c145e4fcc5ec00ab74616df8e123207471f65c7"}, {Key: "vcs.modified", Value: "true"}}, "5c145e4fcc5e+dirty"},
	} {
		if got := commitFrom(tc.settings); got != tc.want {
			t.Errorf("commitFrom(%v) = %q, want %q", tc.settings, got, tc.want)
		}
	}
}

func TestIdentityNamesTheRelease(t *testing.T) {
	id := Identity("vigil-worker")
	if !strings.HasPrefix(id, "vigil-worker@"+Release+"/") || strings.Count(id, "/") != 3 {
		t.Fatalf("identity %q; want vigil-worker@%s/<commit>/<host>/<pid>", id, Release)
	}
	if !strings.Contains(String(), Release) {
		t.Fatalf("String() = %q", String())
	}
}
