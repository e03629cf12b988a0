package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/runtime"
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
			d := tc.policy.Decide(h, runtime.Exit{ExitCode: tc.code, ExitedAt: now}, now)
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
	if got := (Policy{}).WithDefaults(); !reflect.DeepEqual(got, d) {
		t.Fatalf("zero policy with defaults = %+v, want %+v", got, d)
	}
	custom := Policy{Action: ActionIsolate, MaxRestarts: 10, RestartWindow: 600 * time.Second, PollInterval: time.Second, Backoff: 3 * time.Second}
	if got := custom.WithDefaults(); !reflect.DeepEqual(got, custom) {
		t.Fatalf("custom policy changed by defaults: %+v", got)
	}
}

// Ported from the original: test_supervised_container_record_restart.
func TestSixthCrashInWindowIsCrashLoop(t *testing.T) {
	p := Default()
	var h History
	for i := 0; i < 5; i++ {
		d := p.Decide(h, runtime.Exit{ExitCode: 1}, t0)
		if d.Outcome != Restart {
			t.Fatalf("crash %d: %s, want restart", i+1, d.Outcome)
		}
		h = d.History
	}
	if d := p.Decide(h, runtime.Exit{ExitCode: 1}, t0); d.Outcome != BackOff {
		t.Fatalf("crash 6: %s, want backoff", d.Outcome)
	}
}

// Ported from the original: test_supervised_container_restart_window, without the sleep.
func TestWindowForgetsOldCrashes(t *testing.T) {
	p := Policy{Action: ActionRestart, MaxRestarts: 5, RestartWindow: 100 * time.Millisecond, Backoff: time.Second, PollInterval: time.Second}
	var h History
	for i := 0; i < 5; i++ {
		h = p.Decide(h, runtime.Exit{ExitCode: 1}, t0).History
	}
	if d := p.Decide(h, runtime.Exit{ExitCode: 1}, t0.Add(150*time.Millisecond)); d.Outcome != Restart {
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
		{withExp(Exponential{Initial: -time.Second}), "backoff.initial"},
		{withExp(Exponential{Initial: time.Minute, Max: time.Second}), "backoff.max"},
		{withExp(Exponential{Multiplier: 0.5}), "backoff.multiplier"},
		{withExp(Exponential{Multiplier: 101}), "backoff.multiplier"},
		{withExp(Exponential{Jitter: -0.1}), "backoff.jitter"},
		{withExp(Exponential{Jitter: 1.5}), "backoff.jitter"},
		{withExp(Exponential{ResetAfter: -time.Second}), "backoff.reset_after"},
		{withRules(Rule{Action: ActionRestart}), "rules[0]"},
		{withRules(Rule{ExitCodes: []int{1}, Action: ActionRestart}, Rule{ExitCodes: []int{2}, Action: "reboot"}), "rules[1].action"},
		{withRules(Rule{ExitCodes: []int{256}, Action: ActionRestart}), "rules[0].exit_codes[0]"},
		{withRules(Rule{Signals: []string{"SIGTERM", "SIGNOPE"}, Action: ActionRestart}), "rules[0].signals[1]"},
		{withRules(Rule{Signals: []string{"segv"}, Action: ActionRestart}), "rules[0].signals[0]"},
	}
	for _, tc := range tests {
		err := tc.policy.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%+v: error %v, want a FieldError naming %s", tc.policy, err, tc.field)
		}
	}
	ok := withExp(Exponential{Initial: 2 * time.Second, Max: 8 * time.Second, Multiplier: 2, Jitter: 1})
	ok.Rules = []Rule{{ExitCodes: []int{0, -1, 255}, Signals: []string{"SIGSEGV"}, Action: ActionComplete}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid policy rejected: %v", err)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("default policy invalid: %v", err)
	}
}

func withExp(e Exponential) Policy {
	return Policy{Exponential: &e}.WithDefaults()
}

func withRules(rules ...Rule) Policy {
	return Policy{Rules: rules}.WithDefaults()
}

