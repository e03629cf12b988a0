package ctrlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Query selects the records a read returns.
type Query struct {
	// Tail: only the last Tail records (all when 0).
	Tail int
	// Since: only records written at or after it (none of the output kept
	// before v0.3.0, which has no times).
	Since time.Time
	// Previous: only the run before the last one.
	Previous bool
}

// ErrNoLog: the container has no output kept on this node.
var ErrNoLog = errors.New("no output kept")

// Log is one container's kept output: Dir is its log directory, Legacy the
// file a release before v0.3.0 wrote (containerd's own log file).
type Log struct {
	Dir, Legacy string
}

// Read returns the records q selects, oldest first, and where a follow
// goes on from.
func (l Log) Read(q Query) ([]Record, *Cursor, error) {
	run := -1
	if q.Previous {
		last, ok := lastRecord(l.Dir)
		if !ok {
			last.Run = 1 // the legacy output, if any, is the run before the first
		}
		run = last.Run - 1
	}
	var out []Record
	keep := func(r Record) {
		if (run >= 0 && r.Run != run) || (!q.Since.IsZero() && r.Time.Before(q.Since)) {
			return
		}
		out = append(out, r)
		if q.Tail > 0 && len(out) >= 2*q.Tail {
			out = append(out[:0], out[len(out)-q.Tail:]...)
		}
	}
	found := false
	if data, err := os.ReadFile(l.Legacy); err == nil {
		found = true
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
			keep(Record{Stream: StreamOutput, Line: string(line)})
		}
	}
	files := Files(l.Dir)
	var cur *Cursor
	for i, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue // not yet made, or rotated away meanwhile
		}
		found = true
		c := &Cursor{path: p, f: f, br: bufio.NewReaderSize(f, MaxLine+256)}
		c.readAll(keep)
		if i == len(files)-1 {
			cur = c
		} else {
			f.Close()
		}
	}
	if cur == nil {
		cur = &Cursor{path: files[len(files)-1]}
	}
	if !found {
		if _, err := os.Stat(l.Dir); err != nil {
			return nil, cur, ErrNoLog
		}
	}
	if q.Tail > 0 && len(out) > q.Tail {
		out = out[len(out)-q.Tail:]
	}
	return out, cur, nil
}

// Cursor follows the newest log file across rotations.
type Cursor struct {
	path string
	f    *os.File
	br   *bufio.Reader
	part []byte // a line read without its newline yet
}

// readAll passes each complete record up to the end of the file to fn.
func (c *Cursor) readAll(fn func(Record)) {
	for {
		line, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			c.part = append(c.part, line...)
			continue
		}
		if err != nil {
			c.part = append(c.part, line...) // the writer is mid-line
			return
		}
		if len(c.part) > 0 {
			line = append(c.part, line...)
			c.part = c.part[:0]
		}
		if r, ok := parseRecord(line[:len(line)-1]); ok {
			fn(r)
		}
	}
}

// followPoll is how often a follow looks for new output.
const followPoll = 200 * time.Millisecond

// Follow passes each new record to fn until ctx ends or fn fails, going on
// in the next file when the log rotates.
func (c *Cursor) Follow(ctx context.Context, fn func(Record) error) error {
	defer c.Close()
	var fnErr error
	emit := func(r Record) {
		if fnErr == nil {
			fnErr = fn(r)
		}
	}
	for {
		if c.f == nil {
			if f, err := os.Open(c.path); err == nil {
				c.f, c.br, c.part = f, bufio.NewReaderSize(f, MaxLine+256), nil
			}
		}
		if c.f != nil {
			c.readAll(emit)
			if fnErr != nil {
				return fnErr
			}
			if c.rotated() {
				c.readAll(emit) // what was written before the rename
				c.f.Close()
				c.f = nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// rotated: the path names another file than the one open.
func (c *Cursor) rotated() bool {
	a, err := c.f.Stat()
	if err != nil {
		return true
	}
	b, err := os.Stat(c.path)
	return err == nil && !os.SameFile(a, b)
}

// Close releases the open file.
func (c *Cursor) Close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// Dir is the log directory of container name under the runtime's log dir
// (one per containerd namespace), Legacy its log file before v0.3.0.
func Dir(logDir, name string) string    { return filepath.Join(logDir, name) }
func Legacy(logDir, name string) string { return filepath.Join(logDir, name+".log") }
