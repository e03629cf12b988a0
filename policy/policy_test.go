package policy

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(seconds ...int) []time.Time {
	out := make([]time.Time, len(seconds))
	for i, s := range seconds {
		out[i] = t0.Add(time.Duration(s) * time.Second)
	}
	return out
}

func TestDecide(t *testing.T) {
	restart := Default()
	tests := []struct {
		name        string
		policy      Policy
		history     []time.Time
		code        int
		now         int // seconds after t0
		want        Outcome
		wantTimes   []time.Time
		wantRestart time.Time
	}{
		{name: "exit 0 completes", policy: restart, code: 0, want: Complete, wantTimes: at()},
		{name: "exit 0 keeps the window", policy: restart, history: at(0, 10), code: 0, now: 20, want: Complete, wantTimes: at(0, 10)},
		{name: "first crash restarts", policy: restart, code: 1, want: Restart, wantTimes: at(0)},
		{name: "failed counts as a crash", policy: restart, code: -1, want: Restart, wantTimes: at(0)},
		{name: "fifth crash still restarts", policy: restart, history: at(0, 0, 0, 0), code: 1, want: Restart, wantTimes: at(0, 0, 0, 0, 0)},
		{name: "sixth crash in window backs off", policy: restart, history: at(0, 0, 0, 0, 0), code: 1, now: 1,
			want: BackOff, wantTimes: at(0, 0, 0, 0, 0, 1), wantRestart: t0.Add(31 * time.Second)},
		{name: "sixth crash after window restarts", policy: restart, history: at(0, 0, 0, 0, 0), code: 1, now: 300,
			want: Restart, wantTimes: at(300)},
		{name: "window edge is exclusive", policy: restart, history: at(0, 1, 2, 3, 4), code: 137, now: 301,
			want: Restart, wantTimes: at(2, 3, 4, 301)},
		{name: "max_restarts 0 backs off at once", policy: Policy{Action: ActionRestart, MaxRestarts: 0, RestartWindow: time.Minute, Backoff: 3 * time.Second, PollInterval: time.Second},
			code: 1, want: BackOff, wantTimes: at(0), wantRestart: t0.Add(3 * time.Second)},
		{name: "custom backoff", policy: Policy{Action: ActionRestart, MaxRestarts: 1, RestartWindow: time.Minute, Backoff: 3 * time.Second, PollInterval: time.Second},
			history: at(0), code: 2, now: 5, want: BackOff, wantTimes: at(0, 5), wantRestart: t0.Add(8 * time.Second)},
		{name: "shutdown policy", policy: Policy{Action: ActionShutdown}.WithDefaults(), code: 1, want: Shutdown, wantTimes: at()},
		{name: "isolate policy", policy: Policy{Action: ActionIsolate}.WithDefaults(), code: 3, want: Isolate, wantTimes: at()},
		{name: "isolate on exit 0 completes", policy: Policy{Action: ActionIsolate}.WithDefaults(), code: 0, want: Complete, wantTimes: at()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := History{RestartTimes: append([]time.Time(nil), tc.history...)}
			before := append([]time.Time(nil), h.RestartTimes...)
			now := t0.Add(time.Duration(tc.now) * time.Second)
			d := tc.policy.Decide(h, Exit{Code: tc.code, At: now}, now)
			if d.Outcome != tc.want {
				t.Fatalf("outcome = %s (%s), want %s", d.Outcome, d.Reason, tc.want)
			}
			if d.Reason == "" {
				t.Error("decision has no reason")
			}
			if !equalTimes(d.History.RestartTimes, tc.wantTimes) {
				t.Errorf("history = %v, want %v", d.History.RestartTimes, tc.wantTimes)
			}
			if !d.RestartAt.Equal(tc.wantRestart) {
				t.Errorf("restart at = %v, want %v", d.RestartAt, tc.wantRestart)
			}
			if !equalTimes(h.RestartTimes, before) {
				t.Error("Decide changed its input history")
			}
		})
	}
}

func equalTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// Ported from the original: test_supervisor_config_default.
func TestDefaults(t *testing.T) {
	d := Default()
	if d.MaxRestarts != 5 || d.RestartWindow != 300*time.Second || d.PollInterval != 5*time.Second ||
		d.Backoff != 30*time.Second || d.Action != ActionRestart {
		t.Fatalf("defaults = %+v", d)
	}
	if got := (Policy{}).WithDefaults(); got != d {
		t.Fatalf("zero policy with defaults = %+v, want %+v", got, d)
	}
	custom := Policy{Action: ActionIsolate, MaxRestarts: 10, RestartWindow: 600 * time.Second, PollInterval: time.Second, Backoff: 3 * time.Second}
	if got := custom.WithDefaults(); got != custom {
		t.Fatalf("custom policy changed by defaults: %+v", got)
	}
}

