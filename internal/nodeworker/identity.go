package nodeworker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
)

// A node's identity is a uuid kept in its state dir: it stays with the
// host across restarts and reboots, and a second host with the same node
// name (a cloned VM, the default --node) has another. Each worker process
// is an instance (a uuid of its own). The last accepted instance is
// recorded beside the identity, so that a worker restarted on the same host
// can say which instance it replaces.
const (
	nodeIDFile   = "node-id"
	instanceFile = "worker-instance.json"
	bootIDPath   = "/proc/sys/kernel/random/boot_id"
	workerComm   = "vigil-worker"
)

// Identity is a worker's identity on its node.
type Identity struct {
	NodeID, Instance string
	// Replaces is the previous instance on this host, ended (see
	// workflows.Claim); empty when unknown.
	Replaces string
	// Rebooted is the instance recorded here during an earlier boot: a
	// claim it still holds (it looks alive until it has been silent a
	// minute) is this host's before a reboot, or a cloned VM's.
	Rebooted string
	dir      string
}

// instanceRecord is the last accepted instance of this state dir.
type instanceRecord struct {
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
	BootID   string `json:"boot_id"`
}

// LoadIdentity reads the node identity in stateDir, making it on first
// use, and names a new instance.
func LoadIdentity(stateDir string) (Identity, error) {
	id := Identity{Instance: uuid.NewString(), dir: stateDir}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return id, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(stateDir, nodeIDFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id.NodeID = uuid.NewString()
		if err := writeFileAtomic(path, []byte(id.NodeID+"\n")); err != nil {
			return id, fmt.Errorf("node identity: %w", err)
		}
	case err != nil:
		return id, fmt.Errorf("node identity: %w", err)
	default:
		u, err := uuid.Parse(strings.TrimSpace(string(data)))
		if err != nil {
			return id, fmt.Errorf("node identity %s: %w (remove the file to make a new identity)", path, err)
		}
		id.NodeID = u.String()
	}
	var rec instanceRecord
	if data, err := os.ReadFile(filepath.Join(stateDir, instanceFile)); err == nil && json.Unmarshal(data, &rec) == nil {
		// The same boot and its process gone: that instance ended on this
		// host. A copied state dir's record names a live process, or
		// another boot (another host), and replaces nothing.
		switch boot := bootID(); {
		case rec.BootID != "" && rec.BootID == boot && !workerRunning(rec.PID):
			id.Replaces = rec.Instance
		case rec.BootID != boot:
			id.Rebooted = rec.Instance
		}
	}
	return id, nil
}

// Record notes this instance as the state dir's accepted one.
func (id Identity) Record() error {
	data, err := json.Marshal(instanceRecord{Instance: id.Instance, PID: os.Getpid(), BootID: bootID()})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(id.dir, instanceFile), data)
}

func bootID() string {
	data, _ := os.ReadFile(bootIDPath)
	return strings.TrimSpace(string(data))
}

// workerRunning reports whether pid is a running vigil-worker.
func workerRunning(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == workerComm
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
