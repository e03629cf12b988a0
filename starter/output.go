package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// printer writes command results either as tables for people or, with
// --json, as one JSON document for scripts. Nothing else goes to stdout.
type printer struct {
	out  io.Writer
	json bool
}

// JSON writes v as indented JSON.
func (p printer) JSON(v any) error {
	enc := json.NewEncoder(p.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table writes rows under a header, aligned in columns.
func (p printer) Table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// Fields writes label/value pairs aligned, one per line.
func (p printer) Fields(pairs [][2]string) error {
	tw := tabwriter.NewWriter(p.out, 0, 4, 2, ' ', 0)
	for _, kv := range pairs {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

// orDash shows empty values as "-" so table columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func exitText(code *int) string {
	if code == nil {
		return "-"
	}
	return fmt.Sprint(*code)
}

// lastExitText is the last exit's code with its reason and signal, e.g.
// "137 (OOMKilled, SIGKILL)".
func lastExitText(v workflows.StateView) string {
	text := exitText(v.LastExitCode)
	if v.LastExitReason == nil {
		return text
	}
	why := *v.LastExitReason
	if v.LastExitSignal != nil {
		why += ", " + *v.LastExitSignal
	}
	return text + " (" + why + ")"
}

// exitReasonText is the last exit in a list's column: the code and why,
// short ("137 OOMKilled", "143 SIGTERM"; a plain exit is its code).
func exitReasonText(v workflows.StateView) string {
	text := exitText(v.LastExitCode)
	switch {
	case v.LastExitCode == nil || v.LastExitReason == nil || *v.LastExitReason == string(runtime.ExitExited):
		return text
	case *v.LastExitReason == string(runtime.ExitSignaled) && v.LastExitSignal != nil:
		return text + " " + *v.LastExitSignal
	}
	return text + " " + *v.LastExitReason
}

// Times in tables are in the local zone, and say which zone that is.
const (
	timeLayout       = "2006-01-02 15:04:05 -07:00"
	timeLayoutMillis = "2006-01-02 15:04:05.000 -07:00"
)

// shortTime shows an RFC 3339 time in the local zone to the second.
func shortTime(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return orDash(rfc3339)
	}
	return t.Local().Format(timeLayout)
}