// Ported from the original: test_supervised_container_record_restart.
func TestSixthCrashInWindowIsCrashLoop(t *testing.T) {
	p := Default()
	var h History
	for i := 0; i < 5; i++ {
		d := p.Decide(h, Exit{Code: 1}, t0)
		if d.Outcome != Restart {
			t.Fatalf("crash %d: %s, want restart", i+1, d.Outcome)
		}
		h = d.History
	}
	if d := p.Decide(h, Exit{Code: 1}, t0); d.Outcome != BackOff {
		t.Fatalf("crash 6: %s, want backoff", d.Outcome)
	}
}

// Ported from the original: test_supervised_container_restart_window, without the sleep.
func TestWindowForgetsOldCrashes(t *testing.T) {
	p := Policy{Action: ActionRestart, MaxRestarts: 5, RestartWindow: 100 * time.Millisecond, Backoff: time.Second, PollInterval: time.Second}
	var h History
	for i := 0; i < 5; i++ {
		h = p.Decide(h, Exit{Code: 1}, t0).History
	}
	if d := p.Decide(h, Exit{Code: 1}, t0.Add(150*time.Millisecond)); d.Outcome != Restart {
		t.Fatalf("crash after the window: %s, want restart", d.Outcome)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		policy Policy
		field  string
	}{
		{Policy{Action: "reboot"}.WithDefaults(), "action"},
		{Policy{MaxRestarts: -1}.WithDefaults(), "max_restarts"},
		{Policy{RestartWindow: -time.Second}.WithDefaults(), "restart_window"},
		{Policy{Backoff: -time.Second}.WithDefaults(), "backoff"},
		{Policy{PollInterval: -time.Second}.WithDefaults(), "poll_interval"},
	}
	for _, tc := range tests {
		err := tc.policy.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%+v: error %v, want one naming %s", tc.policy, err, tc.field)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("default policy invalid: %v", err)
	}
}

// FuzzDecide checks invariants of the decision for any history and exit.
func FuzzDecide(f *testing.F) {
	f.Add(5, int64(300), int64(30), 1, int64(0), int64(10), uint8(0))
	f.Add(0, int64(1), int64(1), 0, int64(5), int64(1), uint8(1))
	f.Add(2, int64(60), int64(3), -1, int64(100), int64(200), uint8(2))
	f.Fuzz(func(t *testing.T, maxRestarts int, windowS, backoffS int64, code int, gapS, nowS int64, action uint8) {
		p := Policy{
			Action:        []Action{ActionRestart, ActionShutdown, ActionIsolate}[int(action)%3],
			MaxRestarts:   maxRestarts % 1000,
			RestartWindow: time.Duration(windowS%100000) * time.Second,
			Backoff:       time.Duration(backoffS%100000) * time.Second,
			PollInterval:  time.Second,
		}
		if err := p.Validate(); err != nil {
			if !strings.Contains(err.Error(), ":") {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		var h History
		for i := int64(0); i < 20; i++ {
			h.RestartTimes = append(h.RestartTimes, t0.Add(time.Duration(i*(gapS%1000))*time.Second))
		}
		now := t0.Add(time.Duration(nowS%1000000) * time.Second)
		d := p.Decide(h, Exit{Code: code}, now)
		for _, rt := range d.History.RestartTimes {
			if now.Sub(rt) >= p.RestartWindow {
				t.Fatalf("history keeps %v, outside the window ending %v", rt, now)
			}
		}
		switch {
		case code == 0 && d.Outcome != Complete:
			t.Fatalf("exit 0 gave %s", d.Outcome)
		case d.Outcome == BackOff && !d.RestartAt.Equal(now.Add(p.Backoff)):
			t.Fatalf("backoff until %v, want %v", d.RestartAt, now.Add(p.Backoff))
		case d.Outcome == BackOff && len(d.History.RestartTimes) <= p.MaxRestarts:
			t.Fatalf("backoff with only %d crashes in the window", len(d.History.RestartTimes))
		case d.Outcome == Restart && len(d.History.RestartTimes) > p.MaxRestarts:
			t.Fatalf("restart with %d crashes in the window", len(d.History.RestartTimes))
		}
	})
}