func TestRules(t *testing.T) {
	rules := []Rule{
		{ExitCodes: []int{42, 43}, Action: ActionShutdown},
		{ExitCodes: []int{0}, Action: ActionRestart},
		{Signals: []string{"SIGSEGV"}, Action: ActionIsolate},
		{ExitCodes: []int{7}, Signals: []string{"SIGTERM"}, Action: ActionComplete},
		{ExitCodes: []int{42}, Action: ActionIsolate}, // shadowed by the first
	}
	segv := runtime.Exit{ExitCode: 139, Cause: runtime.ExitSignaled, Signal: "SIGSEGV"}
	tests := []struct {
		name   string
		action Action // panic action
		rules  []Rule
		exit   runtime.Exit
		want   Outcome
		counts bool // the exit is counted in the window
	}{
		{"no rules: exit 0 completes", ActionRestart, nil, runtime.Exit{ExitCode: 0}, Complete, false},
		{"no rules: exit 3 restarts", ActionRestart, nil, runtime.Exit{ExitCode: 3}, Restart, true},
		{"no rules: shutdown action", ActionShutdown, nil, runtime.Exit{ExitCode: 3}, Shutdown, false},
		{"no rules: unhealthy exit 0 is a crash", ActionRestart, nil, runtime.Exit{ExitCode: 0, Cause: runtime.ExitUnhealthy}, Restart, true},
		{"no rules: unhealthy under isolate", ActionIsolate, nil, runtime.Exit{ExitCode: 143, Cause: runtime.ExitUnhealthy, Signal: "SIGTERM"}, Isolate, false},
		{"exit 42 shuts down", ActionRestart, rules, runtime.Exit{ExitCode: 42}, Shutdown, false},
		{"exit 43 shuts down", ActionRestart, rules, runtime.Exit{ExitCode: 43}, Shutdown, false},
		{"first match wins", ActionRestart, rules[4:], runtime.Exit{ExitCode: 42}, Isolate, false},
		{"exit 0 restarts by rule", ActionRestart, rules, runtime.Exit{ExitCode: 0}, Restart, true},
		{"SIGSEGV isolates", ActionRestart, rules, segv, Isolate, false},
		{"exit 139 without a signal is not SIGSEGV", ActionRestart, rules, runtime.Exit{ExitCode: 139}, Restart, true},
		{"signal or code in one rule: code", ActionRestart, rules, runtime.Exit{ExitCode: 7}, Complete, false},
		{"signal or code in one rule: signal", ActionRestart, rules, runtime.Exit{ExitCode: 143, Cause: runtime.ExitSignaled, Signal: "SIGTERM"}, Complete, false},
		{"no match: panic action restart", ActionRestart, rules, runtime.Exit{ExitCode: 3}, Restart, true},
		{"no match: panic action shutdown", ActionShutdown, rules, runtime.Exit{ExitCode: 3}, Shutdown, false},
		{"no match: exit 0 under shutdown still completes without a 0 rule", ActionShutdown, rules[2:], runtime.Exit{ExitCode: 0}, Complete, false},
		{"rule restart under shutdown action", ActionShutdown, []Rule{{ExitCodes: []int{3}, Action: ActionRestart}}, runtime.Exit{ExitCode: 3}, Restart, true},
		{"OOM matched by SIGKILL", ActionRestart, []Rule{{Signals: []string{"SIGKILL"}, Action: ActionShutdown}},
			runtime.Exit{ExitCode: 137, Cause: runtime.ExitOOMKilled, Signal: "SIGKILL"}, Shutdown, false},
		{"failed (-1) by code", ActionRestart, []Rule{{ExitCodes: []int{-1}, Action: ActionIsolate}}, runtime.Exit{ExitCode: -1, Cause: runtime.ExitFailed}, Isolate, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Action: tc.action, Rules: tc.rules}.WithDefaults()
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			tc.exit.ExitedAt = t0
			d := p.Decide(History{RestartTimes: at(-10)}, tc.exit, t0)
			if d.Outcome != tc.want {
				t.Fatalf("outcome = %s (%s), want %s", d.Outcome, d.Reason, tc.want)
			}
			if d.Reason == "" {
				t.Error("decision has no reason")
			}
			want := 1
			if tc.counts {
				want = 2
			}
			if len(d.History.RestartTimes) != want {
				t.Errorf("window = %v, want %d entries", d.History.RestartTimes, want)
			}
		})
	}
}

// A decision names the rule that made it (none without a match), and the
// rule reads as the file writes it.
func TestDecisionNamesItsRule(t *testing.T) {
	p := Policy{Action: ActionRestart, Rules: []Rule{
		{ExitCodes: []int{42, 43}, Action: ActionShutdown},
		{Signals: []string{"SIGSEGV"}, ExitCodes: []int{7}, Action: ActionIsolate},
	}}.WithDefaults()
	d := p.Decide(History{}, runtime.Exit{ExitCode: 7, ExitedAt: t0}, t0)
	if d.Rule == nil || *d.Rule != 1 {
		t.Fatalf("rule %v, want 1", d.Rule)
	}
	if got, want := p.Rules[*d.Rule].String(), "{ exit_codes: [7], signals: [SIGSEGV], action: isolate }"; got != want {
		t.Errorf("rule text %q, want %q", got, want)
	}
	if d := p.Decide(History{}, runtime.Exit{ExitCode: 3, ExitedAt: t0}, t0); d.Rule != nil {
		t.Errorf("no rule matched, got %d", *d.Rule)
	}
}

