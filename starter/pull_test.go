package main

import (
	"bytes"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// A start that pulls shows the pull's progress, from its heartbeat; a
// worker of an earlier release heartbeats plain text, which shows nothing.
func TestStatusShowsPullProgress(t *testing.T) {
	dc := humanjson.DataConverter()
	pending := func(details any) *workflowservice.DescribeWorkflowExecutionResponse {
		payloads, err := dc.ToPayloads(details)
		if err != nil {
			t.Fatal(err)
		}
		return &workflowservice.DescribeWorkflowExecutionResponse{PendingActivities: []*workflow.PendingActivityInfo{{
			ActivityType:     &commonpb.ActivityType{Name: replica.EnsureRunningName},
			HeartbeatDetails: payloads,
		}}}
	}
	if p := pullInProgress(dc, pending("starting")); p != nil {
		t.Errorf("plain text heartbeat: %+v, want no pull", p)
	}
	if p := pullInProgress(dc, pending(activities.StartProgress{Doing: "starting"})); p != nil {
		t.Errorf("a start that does not pull: %+v, want no pull", p)
	}
	pull := pullInProgress(dc, pending(activities.StartProgress{Doing: "pulling", PullImage: "reg.example/app:v2", PullBytes: 12_300_000}))
	if pull == nil || *pull != (pullJSON{Image: "reg.example/app:v2", BytesReceived: 12_300_000}) {
		t.Fatalf("pulling: %+v", pull)
	}
	var out bytes.Buffer
	if err := printStatus(printer{out: &out}, workflows.StateView{ID: "shop/app-rep-1"}, supervision{pull: pull}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "reg.example/app:v2: 12.3MB received") {
		t.Errorf("status table:\n%s", out.String())
	}
}
