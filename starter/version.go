package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vigil-run/vigil/version"
)

// VersionResult is what `vigil version --json` prints.
type VersionResult struct {
	Release string `json:"release"`
	Commit  string `json:"commit"`
}

func versionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print vigil's release and the commit it was built from",
		Args:  cobra.NoArgs,
		// No connection is needed: skip the root's checks of the connection flags.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(*cobra.Command, []string) error {
			p := a.printer()
			if p.json {
				return p.JSON(VersionResult{Release: version.Release, Commit: version.Commit()})
			}
			_, err := fmt.Fprintln(p.out, "vigil "+version.String())
			return err
		},
	}
}
