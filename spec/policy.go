package spec

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/runtime"
)

// The fields of the restart policy's newer parts, health probes and resources.
var (
	backoffFields   = []string{"initial", "max", "multiplier", "jitter", "reset_after"}
	ruleFields      = []string{"exit_codes", "signals", "action"}
	healthFields    = []string{"liveness", "startup"}
	probeFields     = []string{"exec", "http", "tcp", "period", "timeout", "failure_threshold", "initial_delay"}
	httpProbeFields = []string{"port", "path"}
	tcpProbeFields  = []string{"port"}
	resourceFields  = []string{"memory", "cpus", "pids"}
)

// Limits on the newer parts.
const (
	MaxRules        = 100
	maxProbeTimeout = time.Hour
	minProbePeriod  = 100 * time.Millisecond
	// minMemory keeps a typo ("64" for 64Mi) from starting a container that
	// the OOM killer kills before it can run.
	minMemory = 4 << 20
)

// parseExponential reads backoff: { initial, max, multiplier, jitter, reset_after }.
// Missing fields take policy's defaults; the policy validates the whole.
func parseExponential(n *yaml.Node, path string) (*policy.Exponential, error) {
	fields, err := mapping(n, path, backoffFields)
	if err != nil {
		return nil, err
	}
	var e policy.Exponential
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"initial", &e.Initial}, {"max", &e.Max}, {"reset_after", &e.ResetAfter}} {
		if dn := fields[d.name]; dn != nil {
			if *d.dst, err = duration(dn, path+"."+d.name); err != nil {
				return nil, err
			}
		}
	}
	if mn := fields["multiplier"]; mn != nil {
		if e.Multiplier, err = number(mn, path+".multiplier", "2"); err != nil {
			return nil, err
		}
		if e.Multiplier < 1 || e.Multiplier > 100 {
			return nil, fieldErr(mn, path+".multiplier", "%s is out of range; use 1 (a fixed backoff) to 100, e.g. 2", quote(mn.Value))
		}
	}
	if jn := fields["jitter"]; jn != nil {
		if e.Jitter, err = number(jn, path+".jitter", "0.1"); err != nil {
			return nil, err
		}
		if e.Jitter < 0 || e.Jitter > 1 {
			return nil, fieldErr(jn, path+".jitter", "%s is out of range; use 0 to 1, e.g. 0.1 for up to 10%% more", quote(jn.Value))
		}
	}
	return &e, nil
}

