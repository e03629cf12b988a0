package ctrlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
	"github.com/containerd/containerd/v2/pkg/cio"
)

// captureArg, first on the logger's command line, tells a Vigil binary
// that containerd's shim started it as a task's logger.
const captureArg = "vigil-capture-logs"

// Any binary that links this package (the worker, and the test binaries
// that start containers) is also the logger: the shim runs it with the
// task's stdout and stderr pipes, and CaptureIO names the running binary.
// Nothing else to install, and its path is absolute and the shim's own.
func init() {
	if len(os.Args) == 3 && os.Args[1] == captureArg && os.Getenv("CONTAINER_ID") != "" {
		logging.Run(func(ctx context.Context, cfg *logging.Config, ready func() error) error {
			var a CaptureArgs
			if err := json.Unmarshal([]byte(os.Args[2]), &a); err != nil {
				_ = ready()
				drain(cfg.Stdout, cfg.Stderr)
				return fmt.Errorf("vigil logger: bad arguments: %v", err)
			}
			return capture(ctx, a, cfg.Stdout, cfg.Stderr, ready)
		})
	}
}

// CaptureArgs tell the logger of one task where and how to keep its output.
type CaptureArgs struct {
	// Dir is the container's log directory (made by the worker).
	Dir      string `json:"dir"`
	MaxSize  int64  `json:"max_size,omitempty"`
	MaxFiles int    `json:"max_files,omitempty"`
	// StartedAt is when the worker began the start; PreviousExit says how
	// the task before this one ended ("" when unknown).
	StartedAt    time.Time `json:"started_at"`
	PreviousExit string    `json:"previous_exit,omitempty"`
}

// CaptureIO is the task IO that hands the task's output to the logger
// binary (this one, or its copy made by InstallLogger), which the shim
// starts as a containerd binary logger.
func CaptureIO(binary string, a CaptureArgs) (cio.Creator, error) {
	arg, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return cio.BinaryIO(binary, map[string]string{captureArg: string(arg)}), nil
}

// InstallLogger returns the logger binary the shim is to start: this
// binary when path is empty, else a copy of it at path, written if what is
// there differs (a worker in a container puts it where the host's shim
// finds it). The copy replaces the file by a rename: loggers running the
// old one go on.
func InstallLogger(path string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("the worker's own path (the shim starts it as the containers' logger): %w", err)
	}
	if path == "" {
		return self, nil
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("logger path %q: want an absolute path on containerd's host", path)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return path, nil
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, want, 0o755); err != nil {
		return "", fmt.Errorf("logger path %s: %w; give a directory the worker can write", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("logger path %s: %w", path, err)
	}
	return path, nil
}

// drainGrace bounds how long output is still read once the shim asked the
// logger to stop (it kills it after 12 s): the task has exited by then, so
// its pipes end at once unless a process it left holds them.
const drainGrace = 10 * time.Second

// capture keeps the task's output in a.Dir until both streams end.
func capture(ctx context.Context, a CaptureArgs, stdout, stderr io.Reader, ready func() error) error {
	// Ready at once: the task never waits for the log (only the pipes'
	// buffers wait while a logger of the task before finishes).
	if err := ready(); err != nil {
		return err
	}
	w, unlock, err := openLog(a)
	if err != nil {
		drain(stdout, stderr)
		return err
	}
	defer unlock()
	defer w.Close()
	run := 1
	if last, ok := lastRecord(a.Dir); ok {
		run = last.Run + 1
	}
	marker := fmt.Sprintf("run %d at %s", run, a.StartedAt.UTC().Format(time.RFC3339Nano))
	if a.PreviousExit != "" && run > 1 {
		marker += fmt.Sprintf("; run %d ended: %s", run-1, a.PreviousExit)
	}
	_ = w.write(Record{Stream: StreamVigil, Run: run, Line: marker})

	done := make(chan struct{})
	var wg sync.WaitGroup
	for stream, r := range map[string]io.Reader{StreamStdout: stdout, StreamStderr: stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			copyLines(w, stream, run, r)
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(drainGrace):
		}
	}
	return nil
}

// openLog opens a.Dir's log for this logger alone: a logger of the task
// before may still be writing its last lines.
func openLog(a CaptureArgs) (*writer, func(), error) {
	lock, err := os.OpenFile(filepath.Join(a.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, nil, err
	}
	unlock := func() { _ = lock.Close() }
	w, err := openWriter(a.Dir, a.MaxSize, a.MaxFiles)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return w, unlock, nil
}

// copyLines writes each line of r as a record; a line longer than MaxLine
// becomes several, and a last line without newline is kept too.
func copyLines(w *writer, stream string, run int, r io.Reader) {
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		line, more, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !more) {
			// A write that fails (a full disk) loses this line, not the task.
			_ = w.write(Record{Stream: stream, Run: run, Line: string(line), Partial: more})
		}
		if err != nil {
			return
		}
	}
}

// drain reads both streams to their end, so the task never blocks on them.
func drain(rs ...io.Reader) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, r) }()
	}
	wg.Wait()
}
