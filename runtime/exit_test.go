package runtime

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		code   int
		marked ExitReason
		reason ExitReason
		signal string
	}{
		{0, "", ExitExited, ""},
		{1, "", ExitExited, ""},
		{42, "", ExitExited, ""},
		{128, "", ExitExited, ""},
		{129, "", ExitSignaled, "SIGHUP"},
		{137, "", ExitSignaled, "SIGKILL"},
		{139, "", ExitSignaled, "SIGSEGV"},
		{143, "", ExitSignaled, "SIGTERM"},
		{159, "", ExitSignaled, "SIGSYS"},
		{160, "", ExitExited, ""},
		{255, "", ExitExited, ""},
		{FailedExitCode, "", ExitFailed, ""},
		// A recorded cause wins; the signal is still read from the code.
		{137, ExitOOMKilled, ExitOOMKilled, "SIGKILL"},
		{143, ExitUnhealthy, ExitUnhealthy, "SIGTERM"},
		{0, ExitUnhealthy, ExitUnhealthy, ""},
	}
	for _, tc := range tests {
		e := Exit{ExitCode: tc.code}.Classify(tc.marked)
		if e.Cause != tc.reason || e.Signal != tc.signal {
			t.Errorf("Exit{%d}.Classify(%q) = %s %q, want %s %q", tc.code, tc.marked, e.Cause, e.Signal, tc.reason, tc.signal)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]string{"SIGSEGV": "SIGSEGV", "segv": "SIGSEGV", "SIGKILL": "SIGKILL", " term ": "SIGTERM", "sigusr1": "SIGUSR1"} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIG", "SIGNOPE", "9", "SIGRTMIN", "KILL9"} {
		if got, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) = %q, want an error", bad, got)
		}
	}
}
