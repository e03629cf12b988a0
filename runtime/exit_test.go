package runtime

import "testing"

func TestExitCause(t *testing.T) {
	tests := []struct {
		code   int
		reason ExitReason
		signal string
	}{
		{0, ExitExited, ""},
		{1, ExitExited, ""},
		{42, ExitExited, ""},
		{128, ExitExited, ""},
		{129, ExitSignaled, "SIGHUP"},
		{137, ExitSignaled, "SIGKILL"},
		{139, ExitSignaled, "SIGSEGV"},
		{143, ExitSignaled, "SIGTERM"},
		{159, ExitSignaled, "SIGSYS"},
		{160, ExitExited, ""},
		{255, ExitExited, ""},
		{-1, ExitExited, ""},
	}
	for _, tc := range tests {
		reason, sig := ExitCause(tc.code)
		if reason != tc.reason || sig != tc.signal {
			t.Errorf("ExitCause(%d) = %s %q, want %s %q", tc.code, reason, sig, tc.reason, tc.signal)
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