// parseRules reads rules: a list of { exit_codes, signals, action }.
func parseRules(n *yaml.Node, path string) ([]policy.Rule, error) {
	items, err := list(n, path, "list of rules", "- { exit_codes: [42], action: shutdown }")
	if err != nil {
		return nil, err
	}
	if len(items) > MaxRules {
		return nil, fieldErr(n, path, "%d rules; use at most %d", len(items), MaxRules)
	}
	rules := make([]policy.Rule, 0, len(items))
	for i, item := range items {
		rpath := fmt.Sprintf("%s[%d]", path, i)
		fields, err := mapping(item, rpath, ruleFields)
		if err != nil {
			return nil, err
		}
		var r policy.Rule
		if cn := fields["exit_codes"]; cn != nil {
			codes, err := list(cn, rpath+".exit_codes", "list of exit codes", "[42, 43]")
			if err != nil {
				return nil, err
			}
			for j, c := range codes {
				code, err := integer(c, fmt.Sprintf("%s.exit_codes[%d]", rpath, j))
				if err != nil {
					return nil, err
				}
				if code < runtime.FailedExitCode || code > 255 {
					return nil, fieldErr(c, fmt.Sprintf("%s.exit_codes[%d]", rpath, j), "%d is out of range; use 0 to 255 (-1 for a container that could not run)", code)
				}
				r.ExitCodes = append(r.ExitCodes, code)
			}
		}
		if sn := fields["signals"]; sn != nil {
			sigs, err := list(sn, rpath+".signals", "list of signal names", "[SIGSEGV]")
			if err != nil {
				return nil, err
			}
			for j, sig := range sigs {
				spath := fmt.Sprintf("%s.signals[%d]", rpath, j)
				v, err := scalar(sig, spath)
				if err != nil {
					return nil, err
				}
				name, perr := runtime.ParseSignal(v)
				if perr != nil {
					return nil, fieldErr(sig, spath, "%s is not a signal name; use a name such as SIGSEGV, SIGKILL or SIGTERM", quote(v))
				}
				r.Signals = append(r.Signals, name)
			}
		}
		if len(r.ExitCodes) == 0 && len(r.Signals) == 0 {
			return nil, fieldErr(item, rpath, "matches nothing; give exit_codes (e.g. [42]) or signals (e.g. [SIGSEGV])")
		}
		an := fields["action"]
		if an == nil {
			return nil, fieldErr(item, rpath+".action", "missing; add action: restart, shutdown, isolate or complete")
		}
		v, err := scalar(an, rpath+".action")
		if err != nil {
			return nil, err
		}
		switch r.Action = policy.Action(v); r.Action {
		case policy.ActionRestart, policy.ActionShutdown, policy.ActionIsolate, policy.ActionComplete:
		default:
			return nil, fieldErr(an, rpath+".action", "%s is not one of restart, shutdown, isolate, complete", quote(v))
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return rules, nil
}

// parseHealth reads health: { liveness, startup }.
func parseHealth(n *yaml.Node, path string) (*runtime.Health, error) {
	if n == nil {
		return nil, nil
	}
	fields, err := mapping(n, path, healthFields)
	if err != nil {
		return nil, err
	}
	var h runtime.Health
	if h.Liveness, err = parseProbe(fields["liveness"], path+".liveness"); err != nil {
		return nil, err
	}
	if h.Startup, err = parseProbe(fields["startup"], path+".startup"); err != nil {
		return nil, err
	}
	if h.Liveness == nil && h.Startup == nil {
		return nil, nil
	}
	return &h, nil
}

// parseProbe reads one probe: exactly one of exec, http and tcp, and its timing.
func parseProbe(n *yaml.Node, path string) (*runtime.Probe, error) {
	if n == nil {
		return nil, nil
	}
	fields, err := mapping(n, path, probeFields)
	if err != nil {
		return nil, err
	}
	p := runtime.Probe{Period: runtime.DefaultProbePeriod, Timeout: runtime.DefaultProbeTimeout, FailureThreshold: runtime.DefaultProbeFailureThreshold}
	kinds := 0
	for _, k := range []string{"exec", "http", "tcp"} {
		if fields[k] != nil {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, fieldErr(n, path, "has %d of exec, http and tcp; give exactly one, e.g. exec: [\"/bin/sh\", \"-c\", \"test -f /tmp/ok\"]", kinds)
	}
	if en := fields["exec"]; en != nil {
		if p.Exec, err = stringList(en, path+".exec", `["/bin/sh", "-c", "test -f /tmp/ok"]`); err != nil {
			return nil, err
		}
		if len(p.Exec) == 0 || p.Exec[0] == "" {
			return nil, fieldErr(en, path+".exec", "empty; give the command and its arguments, e.g. [\"/bin/sh\", \"-c\", \"test -f /tmp/ok\"]")
		}
	}
	if hn := fields["http"]; hn != nil {
		hf, err := mapping(hn, path+".http", httpProbeFields)
		if err != nil {
			return nil, err
		}
		var hp runtime.HTTPProbe
		if hp.Port, err = port(hn, hf["port"], path+".http.port"); err != nil {
			return nil, err
		}
		hp.Path = "/"
		if pn := hf["path"]; pn != nil {
			if hp.Path, err = scalar(pn, path+".http.path"); err != nil {
				return nil, err
			}
			if len(hp.Path) == 0 || hp.Path[0] != '/' {
				return nil, fieldErr(pn, path+".http.path", "%s does not start with /; write e.g. /healthz", quote(hp.Path))
			}
		}
		p.HTTP = &hp
	}
	if tn := fields["tcp"]; tn != nil {
		tf, err := mapping(tn, path+".tcp", tcpProbeFields)
		if err != nil {
			return nil, err
		}
		var tp runtime.TCPProbe
		if tp.Port, err = port(tn, tf["port"], path+".tcp.port"); err != nil {
			return nil, err
		}
		p.TCP = &tp
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"period", &p.Period}, {"timeout", &p.Timeout}} {
		if dn := fields[d.name]; dn != nil {
			if *d.dst, err = duration(dn, path+"."+d.name); err != nil {
				return nil, err
			}
		}
	}
	if p.Period < minProbePeriod {
		return nil, fieldErr(fields["period"], path+".period", "%s is too short; use %s or more", p.Period, minProbePeriod)
	}
	if p.Timeout > maxProbeTimeout {
		return nil, fieldErr(fields["timeout"], path+".timeout", "%s is too long; use at most %s", p.Timeout, maxProbeTimeout)
	}
	if dn := fields["initial_delay"]; dn != nil {
		if p.InitialDelay, err = nonNegativeDuration(dn, path+".initial_delay"); err != nil {
			return nil, err
		}
	}
	if fn := fields["failure_threshold"]; fn != nil {
		if p.FailureThreshold, err = integer(fn, path+".failure_threshold"); err != nil {
			return nil, err
		}
		if p.FailureThreshold < 1 || p.FailureThreshold > 1000 {
			return nil, fieldErr(fn, path+".failure_threshold", "%d is out of range; use 1 to 1000", p.FailureThreshold)
		}
	}
	return &p, nil
}

// parseResources reads resources: { memory: 64Mi, cpus: 0.5, pids: 256 }.
func parseResources(n *yaml.Node, path string) (*runtime.Resources, error) {
	if n == nil {
		return nil, nil
	}
	fields, err := mapping(n, path, resourceFields)
	if err != nil {
		return nil, err
	}
	var r runtime.Resources
	if mn := fields["memory"]; mn != nil {
		if r.MemoryBytes, err = memory(mn, path+".memory"); err != nil {
			return nil, err
		}
	}
	if cn := fields["cpus"]; cn != nil {
		if r.CPUs, err = number(cn, path+".cpus", "0.5"); err != nil {
			return nil, err
		}
		if r.CPUs < 0.01 || r.CPUs > 1024 {
			return nil, fieldErr(cn, path+".cpus", "%s is out of range; use 0.01 to 1024 cores, e.g. 0.5", quote(cn.Value))
		}
	}
	if pn := fields["pids"]; pn != nil {
		pids, err := integer(pn, path+".pids")
		if err != nil {
			return nil, err
		}
		if pids < 1 || pids > 1<<22 {
			return nil, fieldErr(pn, path+".pids", "%d is out of range; use 1 to %d, e.g. 256", pids, 1<<22)
		}
		r.Pids = int64(pids)
	}
	if r == (runtime.Resources{}) {
		return nil, nil
	}
	return &r, nil
}

// memoryUnits are the suffixes Kubernetes and Docker users write.
var memoryUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"k", 1e3},
}

