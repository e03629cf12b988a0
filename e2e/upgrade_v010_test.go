package e2e

import "github.com/vigil-run/vigil/workflows"

// The upgrade test's v0.1.0 variant: its runs record no version marker, its
// CLI has no `vigil version` and no `apply`, and a replica whose first start
// keeps failing reads Restarting. Retiring v0.1.0 deletes this file.
func init() {
	upgradeFrom["v0.1.0"] = releaseTraits{neverStarted: workflows.StateRestarting}
}
