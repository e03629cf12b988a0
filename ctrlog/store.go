package ctrlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Defaults of the rotation (the worker's --log-max-size and --log-max-files).
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 5
)

// A container's log directory holds output.log (the newest) and up to
// MaxFiles-1 older files output.log.1 (the next newest), output.log.2, ...
const currentName = "output.log"

// Files are the log files in dir, oldest first.
func Files(dir string) []string {
	var files []string
	for i := 1; ; i++ {
		p := rotated(dir, i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append(files, p)
	}
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	return append(files, filepath.Join(dir, currentName))
}

func rotated(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%d", currentName, i))
}

// writer appends records to a container's log, rotating by size. Its
// files belong to the owner of dir: the logger runs as root (the shim's
// user), the worker that reads them need not.
type writer struct {
	mu       sync.Mutex
	dir      string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	buf      []byte
}

func openWriter(dir string, maxSize int64, maxFiles int) (*writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxFiles < 1 {
		maxFiles = DefaultMaxFiles
	}
	w := &writer{dir: dir, maxSize: maxSize, maxFiles: maxFiles}
	return w, w.open()
}

func (w *writer) open() error {
	p := filepath.Join(w.dir, currentName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	if st, err := os.Stat(w.dir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(sys.Uid), int(sys.Gid))
		}
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, info.Size()
	return nil
}

// write appends r, timed now, then rotates when the file reached the size bound.
func (w *writer) write(r Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Timed under the lock: the files' order is the times' order.
	r.Time = time.Now()
	w.buf = appendRecord(w.buf[:0], r)
	n, err := w.f.Write(w.buf)
	w.size += int64(n)
	if err != nil {
		return err
	}
	if w.size >= w.maxSize {
		return w.rotate()
	}
	return nil
}

func (w *writer) rotate() error {
	_ = w.f.Close()
	// The oldest beyond the bound goes, each other moves one up.
	_ = os.Remove(rotated(w.dir, w.maxFiles-1))
	for i := w.maxFiles - 2; i >= 1; i-- {
		_ = os.Rename(rotated(w.dir, i), rotated(w.dir, i+1))
	}
	cur := filepath.Join(w.dir, currentName)
	if w.maxFiles > 1 {
		_ = os.Rename(cur, rotated(w.dir, 1))
	} else {
		_ = os.Remove(cur)
	}
	return w.open()
}

func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// lastRecord is the last record in dir's files, if any.
func lastRecord(dir string) (Record, bool) {
	files := Files(dir)
	for i := len(files) - 1; i >= 0; i-- {
		if r, ok := lastRecordOf(files[i]); ok {
			return r, true
		}
	}
	return Record{}, false
}

func lastRecordOf(path string) (Record, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return Record{}, false
	}
	// A record is at most MaxLine plus its prefix.
	n := min(info.Size(), MaxLine+128)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, info.Size()-n); err != nil && err != io.EOF {
		return Record{}, false
	}
	lines := bytes.Split(bytes.TrimSuffix(buf, []byte{'\n'}), []byte{'\n'})
	for i := len(lines) - 1; i >= 0; i-- {
		if r, ok := parseRecord(lines[i]); ok {
			return r, true
		}
	}
	return Record{}, false
}