// exp is the e2e backoff: {initial: 2s, max: 8s, multiplier: 2}.
func exp(jitter float64, reset time.Duration) Policy {
	return Policy{Action: ActionRestart, MaxRestarts: 1, RestartWindow: time.Hour,
		Exponential: &Exponential{Initial: 2 * time.Second, Max: 8 * time.Second, Multiplier: 2, Jitter: jitter, ResetAfter: reset}}.WithDefaults()
}

func TestExponentialBackoff(t *testing.T) {
	type step struct {
		ranFor  time.Duration // how long the container ran before this crash (<= 0: start unknown; < 0: that much quiet time passes first)
		want    Outcome
		wait    time.Duration // backoff wait, for BackOff
		episode int
	}
	tests := []struct {
		name   string
		policy Policy
		steps  []step
	}{
		{"2s 4s 8s 8s", exp(0, time.Hour), []step{
			{time.Second, Restart, 0, 0},
			{time.Second, BackOff, 2 * time.Second, 1},
			{time.Second, BackOff, 4 * time.Second, 2},
			{time.Second, BackOff, 8 * time.Second, 3},
			{time.Second, BackOff, 8 * time.Second, 4},
		}},
		{"a good run resets the sequence", exp(0, time.Minute), []step{
			{time.Second, Restart, 0, 0},
			{time.Second, BackOff, 2 * time.Second, 1},
			{time.Second, BackOff, 4 * time.Second, 2},
			{time.Minute, BackOff, 2 * time.Second, 1},
			{59 * time.Second, BackOff, 4 * time.Second, 2},
		}},
		{"without a start time the gap since the last crash resets", exp(0, time.Minute), []step{
			{0, Restart, 0, 0},
			{0, BackOff, 2 * time.Second, 1},
			{0, BackOff, 4 * time.Second, 2},
			{-2 * time.Minute, BackOff, 2 * time.Second, 1}, // two quiet minutes since the last crash
		}},
		{"multiplier 1 is fixed", Policy{MaxRestarts: 1, Exponential: &Exponential{Initial: 3 * time.Second, Multiplier: 1}}.WithDefaults(), []step{
			{time.Second, Restart, 0, 0},
			{time.Second, BackOff, 3 * time.Second, 1},
			{time.Second, BackOff, 3 * time.Second, 2},
		}},
		{"fixed backoff keeps today's", Policy{MaxRestarts: 1, Backoff: 3 * time.Second}.WithDefaults(), []step{
			{time.Second, Restart, 0, 0},
			{time.Second, BackOff, 3 * time.Second, 1},
			{time.Hour, BackOff, 3 * time.Second, 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h History
			now := t0
			for i, s := range tc.steps {
				if s.ranFor < 0 {
					now = now.Add(-s.ranFor)
				}
				exit := runtime.Exit{ExitCode: 1, ExitedAt: now}
				if s.ranFor > 0 {
					exit.StartedAt = now.Add(-s.ranFor)
				}
				d := tc.policy.Decide(h, exit, now)
				if d.Outcome != s.want {
					t.Fatalf("crash %d: outcome %s (%s), want %s", i+1, d.Outcome, d.Reason, s.want)
				}
				if s.want == BackOff {
					if got := d.RestartAt.Sub(now); got != s.wait {
						t.Errorf("crash %d: waits %s, want %s", i+1, got, s.wait)
					}
					if d.Episode != s.episode {
						t.Errorf("crash %d: episode %d, want %d", i+1, d.Episode, s.episode)
					}
					now = d.RestartAt
				}
				h = d.History
				now = now.Add(time.Second)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	p := exp(0.5, time.Hour)
	e := *p.Exponential
	seen := map[time.Duration]bool{}
	for seed := uint64(0); seed < 50; seed++ {
		for n := 1; n <= 5; n++ {
			base := e.Delay(n, seed)
			if again := e.Delay(n, seed); again != base {
				t.Fatalf("seed %d episode %d: %s then %s; want the same (replays must agree)", seed, n, base, again)
			}
			want := min(2*time.Second<<(n-1), 8*time.Second)
			if base < want || base >= want+want/2 {
				t.Fatalf("seed %d episode %d: %s outside [%s, %s)", seed, n, base, want, want+want/2)
			}
		}
		seen[e.Delay(1, seed)] = true
	}
	if len(seen) < 45 {
		t.Errorf("50 seeds gave only %d distinct first delays; replicas would back off in lockstep", len(seen))
	}
	if d := (Exponential{Initial: time.Second, Max: time.Hour, Multiplier: 100}).Delay(1000, 1); d != time.Hour {
		t.Errorf("huge episode: %s, want the max", d)
	}
	// The decision uses the policy's seed.
	a, b := p, p
	a.Seed, b.Seed = 1, 2
	h := History{RestartTimes: at(0)}
	da, db := a.Decide(h, runtime.Exit{ExitCode: 1}, t0), b.Decide(h, runtime.Exit{ExitCode: 1}, t0)
	if da.RestartAt.Equal(db.RestartAt) {
		t.Errorf("seeds 1 and 2 back off until the same %v", da.RestartAt)
	}
}

// FuzzDecide checks invariants of the decision for any history and exit.
func FuzzDecide(f *testing.F) {
	f.Add(5, int64(300), int64(30), 1, int64(0), int64(10), uint8(0))
	f.Add(0, int64(1), int64(1), 0, int64(5), int64(1), uint8(1))
	f.Add(2, int64(60), int64(3), -1, int64(100), int64(200), uint8(2))
	f.Add(1, int64(3600), int64(2), 42, int64(1), int64(5), uint8(7))
	f.Fuzz(func(t *testing.T, maxRestarts int, windowS, backoffS int64, code int, gapS, nowS int64, action uint8) {
		p := Policy{
			Action:        []Action{ActionRestart, ActionShutdown, ActionIsolate}[int(action)%3],
			MaxRestarts:   maxRestarts % 1000,
			RestartWindow: time.Duration(windowS%100000) * time.Second,
			Backoff:       time.Duration(backoffS%100000) * time.Second,
			PollInterval:  time.Second,
			Seed:          uint64(gapS),
		}
		if action&4 != 0 {
			p.Exponential = &Exponential{Initial: p.Backoff, Max: 4 * p.Backoff, Multiplier: float64(action%5) + 1,
				Jitter: float64(action%3) / 2, ResetAfter: p.RestartWindow}
		}
		if action&8 != 0 {
			p.Rules = []Rule{{ExitCodes: []int{code % 300}, Action: []Action{ActionRestart, ActionShutdown, ActionIsolate, ActionComplete}[int(action>>4)%4]}}
		}
		exit := runtime.Exit{ExitCode: code}.Classify("")
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
		h.Episodes = int(gapS % 50)
		d := p.Decide(h, exit, now)
		if again := p.Decide(h, exit, now); !reflect.DeepEqual(again, d) {
			t.Fatalf("Decide is not deterministic: %+v then %+v", d, again)
		}
		for _, rt := range d.History.RestartTimes {
			if now.Sub(rt) >= p.RestartWindow {
				t.Fatalf("history keeps %v, outside the window ending %v", rt, now)
			}
		}
		wait := d.RestartAt.Sub(now)
		switch {
		case code == 0 && len(p.Rules) == 0 && d.Outcome != Complete:
			t.Fatalf("exit 0 gave %s", d.Outcome)
		case len(p.Rules) > 0 && p.Rules[0].Matches(exit) && p.Rules[0].Action == ActionRestart && d.Outcome != Restart && d.Outcome != BackOff:
			t.Fatalf("a matching restart rule gave %s", d.Outcome)
		case d.Outcome == BackOff && p.Exponential == nil && wait != p.Backoff:
			t.Fatalf("backoff until %v, want %v", d.RestartAt, now.Add(p.Backoff))
		case d.Outcome == BackOff && p.Exponential != nil &&
			(wait < p.Exponential.Initial || wait > p.Exponential.Max+time.Duration(float64(p.Exponential.Max)*p.Exponential.Jitter)):
			t.Fatalf("exponential backoff waits %s, outside [initial %s, max %s plus jitter]", wait, p.Exponential.Initial, p.Exponential.Max)
		case d.Outcome == BackOff && d.Episode < 1:
			t.Fatalf("backoff episode %d", d.Episode)
		case d.Outcome == BackOff && len(d.History.RestartTimes) <= p.MaxRestarts:
			t.Fatalf("backoff with only %d crashes in the window", len(d.History.RestartTimes))
		case d.Outcome == Restart && len(d.History.RestartTimes) > p.MaxRestarts:
			t.Fatalf("restart with %d crashes in the window", len(d.History.RestartTimes))
		}
	})
}