// memory reads a size such as 64Mi, 1Gi, 500M or 67108864 (bytes).
func memory(n *yaml.Node, path string) (int64, error) {
	v, err := scalar(n, path)
	if err != nil {
		return 0, err
	}
	num, mult := v, int64(1)
	for _, u := range memoryUnits {
		if len(v) > len(u.suffix) && v[len(v)-len(u.suffix):] == u.suffix {
			num, mult = v[:len(v)-len(u.suffix)], u.mult
			break
		}
	}
	x, perr := strconv.ParseInt(num, 10, 64)
	if perr != nil || x <= 0 || x > math.MaxInt64/mult {
		return 0, fieldErr(n, path, "%s is not a memory size; write a positive size such as 64Mi, 1Gi or 500M", quote(v))
	}
	if x*mult < minMemory {
		return 0, fieldErr(n, path, "%s is less than 4Mi; give a unit, e.g. 64Mi", quote(v))
	}
	return x * mult, nil
}

// number reads an int or float value.
func number(n *yaml.Node, path, example string) (float64, error) {
	if err := noAlias(n, path); err != nil {
		return 0, err
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		return 0, fieldErr(n, path, "want a number, got %s; write e.g. %s", describe(n), example)
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fieldErr(n, path, "%s is not a finite number; write e.g. %s", quote(n.Value), example)
	}
	return v, nil
}

func port(parent, n *yaml.Node, path string) (int, error) {
	if n == nil {
		return 0, fieldErr(parent, path, "missing; add port: 8080")
	}
	p, err := integer(n, path)
	if err != nil {
		return 0, err
	}
	if p < 1 || p > 65535 {
		return 0, fieldErr(n, path, "%d is out of range; use 1 to 65535", p)
	}
	return p, nil
}

func nonNegativeDuration(n *yaml.Node, path string) (time.Duration, error) {
	if n.Kind == yaml.ScalarNode && (n.Value == "0" || n.Value == "0s") {
		return 0, nil
	}
	return duration(n, path)
}

// list returns a sequence's items; what names the list wanted in errors.
func list(n *yaml.Node, path, what, example string) ([]*yaml.Node, error) {
	if err := noAlias(n, path); err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(n, path, "want a %s, got %s; write e.g. %s", what, kindName(n), example)
	}
	if len(n.Content) > MaxArgs {
		return nil, fieldErr(n, path, "%d items; use at most %d", len(n.Content), MaxArgs)
	}
	return n.Content, nil
}
