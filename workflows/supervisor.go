// Package workflows holds the durable supervisor: one workflow per replica.
package workflows

import (
	"errors"

	"go.temporal.io/sdk/workflow"
)

// Supervise supervises one container replica until it completes or is unsupervised.
func Supervise(ctx workflow.Context, in SupervisionInput) error {
	return errors.New("not implemented yet")
}

// FetchLogs runs the Logs activity on the replica's node and returns its output.
func FetchLogs(ctx workflow.Context, in FetchLogsInput) (string, error) {
	return "", errors.New("not implemented yet")
}
