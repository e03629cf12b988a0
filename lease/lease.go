// Package lease is a node's lease as its host sees it: the file the worker
// writes after each successful renewal (its node watch's heartbeat, which the
// server records when it receives it), and what the fence of each movable
// container reads to tell whether its node may still run it.
//
// Times are on the host's boot clock (CLOCK_BOOTTIME): monotonic, the same
// for every process and container of the host, and, unlike CLOCK_MONOTONIC,
// it runs on while the host is suspended, as the server's clock does. A
// renewal's time is taken before its request is sent, so it is never later
// than the time the server records.
//
// It depends on little beyond the standard library: the fence binary
// (vigil-fence) that runs in every movable container links it.
package lease

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is the lease's directory in a node's state dir (vigil-worker --state-dir).
func Dir(stateDir string) string { return filepath.Join(stateDir, "lease") }

// FileName is the lease file's name in the lease directory (the directory
// is what a container gets mounted, read-only: a file is replaced by a
// rename, which a bind mount of the file itself would not see).
const FileName = "lease"

// Lease is one successful renewal.
type Lease struct {
	Node string `json:"node"`
	// Sent is the boot-clock time at which the renewal was sent.
	Sent time.Duration `json:"sent_boottime_ns"`
	// At is the same moment on the wall clock, for people reading the file.
	At time.Time `json:"at"`
}

// Now is the boot clock's time.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_BOOTTIME): %v", err)) // never fails on Linux
	}
	return time.Duration(ts.Nano())
}

// Age is how long ago l was sent.
func (l Lease) Age() time.Duration { return Now() - l.Sent }

// Write replaces the lease in dir (created if missing) atomically.
func Write(dir string, l Lease) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+FileName+"-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, FileName))
}

// Read reads the lease in dir. A missing file is fs.ErrNotExist.
func Read(dir string) (Lease, error) {
	var l Lease
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("lease file %s: %w", filepath.Join(dir, FileName), err)
	}
	return l, nil
}

// FencedExit is the exit status of a container its fence ended (as if
// SIGKILLed: 128+9).
const FencedExit = 137

// Renewal is how often a node renews its lease: 720 requests per node-hour.
const Renewal = 5 * time.Second

// MinMargin is the least time by which a movable replica's fence precedes
// its move.
const MinMargin = 5 * time.Second

// FenceAfter is the lease age at which a movable replica with lostAfter is
// fenced on its node: lostAfter minus a margin of MinMargin or a fifth of
// lostAfter, whichever is more. The node times the age from the send of
// its last successful renewal and the server from receiving it, later, so
// the node's copy is gone at least the margin before the replacement starts
// (the margin absorbs the fence's polling, the kill, and the two clocks'
// drift).
func FenceAfter(lostAfter time.Duration) time.Duration {
	return lostAfter - max(MinMargin, lostAfter/5)
}
