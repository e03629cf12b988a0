package activities_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/historyfile"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// recordedPayloads returns the JSON of every exit signal and of every
// completed activity of type activity in the recorded histories of release.
func recordedPayloads(t *testing.T, release, activity string) (signals, results [][]byte) {
	t.Helper()
	hs, err := historyfile.Read(filepath.Join("..", "workflows", "testdata", "histories", release))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		types := map[int64]string{}
		for _, ev := range h.GetEvents() {
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
				types[ev.GetEventId()] = a.GetActivityType().GetName()
			}
			if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == replica.SignalExit {
				signals = append(signals, a.GetInput().GetPayloads()[0].GetData())
			}
			if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && types[a.GetScheduledEventId()] == activity {
				results = append(results, a.GetResult().GetPayloads()[0].GetData())
			}
		}
	}
	return signals, results
}

// roundTrip decodes data into a new T and encodes it again: the bytes must
// come back as they were recorded.
func roundTrip[T any](t *testing.T, what string, data []byte) {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s %s: %v", what, data, err)
	}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s changed on the wire:\nrecorded %s\nnow      %s", what, data, got)
	}
}

// The exit signal and the Stop result (recorded by v0.2.0) read and write the
// very bytes the recorded histories hold: v0.2.0 and later workers exchange
// them, and carried state holds exit signals. (The WaitForExit result of
// v0.1.0 runs: wire_v010_test.go.)
func TestExitPayloadsRoundTripRecordedOnes(t *testing.T) {
	signals, stops := recordedPayloads(t, "v0.2.0", replica.StopName)
	if len(signals) == 0 || len(stops) == 0 {
		t.Fatalf("recorded: %d exit signals, %d Stop results; want some of each", len(signals), len(stops))
	}
	for _, s := range signals {
		roundTrip[activities.ExitReport](t, "exit signal", s)
	}
	for _, s := range stops {
		roundTrip[runtime.Exit](t, "Stop result", s)
	}
}

// v020ExitReport is the exit signal's type as release v0.2.0 declares it
// (activities.ExitReport at 81330dd), frozen here.
type v020ExitReport struct {
	ID        replica.ID         `json:"id"`
	ExitCode  int                `json:"exit_code"`
	ExitedAt  time.Time          `json:"exited_at"`
	Reason    string             `json:"reason,omitempty"`
	OOMKilled bool               `json:"oom_killed,omitempty"`
	Cause     runtime.ExitReason `json:"cause,omitempty"`
	Signal    string             `json:"signal,omitempty"`
	StartedAt time.Time          `json:"started_at,omitzero"`
	PID       uint32             `json:"pid,omitempty"`
}

// An exit with every field set (an OOM kill, which the recordings lack)
// carries the same keys and values both ways between v0.2.0's type and
// today's; only oom_killed's place among the keys moves.
func TestExitSignalMatchesV020EveryField(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 5, time.UTC)
	old := v020ExitReport{ID: replica.ID{Deployment: "d", Service: "s", Replica: 2}, ExitCode: 137, ExitedAt: at,
		Reason: "r", OOMKilled: true, Cause: runtime.ExitOOMKilled, Signal: "SIGKILL", StartedAt: at.Add(-time.Minute), PID: 42}
	oldJSON, _ := json.Marshal(old)
	var now activities.ExitReport
	if err := json.Unmarshal(oldJSON, &now); err != nil {
		t.Fatal(err)
	}
	nowJSON, _ := json.Marshal(now)
	var back v020ExitReport
	if err := json.Unmarshal(nowJSON, &back); err != nil {
		t.Fatal(err)
	}
	if back != old {
		t.Errorf("v0.2.0 -> now -> v0.2.0:\n%+v\nwant\n%+v", back, old)
	}
	var a, b map[string]any
	_ = json.Unmarshal(oldJSON, &a)
	_ = json.Unmarshal(nowJSON, &b)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("keys differ:\nv0.2.0 %s\nnow    %s", oldJSON, nowJSON)
	}
}
