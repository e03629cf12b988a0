// Package version is the one home of Vigil's release string, and reads the
// commit a binary was built from.
package version

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

// Release is the release this tree is (or is becoming); it is the last line
// of the RELEASES file at the top of the repository.
const Release = "v0.3.0"

// commit may be set at build time:
//
//	go build -ldflags "-X github.com/vigil-run/vigil/version.commit=$(git rev-parse HEAD)"
//
// Otherwise it comes from the VCS information go build stamps into binaries
// built inside a git checkout.
var commit string

// Commit is the commit the running binary was built from: a short hash, with
// "+dirty" when the tree had uncommitted changes, or "unknown" (go run, or a
// build outside git).
func Commit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return commitFrom(info.Settings)
}

func commitFrom(settings []debug.BuildSetting) string {
	var rev string
	dirty := false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// String is what `vigil version` and `vigil-worker --version` print.
func String() string { return Release + " (commit " + Commit() + ")" }

// Identity is a Temporal client identity that names the release, so the Web
// UI shows which release ran each workflow task and activity:
// "<program>@<release>/<commit>/<host>/<pid>".
func Identity(program string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%s/%s/%d", program, Release, Commit(), host, os.Getpid())
}

// Entry is one line of the RELEASES file.
type Entry struct {
	Release string
	// Commit is the full commit hash, or "" while the release is unreleased.
	Commit string
}

// ReadReleases parses a RELEASES file: "<release> <commit>" per line, oldest
// first, '#' comments; the commit "unreleased" reads as "".
func ReadReleases(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || !strings.HasPrefix(fields[0], "v") {
			return nil, fmt.Errorf("%s:%d: want \"<release> <commit>\", e.g. \"v0.1.0 5c145e4\" (or \"v0.3.0 unreleased\"); got %q", path, n, line)
		}
		e := Entry{Release: fields[0], Commit: fields[1]}
		if e.Commit == "unreleased" {
			e.Commit = ""
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no releases; add a line \"<release> <commit>\"", path)
	}
	return out, nil
}

// Previous returns the release before rel in entries.
func Previous(entries []Entry, rel string) (Entry, error) {
	for i, e := range entries {
		if e.Release == rel {
			if i == 0 {
				return Entry{}, fmt.Errorf("release %s is the first one; there is no previous release", rel)
			}
			return entries[i-1], nil
		}
	}
	return Entry{}, fmt.Errorf("release %s is not in RELEASES; add it there", rel)
}

// Index returns rel's position in entries (oldest first), or -1.
func Index(entries []Entry, rel string) int {
	for i, e := range entries {
		if e.Release == rel {
			return i
		}
	}
	return -1
}
