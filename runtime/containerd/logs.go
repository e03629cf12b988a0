package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// trimLog cuts a log file larger than max down to about its last half,
// at a line boundary, with a note saying how much was dropped. The shim
// appends with O_APPEND, so truncating in place is safe while it writes.
func trimLog(path string, max int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() <= max {
		return err
	}
	keep := make([]byte, max/2)
	n, err := f.ReadAt(keep, info.Size()-int64(len(keep)))
	if err != nil && err != io.EOF {
		return err
	}
	keep = keep[:n]
	if i := bytes.IndexByte(keep, '\n'); i >= 0 && i < len(keep)-1 {
		keep = keep[i+1:]
	}
	note := fmt.Sprintf("[vigil: %d bytes of older output dropped]\n", info.Size()-int64(len(keep)))
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(append([]byte(note), keep...), 0)
	return err
}

// Logs returns the last tail lines of the replica's log (all if tail <= 0),
// as text (the logs update of node workflows before v0.3.0).
func (r *Runtime) Logs(ctx context.Context, id replica.ID, tail int) ([]byte, error) {
	l, err := r.Log(id)
	if err != nil {
		return nil, err
	}
	_ = trimLog(l.Legacy, r.cfg.MaxLogBytes) // best effort
	recs, cur, err := l.Read(ctrlog.Query{Tail: tail})
	cur.Close()
	if errors.Is(err, ctrlog.ErrNoLog) {
		// No output yet is not an error; an unknown container is.
		if _, err := r.client.LoadContainer(r.nsCtx(ctx), id.ContainerName()); err != nil {
			return nil, wrap("logs", id.ContainerName(), err, runtime.ErrContainerNotFound)
		}
		return nil, nil
	}
	var out []byte
	for _, rec := range recs {
		out = ctrlog.AppendText(out, rec, false)
	}
	return out, err
}

// trimLogsLoop keeps the logs of long-running, chatty tasks bounded; Start
// trims the log of each new task.
func (r *Runtime) trimLogsLoop() {
	defer close(r.done)
	ticker := time.NewTicker(r.cfg.LogTrimInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
			paths, _ := filepath.Glob(filepath.Join(r.logDir, "*.log"))
			for _, p := range paths {
				_ = trimLog(p, r.cfg.MaxLogBytes)
			}
		}
	}
}
