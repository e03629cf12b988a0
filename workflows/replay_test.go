package workflows

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/internal/codec"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
)

// historiesDir holds the histories recorded from real runs of every release:
// histories/<release>/<scenario>.json, recorded with
//
//	go run ./tools/record-histories --release <release> --commit <commit>
//
// (see internal/histories for the scenarios).
const historiesDir = "testdata/histories"

// minV010Histories is the floor for v0.1.0's recorded set.
const minV010Histories = 11

func newReplayer() worker.WorkflowReplayer {
	// Histories of v0.2.0 on carry durations as text (humanjson).
	return newReplayerWith(humanjson.DataConverter())
}

// newReplayerWith replays with the converter dc.
func newReplayerWith(dc converter.DataConverter) worker.WorkflowReplayer {
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: dc})
	if err != nil {
		panic(err) // the options are fixed: this is a programming error
	}
	r.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	r.RegisterWorkflowWithOptions(FetchLogs, workflow.RegisterOptions{Name: replica.FetchLogsWorkflowName})
	r.RegisterWorkflowWithOptions(Deployment, workflow.RegisterOptions{Name: replica.DeploymentWorkflowName})
	r.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	return r
}

// TestReplayEveryRelease replays every recorded history of every release with
// today's code: a change to the commands Supervise issues that is not behind
// a version check (versions.go) fails here, in make test, before it can break
// a replica that runs in the field.
func TestReplayEveryRelease(t *testing.T) {
	releases, err := os.ReadDir(historiesDir)
	if err != nil {
		t.Fatal(err)
	}
	keyed, err := codec.Parse([]byte("k1: " + base64.StdEncoding.EncodeToString(make([]byte, codec.KeySize))))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, rel := range releases {
		if !rel.IsDir() || rel.Name() == "retired" {
			continue
		}
		files, err := filepath.Glob(filepath.Join(historiesDir, rel.Name(), "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(historiesDir, rel.Name(), "COMMIT")); err != nil {
			t.Errorf("%s: no COMMIT file naming the commit its histories were recorded from", rel.Name())
		}
		if rel.Name() == "v0.1.0" && len(files) < minV010Histories {
			t.Errorf("v0.1.0: %d recorded histories, want at least %d", len(files), minV010Histories)
		}
		for _, f := range files {
			name := rel.Name() + "/" + strings.TrimSuffix(filepath.Base(f), ".json")
			t.Run(name, func(t *testing.T) {
				if err := newReplayer().ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
					t.Fatalf("replay of %s: %v", f, err)
				}
				// A worker given a key file replays them too: their plain
				// payloads pass through the codec.
				if err := newReplayerWith(keyed.DataConverter(humanjson.DataConverter())).ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
					t.Fatalf("replay of %s with a codec key: %v", f, err)
				}
			})
			total++
		}
	}
	t.Logf("replayed %d recorded histories", total)
}
