package ctrlog

import (
	"time"
)

// MarkerPrefix starts a run marker in text output.
const MarkerPrefix = "[vigil] "

// AppendText appends r as `vigil logs` prints it: the line as written (a
// run marker after MarkerPrefix), with its time first when timestamps.
func AppendText(b []byte, r Record, timestamps bool) []byte {
	if timestamps && !r.Time.IsZero() {
		b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
	}
	if r.Stream == StreamVigil {
		b = append(b, MarkerPrefix...)
	}
	b = append(b, r.Line...)
	if !r.Partial {
		b = append(b, '\n')
	}
	return b
}
