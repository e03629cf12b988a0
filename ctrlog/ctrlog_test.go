package ctrlog

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runTask captures one task's output: stdout and stderr written by fn,
// which closes both when the task "exits".
func runTask(t *testing.T, a CaptureArgs, fn func(out, errw io.Writer)) {
	t.Helper()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	readied := false
	done := make(chan error, 1)
	go func() {
		done <- capture(context.Background(), a, outR, errR, func() error { readied = true; return nil })
	}()
	fn(outW, errW)
	outW.Close()
	errW.Close()
	if err := <-done; err != nil || !readied {
		t.Fatalf("capture: %v (ready %v)", err, readied)
	}
}

func TestCaptureKeepsEveryLineWithRunsAndMarkers(t *testing.T) {
	dir := t.TempDir()
	a := CaptureArgs{Dir: dir, StartedAt: time.Now()}
	for run := 1; run <= 3; run++ {
		if run > 1 {
			a.PreviousExit = fmt.Sprintf("exit code %d", run-1)
		}
		runTask(t, a, func(out, errw io.Writer) {
			fmt.Fprintf(out, "out %d\n", run)
			fmt.Fprintf(errw, "last words %d", run) // no newline: kept too
		})
	}
	l := Log{Dir: dir, Legacy: filepath.Join(t.TempDir(), "none.log")}
	all, cur, err := l.Read(Query{})
	cur.Close()
	if err != nil || len(all) != 9 {
		t.Fatalf("read: %d records, %v: %+v", len(all), err, all)
	}
	for i, r := range all {
		run := i/3 + 1
		if r.Run != run || r.Time.IsZero() {
			t.Fatalf("record %d = %+v; want run %d with a time", i, r, run)
		}
		switch i % 3 {
		case 0:
			want := fmt.Sprintf("run %d at ", run)
			if r.Stream != StreamVigil || !strings.HasPrefix(r.Line, want) || (run > 1) != strings.Contains(r.Line, fmt.Sprintf("; run %d ended: exit code %d", run-1, run-1)) {
				t.Fatalf("marker %d = %+v", run, r)
			}
		}
	}
	stderr := 0
	for _, r := range all {
		if r.Stream == StreamStderr && strings.HasPrefix(r.Line, "last words ") {
			stderr++
		}
	}
	if stderr != 3 {
		t.Fatalf("stderr's last lines kept: %d of 3", stderr)
	}

	prev, cur, _ := l.Read(Query{Previous: true})
	cur.Close()
	if len(prev) != 3 || prev[0].Run != 2 || prev[2].Run != 2 {
		t.Fatalf("previous = %+v; want the 3 records of run 2", prev)
	}
	tail, cur, _ := l.Read(Query{Tail: 2})
	cur.Close()
	if len(tail) != 2 || tail[1].Run != 3 || tail[0].Run != 3 {
		t.Fatalf("tail 2 = %+v", tail)
	}
	since, cur, _ := l.Read(Query{Since: all[6].Time})
	cur.Close()
	if len(since) != 3 || since[0].Stream != StreamVigil {
		t.Fatalf("since run 3's marker = %+v", since)
	}
}

func TestRotationKeepsAtMostMaxFiles(t *testing.T) {
	dir := t.TempDir()
	a := CaptureArgs{Dir: dir, StartedAt: time.Now(), MaxSize: 1000, MaxFiles: 3}
	runTask(t, a, func(out, _ io.Writer) {
		for i := 1; i <= 500; i++ {
			fmt.Fprintf(out, "line %d\n", i)
		}
	})
	files, _ := filepath.Glob(filepath.Join(dir, currentName+"*"))
	if len(files) != 3 {
		t.Fatalf("files %v; want 3", files)
	}
	recs, cur, _ := Log{Dir: dir}.Read(Query{})
	cur.Close()
	if len(recs) == 0 || recs[len(recs)-1].Line != "line 500" || len(recs) > 3*1000/30 {
		t.Fatalf("after rotation %d records, last %+v", len(recs), recs[len(recs)-1])
	}
}

func TestFollowGoesOnAcrossRotationAndRuns(t *testing.T) {
	dir := t.TempDir()
	a := CaptureArgs{Dir: dir, StartedAt: time.Now(), MaxSize: 1000, MaxFiles: 2}
	_, cur, err := Log{Dir: dir}.Read(Query{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan Record, 100)
	go func() {
		_ = cur.Follow(ctx, func(r Record) error { got <- r; return nil })
		close(got)
	}()
	for run := 1; run <= 2; run++ {
		runTask(t, a, func(out, _ io.Writer) {
			for i := 1; i <= 10; i++ {
				fmt.Fprintf(out, "run %d line %d\n", run, i)
				time.Sleep(40 * time.Millisecond) // a rotation at most between two polls
			}
		})
	}
	want := 2 * 11
	for n := 0; n < want; n++ {
		select {
		case r := <-got:
			if r.Stream != StreamVigil && r.Line != fmt.Sprintf("run %d line %d", r.Run, (n%11)) {
				t.Fatalf("record %d = %+v", n, r)
			}
		case <-ctx.Done():
			t.Fatalf("follow gave %d of %d records", n, want)
		}
	}
}

func TestReadWithoutLog(t *testing.T) {
	_, cur, err := Log{Dir: filepath.Join(t.TempDir(), "missing")}.Read(Query{})
	cur.Close()
	if err != ErrNoLog {
		t.Fatalf("err = %v; want ErrNoLog", err)
	}
	legacy := filepath.Join(t.TempDir(), "old.log")
	if err := os.WriteFile(legacy, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, cur, err := Log{Dir: filepath.Join(t.TempDir(), "missing"), Legacy: legacy}.Read(Query{Previous: true})
	cur.Close()
	if err != nil || len(recs) != 2 || recs[1].Line != "b" || recs[1].Stream != StreamOutput {
		t.Fatalf("legacy output = %+v, %v", recs, err)
	}
}

// A worker in a container copies itself where the host's shim finds it,
// once: the same binary there is left alone.
func TestInstallLogger(t *testing.T) {
	self, _ := os.Executable()
	if got, err := InstallLogger(""); err != nil || got != self {
		t.Fatalf("no path: %q, %v; want this binary %q", got, err, self)
	}
	path := filepath.Join(t.TempDir(), "vigil-logger")
	if got, err := InstallLogger(path); err != nil || got != path {
		t.Fatalf("install: %q, %v", got, err)
	}
	before, _ := os.Stat(path)
	if got, err := InstallLogger(path); err != nil || got != path {
		t.Fatalf("install again: %q, %v", got, err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || after.Mode().Perm() != 0o755 {
		t.Fatalf("the same binary was written again (%v) or is not executable (%v)", !os.SameFile(before, after), after.Mode())
	}
	if err := os.WriteFile(path, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallLogger(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size() != before.Size() {
		t.Fatalf("an older binary at the path was kept: %d bytes", st.Size())
	}
	if _, err := InstallLogger("relative/logger"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("relative path: %v", err)
	}
}
