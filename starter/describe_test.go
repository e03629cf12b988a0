package main

import (
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
)

// A namespace without Vigil's search attributes gets the fix in the error;
// any other invalid argument does not.
func TestDescribeErrUnknownSearchAttribute(t *testing.T) {
	missing := fmt.Errorf("start: %w", serviceerror.NewInvalidArgument("search attribute VigilState is not defined"))
	if got := describeErr("shop/api-rep-1", missing).Error(); !strings.Contains(got, "start vigil-worker once") {
		t.Errorf("missing search attribute: %q", got)
	}
	other := serviceerror.NewInvalidArgument("workflow ID is too long")
	if got := describeErr("shop/api-rep-1", other).Error(); strings.Contains(got, "vigil-worker") {
		t.Errorf("other invalid argument: %q", got)
	}
	if exitCode(describeErr("shop/api-rep-1", missing)) != exitFail {
		t.Error("not a failure")
	}
}
