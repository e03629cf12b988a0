package workflows

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/vigil-run/vigil/internal/historyfile"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/version"
)

// v020SupervisionInput is SupervisionInput as release v0.2.0 declares it
// (81330dd), before ReplicaConfig was embedded in it, frozen here.
type v020SupervisionInput struct {
	ID                 replica.ID            `json:"id"`
	Spec               runtime.ContainerSpec `json:"spec"`
	Policy             policy.Policy         `json:"policy"`
	Node               string                `json:"node"`
	IsolateWebhook     string                `json:"isolate_webhook,omitempty"`
	StopGrace          time.Duration         `json:"stop_grace,omitempty"`
	ContinueAsNewAfter int                   `json:"continue_as_new_after,omitempty"`
	ContinueAsNewEvery time.Duration         `json:"continue_as_new_every,omitempty"`
	Generation         int                   `json:"generation,omitempty"`
	Carry              *Carry                `json:"carry,omitempty"`
}

// The supervision input (with its carried state) of every recorded replica
// run, and the one each hands to its next run, is written today as v0.2.0
// wrote it, byte for byte: v0.2.0 and later workers exchange it, and it
// embeds ReplicaConfig now.
func TestSupervisionInputRoundTripsRecordedOnes(t *testing.T) {
	dc := humanjson.DataConverter()
	n := 0
	for _, release := range releasedHistories(t) {
		hs, err := historyfile.Read(filepath.Join("testdata", "histories", release))
		if err != nil {
			t.Fatal(err)
		}
		for f, h := range hs {
			for _, ev := range h.GetEvents() {
				var in *commonpb.Payloads
				if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil && a.GetWorkflowType().GetName() == replica.SupervisorWorkflowName {
					in = a.GetInput()
				}
				if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil && a.GetWorkflowType().GetName() == replica.SupervisorWorkflowName {
					in = a.GetInput()
				}
				if in == nil {
					continue
				}
				var now SupervisionInput
				var then v020SupervisionInput
				if err := dc.FromPayload(in.GetPayloads()[0], &now); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if err := dc.FromPayload(in.GetPayloads()[0], &then); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				a, err := dc.ToPayload(now)
				if err != nil {
					t.Fatal(err)
				}
				b, err := dc.ToPayload(then)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.GetData(), b.GetData()) {
					t.Errorf("%s: supervision input changed on the wire:\nv0.2.0 %s\nnow    %s", f, b.GetData(), a.GetData())
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no supervision input recorded")
	}
}

// releasedHistories lists the releases whose recorded histories are kept
// (testdata/histories/<release>), but for the one in development
// (version.Release), whose payloads may have grown.
func releasedHistories(t *testing.T) []string {
	t.Helper()
	dirs, err := os.ReadDir(filepath.Join("testdata", "histories"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if d.IsDir() && d.Name() != "retired" && d.Name() != version.Release {
			out = append(out, d.Name())
		}
	}
	return out
}
