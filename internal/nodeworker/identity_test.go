package nodeworker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestNodeIdentity(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.NodeID == "" || first.Instance == "" || first.Replaces != "" || first.Rebooted != "" {
		t.Fatalf("first start: %+v; want a new identity and instance, replacing nothing", first)
	}
	if err := first.Record(); err != nil {
		t.Fatal(err)
	}
	// The recorded process is this test, not a vigil-worker: it has ended.
	again, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.NodeID != first.NodeID || again.Instance == first.Instance || again.Replaces != first.Instance {
		t.Fatalf("restart: %+v; want the same identity, a new instance replacing %s", again, first.Instance)
	}
	// Recorded during another boot: a reboot (or a cloned VM) replaces
	// nothing; the claim may wait for that instance to go silent.
	rec, _ := json.Marshal(instanceRecord{Instance: "before", PID: 1, BootID: "another-boot"})
	if err := os.WriteFile(filepath.Join(dir, instanceFile), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	rebooted, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rebooted.Replaces != "" || rebooted.Rebooted != "before" {
		t.Fatalf("after a reboot: %+v; want Rebooted before, replacing nothing", rebooted)
	}
	if err := os.WriteFile(filepath.Join(dir, nodeIDFile), []byte("not a uuid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(dir); err == nil {
		t.Fatal("a damaged node-id file is taken")
	}
}
