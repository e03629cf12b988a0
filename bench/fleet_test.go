package main

import (
	"os"
	"os/exec"
	"testing"
)

// A process's tree counts its children: PostgreSQL's backends.
func TestSampleTreeCountsChildren(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	tree, err := sampleTree(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	// Counted by process, not by RSS: a just-exec'd child's RSS is smaller
	// than the noise in our own between two samples.
	if tree.procs < 2 {
		t.Errorf("tree counts %d processes: the child %d is not counted", tree.procs, child.Process.Pid)
	}
}

func TestFleetFilesSpreadTheReplicas(t *testing.T) {
	dir := t.TempDir()
	files, err := fleetFiles(dir, fleetConfig{Replicas: 7, Nodes: 3, Deployments: 2})
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v, %v; want 2", files, err)
	}
	b, _ := os.ReadFile(files[0])
	// Nodes 1 and 3 go to the first deployment: 3 and 2 replicas.
	want := "version: v1\ndeployment: fleet-01\nservices:\n  s001:\n    rtype: service\n    image: { name: sim, pull_policy: never }\n    node: sim-001\n    scale: { mode: fixed, replicas: 3 }\n  s003:\n    rtype: service\n    image: { name: sim, pull_policy: never }\n    node: sim-003\n    scale: { mode: fixed, replicas: 2 }\n"
	if string(b) != want {
		t.Errorf("fleet-01.yaml:\n%s\nwant:\n%s", b, want)
	}
}
