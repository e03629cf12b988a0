// Package cluster runs Vigil's production path on one machine, from Debian
// packages and Go modules only: PostgreSQL (Debian's package) with a private
// data directory, the Temporal server built from source with its four
// services (frontend, history, matching, worker) as separate processes, the
// Temporal Web UI server, and Vigil nodes, each a private containerd and a
// vigil-worker. `make cluster` (tools/cluster), the cluster tests
// (e2e/cluster) and `make bench --cluster` all start it through this package.
//
// Every process is started detached or tied to the caller (Options.Detach)
// and recorded in a pid file under Dir/run, so a later process (make
// cluster-stop) can find and stop it, and a test can kill one part and start
// it again.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// VersionsFile holds the versions of the Temporal parts, relative to the
// repository: docker-compose.yml reads it too (compose loads .env).
const VersionsFile = ".env"

// Versions are the pinned releases.
type Versions struct {
	Temporal string // go.temporal.io/server and the temporalio/server image, without "v"
	UI       string // github.com/temporalio/ui-server/v2 and the temporalio/ui image
	Postgres string // PostgreSQL major version
}

// ReadVersions reads the pinned versions from the repository's .env.
func ReadVersions(repo string) (Versions, error) {
	path := filepath.Join(repo, VersionsFile)
	env, err := dotenv.Read(path)
	if err != nil {
		return Versions{}, fmt.Errorf("%s: %w; the file pins TEMPORAL_VERSION, TEMPORAL_UI_VERSION and POSTGRES_VERSION", path, err)
	}
	v := Versions{Temporal: env["TEMPORAL_VERSION"], UI: env["TEMPORAL_UI_VERSION"], Postgres: env["POSTGRES_VERSION"]}
	for _, kv := range [][2]string{{"TEMPORAL_VERSION", v.Temporal}, {"TEMPORAL_UI_VERSION", v.UI}, {"POSTGRES_VERSION", v.Postgres}} {
		if kv[1] == "" || strings.HasPrefix(kv[1], "v") {
			return v, fmt.Errorf("%s: %s is %q; set it to a release without the leading v, e.g. 1.31.0", path, kv[0], kv[1])
		}
	}
	return v, nil
}

// ErrNotBuilt means a Temporal binary is not in the cache yet; Build makes it.
var ErrNotBuilt = errors.New("not built yet")

// BinDir is the cache every clone shares, as scripts/lib.sh has it.
func BinDir() string {
	if d := os.Getenv("VIGIL_BIN"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "vigil", "bin")
}

// Binaries are the built Temporal programs, one directory per version so
// a version change builds anew and older clones keep theirs.
type Binaries struct {
	Server  string // temporal-server
	SQLTool string // temporal-sql-tool (deploy/cluster/schema.sh runs it from PATH)
	UI      string // temporal-ui-server
}

// Binaries says where the versions' programs live in the cache.
func (v Versions) Binaries() Binaries {
	server := filepath.Join(BinDir(), "temporal-server-"+v.Temporal)
	return Binaries{
		Server:  filepath.Join(server, "temporal-server"),
		SQLTool: filepath.Join(server, "temporal-sql-tool"),
		UI:      filepath.Join(BinDir(), "temporal-ui-server-"+v.UI, "temporal-ui-server"),
	}
}

// Missing lists the binaries not built yet.
func (b Binaries) Missing() []string {
	var out []string
	for _, p := range []string{b.Server, b.SQLTool, b.UI} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			out = append(out, p)
		}
	}
	return out
}

// PostgresBin is the directory of Debian's PostgreSQL programs of the major
// version pinned.
func (v Versions) PostgresBin() (string, error) {
	dir := filepath.Join("/usr/lib/postgresql", v.Postgres, "bin")
	if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
		return "", fmt.Errorf("PostgreSQL %s is not installed (%s/postgres missing); run scripts/ensure-deps.sh or apt-get install postgresql-%s", v.Postgres, dir, v.Postgres)
	}
	return dir, nil
}
