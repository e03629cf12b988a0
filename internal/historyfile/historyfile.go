// Package historyfile reads recorded workflow histories (JSON files) for
// tests that look into their payloads.
package historyfile

import (
	"fmt"
	"os"
	"path/filepath"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

// Read returns the recorded histories of one release, by file name, from
// dir (workflows/testdata/histories/<release>).
func Read(dir string) (map[string]*historypb.History, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no recorded histories in %s: %v", dir, err)
	}
	out := make(map[string]*historypb.History, len(files))
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out[filepath.Base(f)] = h
	}
	return out, nil
}
