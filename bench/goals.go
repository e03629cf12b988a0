package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// GoalRow is one goal of the liveness-per-node issue, with what this run
// measured before (--before) and after (the working tree). Met judges the
// after column only.
type GoalRow struct {
	Metric string `json:"metric"`
	Goal   string `json:"goal"`
	Before string `json:"before,omitempty"`
	After  string `json:"after"`
	Met    bool   `json:"met"`
}

// goals turns one run's results into the goals table. Every figure is
// counted in this run (the dev server's own counters, containerd's
// timestamps, /proc): nothing comes from Vigil's settings.
func goals(r *Results) []GoalRow {
	var rows []GoalRow
	// add shows a row's figures for the run and its before (on the run's
	// floor); met judges the run's.
	add := func(metric, goal string, show func(*Results) (string, bool), met func(*Results) bool) {
		row := GoalRow{Metric: metric, Goal: goal, After: "not measured"}
		if s, ok := show(r); ok {
			row.After, row.Met = s, met(r)
		}
		if r.Before != nil {
			if s, ok := show(withFloorOf(r.Before, r)); ok {
				row.Before = s
			} else {
				row.Before = "not measured"
			}
		}
		rows = append(rows, row)
	}
	for _, n := range r.Config.SteadySizes {
		add(fmt.Sprintf("server requests per healthy container-hour, %d containers", n), "<= 1",
			func(x *Results) (string, bool) {
				s := steadyAt(x, n)
				if s == nil {
					return "", false
				}
				return fmt.Sprintf("%.1f (%.1f actions; all requests in the window: %.0f in %.0f s)",
					s.RequestsPerContainerHour, s.ActionsPerContainerHour, s.Server.Requests, s.Server.Seconds), true
			},
			func(x *Results) bool { s := steadyAt(x, n); return s != nil && s.RequestsPerContainerHour <= 1 })
	}
	add("node-level requests (no container)", "<= 120 per node-hour",
		func(x *Results) (string, bool) {
			if x.Node == nil {
				return "", false
			}
			n := x.Node.Server
			return fmt.Sprintf("%.0f requests, %.0f actions per node-hour (%.0f requests in %.0f s)",
				n.perHour(n.Requests), n.perHour(n.Actions), n.Requests, n.Seconds), true
		},
		func(x *Results) bool { return x.Node != nil && x.Node.Server.perHour(x.Node.Server.Requests) <= 120 })
	add("dev server / worker CPU (% of a core), healthy containers", "< 5 % each at 1,000",
		func(x *Results) (string, bool) {
			s := largestSteady(x)
			if s == nil {
				return "", false
			}
			return fmt.Sprintf("%.1f %% / %.1f %% at %d", s.ServerCPUPercent, s.WorkerCPUPercent, s.Containers), true
		},
		func(x *Results) bool {
			s := largestSteady(x)
			return s != nil && s.Containers >= 1000 && s.ServerCPUPercent < 5 && s.WorkerCPUPercent < 5
		})
	add("crashed while the worker was dead -> running, from the new worker's start", "<= 2 s",
		func(x *Results) (string, bool) {
			if x.Loss == nil {
				return "", false
			}
			return fmt.Sprintf("%.2f s (%.2f s after the crash)", x.Loss.FromWorkerStartSeconds, x.Loss.FromCrashSeconds), true
		},
		func(x *Results) bool { return x.Loss != nil && x.Loss.FromWorkerStartSeconds <= 2 })
	add("crash-loop backoff across a worker SIGKILL ends after its deadline by", "<= 1 s",
		func(x *Results) (string, bool) {
			if x.BackoffKill == nil || len(x.BackoffKill.LateSeconds) == 0 {
				return "", false
			}
			return fmt.Sprintf("%v s (max %.3f s)", x.BackoffKill.LateSeconds, x.BackoffKill.MaxLate), true
		},
		func(x *Results) bool {
			return x.BackoffKill != nil && len(x.BackoffKill.LateSeconds) > 0 && x.BackoffKill.MaxLate <= 1
		})
	add(fmt.Sprintf("%d containers crash at once -> all running again", r.Config.StormSize), "<= 1.5x the runtime alone, ahead of Docker",
		func(x *Results) (string, bool) {
			s, ok := stormVsFloor(x.Storm.Vigil, x.Storm.Floor)
			if ok {
				if d := r.Storm.Docker; d != nil {
					s += fmt.Sprintf("; Docker %.2f s", d.AllRunningSeconds)
				}
			}
			return s, ok
		},
		func(x *Results) bool {
			v, d := x.Storm.Vigil, x.Storm.Docker
			return stormMet(v, x.Storm.Floor) && d != nil && v.AllRunningSeconds < d.AllRunningSeconds
		})
	add("exit -> running p50", "<= runtime alone + 30 ms",
		func(x *Results) (string, bool) { return p50VsFloor(x.Latency.Vigil, x.Latency.FloorRuntime) },
		func(x *Results) bool { return p50Met(x.Latency.Vigil, x.Latency.FloorRuntime) })
	add("start p50 added by the default confinement (issue 26)", "<= 5 ms",
		func(x *Results) (string, bool) {
			c := x.Confinement
			if c == nil {
				return "", false
			}
			return fmt.Sprintf("%.1f ms vs %.1f ms without = %+.1f ms (n=%d each)", c.Defaults.P50, c.None.P50, c.AddedP50, c.Defaults.N), true
		},
		func(x *Results) bool { return x.Confinement != nil && x.Confinement.AddedP50 <= 5 })
	return rows
}

