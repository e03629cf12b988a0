// Package ctrlog keeps what Vigil's containers print: a logger that
// containerd's shim starts per task (capture.go) writes each line with its
// time, stream and run into size-rotated files in the container's log
// directory (store.go); the worker reads them for `vigil logs` (read.go) and
// serves them over an authenticated endpoint (serve.go), never through
// Temporal.
package ctrlog

import (
	"bytes"
	"strconv"
	"time"
)

// Streams of a record. StreamVigil marks the marker line Vigil writes at the
// start of each run; StreamOutput is output kept before Vigil captured it
// itself (a release before v0.3.0: stdout and stderr mixed, no times).
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamVigil  = "vigil"
	StreamOutput = "output"
)

// Record is one line of a container's output.
type Record struct {
	Time   time.Time `json:"time,omitzero"`
	Stream string    `json:"stream"`
	// Run counts the container's task starts, from 1 (0: older output).
	Run  int    `json:"run"`
	Line string `json:"line"`
	// Partial: the line goes on in the next record of its stream (a line
	// longer than MaxLine is cut).
	Partial bool `json:"partial,omitempty"`
}

// MaxLine is the longest line kept as one record.
const MaxLine = 16 << 10

// appendRecord appends r as one line of a log file, in the format of the
// CRI's container logs plus the run: "TIME STREAM RUN F|P LINE\n".
func appendRecord(b []byte, r Record) []byte {
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, r.Stream...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.Run), 10)
	if r.Partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, r.Line...)
	return append(b, '\n')
}

// parseRecord parses one line of a log file (without its newline).
func parseRecord(line []byte) (Record, bool) {
	var f [4][]byte
	rest := line
	for i := range f {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return Record{}, false
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	t, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return Record{}, false
	}
	run, err := strconv.Atoi(string(f[2]))
	if err != nil || (string(f[3]) != "F" && string(f[3]) != "P") {
		return Record{}, false
	}
	return Record{Time: t, Stream: string(f[1]), Run: run, Line: string(rest), Partial: string(f[3]) == "P"}, true
}
