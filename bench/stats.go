package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Dist summarises a set of durations, in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	Min float64 `json:"min_ms"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func dist(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = float64(d.Microseconds()) / 1000
	}
	sort.Float64s(ms)
	return Dist{N: len(ms), Min: round1(ms[0]), P50: quantile(ms, 0.50), P95: quantile(ms, 0.95), P99: quantile(ms, 0.99), Max: round1(ms[len(ms)-1])}
}

// quantile is the nearest-rank quantile of sorted values.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return round1(sorted[max(i, 0)])
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func (d Dist) String() string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.0f  p95 %.0f  p99 %.0f ms (n=%d)", d.P50, d.P95, d.P99, d.N)
}

// procSample is a process's CPU time and resident memory at one moment.
type procSample struct {
	at    time.Time
	cpu   time.Duration // user + system, including waited-for children
	rssKB int64
	procs int // processes summed: 1 for one process
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now(), procs: 1}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which may contain spaces.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	var ticks int64
	// utime, stime, cutime, cstime (fields 14-17): a child that exits (a
	// PostgreSQL backend) moves its time to its parent's cutime, so a
	// tree's sum never falls.
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(fields[i], 10, 64)
		ticks += v
	}
	s.cpu = time.Duration(ticks) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKB, _ = strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	return s, nil
}

// cpuPercent is the CPU used between two samples, in % of one core.
func cpuPercent(a, b procSample) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return round1(100 * float64(b.cpu-a.cpu) / float64(wall))
}