// stormVsFloor shows a storm beside the same storm on the runtime alone:
// the median times, their ratio and every run's.
func stormVsFloor(v, f *StormResult) (string, bool) {
	if v == nil || f == nil || f.AllRunningSeconds <= 0 {
		return "", false
	}
	s := fmt.Sprintf("%.2f s vs runtime alone %.2f s = %.2fx", v.AllRunningSeconds, f.AllRunningSeconds, v.AllRunningSeconds/f.AllRunningSeconds)
	if len(v.Runs) > 1 || len(f.Runs) > 1 {
		s += fmt.Sprintf(" (medians; each run: %v vs %v s)", v.Runs, f.Runs)
	}
	return s, true
}

// stormMet: the storm is at most 1.5x the runtime alone's (issues 17, 28).
func stormMet(v, f *StormResult) bool {
	return v != nil && f != nil && f.AllRunningSeconds > 0 && v.AllRunningSeconds <= 1.5*f.AllRunningSeconds
}

// p50VsFloor shows a restart latency's p50 beside the runtime alone's.
func p50VsFloor(v, f Dist) (string, bool) {
	if v.N == 0 || f.N == 0 {
		return "", false
	}
	return fmt.Sprintf("%.0f ms vs runtime alone %.0f ms = %+.0f ms", v.P50, f.P50, v.P50-f.P50), true
}

// p50Met: restarting adds at most 30 ms to the runtime alone's p50.
func p50Met(v, f Dist) bool { return v.N > 0 && f.N > 0 && v.P50-f.P50 <= 30 }

// withFloorOf gives a "before" the floor of the run it belongs to: the
// runtime alone is measured once per run.
func withFloorOf(before, run *Results) *Results {
	b := *before
	b.Latency.FloorRuntime, b.Latency.FloorClient = run.Latency.FloorRuntime, run.Latency.FloorClient
	b.Storm.Floor = run.Storm.Floor
	return &b
}

func steadyAt(r *Results, n int) *SteadyResult {
	for i := range r.Steady {
		if r.Steady[i].Containers == n {
			return &r.Steady[i]
		}
	}
	return nil
}

func largestSteady(r *Results) *SteadyResult {
	var best *SteadyResult
	for i := range r.Steady {
		if best == nil || r.Steady[i].Containers > best.Containers {
			best = &r.Steady[i]
		}
	}
	return best
}

func printGoals(r *Results) {
	if len(r.Goals) == 0 {
		return
	}
	fmt.Printf("\nGOALS (liveness per node), one run; before = %s, after = %s\n", orNone(r.Config.Before), r.Machine.Commit)
	printGoalRows(r.Goals, true)
	fmt.Printf("load average (1, 5, 15 min): %s at the start, %s at the end\n", r.Machine.LoadAtStart, r.Machine.LoadAtEnd)
}

// printGoalRows prints a goals table, with the before column or without.
func printGoalRows(rows []GoalRow, before bool) {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	if before {
		fmt.Fprintln(w, "metric\tgoal\tbefore\tafter\tmet")
	} else {
		fmt.Fprintln(w, "metric\tgoal\tmeasured\tmet")
	}
	for _, g := range rows {
		met := "no"
		if g.Met {
			met = "yes"
		}
		if before {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", g.Metric, g.Goal, orNone(g.Before), g.After, met)
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", g.Metric, g.Goal, g.After, met)
		}
	}
	w.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
