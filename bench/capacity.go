package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// The capacity model: a fleet's cost is a sum of measured unit costs, per
// node (the node watch's lease heartbeats and roster queries), per healthy
// replica (nothing, when all goes well), per continue-as-new (about one a
// replica-day), per restart (the crash rate) and per replica started. Each
// unit cost comes from one scale run (make bench-scale); the model scales
// them to another fleet. `go run ./bench --model RESULT.json` prints it for a
// million replicas on 10,000 nodes and, with --model-check SMALLER.json,
// predicts RESULT's own steady state from the smaller run to check it.

// capacityInputs are the unit costs of one scale run.
type capacityInputs struct {
	Replicas, Nodes int
	// Per node-hour and per replica-hour in the healthy steady state.
	NodeRequestsH, NodeActionsH float64
	ReplicaRequestsH            float64
	// Steady CPU of the whole cluster (Temporal's services and PostgreSQL),
	// % of one core per node: the node-level work dominates it.
	NodeCPUPercent float64
	// Bytes of both databases per supervised replica (its open run).
	BytesPerReplica float64
	// Per unit: a continue-as-new, a restart, a replica started.
	CAN, Restart, Start *PhaseCost
}

func inputsFrom(r *Results) (*capacityInputs, error) {
	f, cfg := r.Fleet, r.Config.Fleet
	if f == nil || cfg == nil || f.Steady == nil || f.Database == nil {
		return nil, errors.New("not a scale run with a steady state (make bench-scale)")
	}
	st := f.Steady
	in := &capacityInputs{Replicas: cfg.Replicas, Nodes: cfg.Nodes,
		NodeRequestsH:    st.NodeRequestsPerNodeHour,
		NodeActionsH:     st.Cost.perHour(st.Cost.Actions) / float64(cfg.Nodes),
		ReplicaRequestsH: st.RequestsPerReplicaHour,
		NodeCPUPercent:   st.ClusterCPUPercent / float64(cfg.Nodes),
		BytesPerReplica:  f.Database.BytesPerReplica,
		CAN:              f.ContinueAsNewCost, Restart: f.StormCost, Start: f.StartCost,
	}
	return in, nil
}

// CapacityModel is what a cluster needs for a fleet, by the model.
type CapacityModel struct {
	Replicas             int     `json:"replicas"`
	Nodes                int     `json:"nodes"`
	CrashesPerReplicaH   float64 `json:"crashes_per_replica_hour"`
	RetentionDays        float64 `json:"retention_days"`
	RequestsPerS         float64 `json:"requests_per_s"`
	ActionsPerS          float64 `json:"actions_per_s"`
	ActionsReplicaMonth  float64 `json:"actions_per_replica_month"`
	NodeActionsShare     float64 `json:"node_level_share_of_actions"`
	ContinueAsNewPerS    float64 `json:"continue_as_new_per_s"`
	SteadyCores          float64 `json:"steady_cluster_cores"`
	HistoryEventsPerDay  float64 `json:"history_events_per_day"`
	DatabaseGB           float64 `json:"database_gb"`
	GrowthGBPerDay       float64 `json:"growth_gb_per_day"`
	StartCoreHours       float64 `json:"start_all_core_hours"`
	RestartCoreMsPerUnit float64 `json:"restart_cluster_cpu_ms"`
	HistoryShards        int     `json:"history_shards"`
}

const hoursPerMonth = 730

// at scales the unit costs to replicas on nodes.
func (in *capacityInputs) at(replicas, nodes int, crashes, retentionDays float64) CapacityModel {
	R, N := float64(replicas), float64(nodes)
	m := CapacityModel{Replicas: replicas, Nodes: nodes, CrashesPerReplicaH: crashes, RetentionDays: retentionDays}
	reqH := N*in.NodeRequestsH + R*in.ReplicaRequestsH
	actH := N * in.NodeActionsH
	coreMsH := N * in.NodeCPUPercent / 100 * 3600 * 1000
	var eventsDay, bytesDay float64
	add := func(p *PhaseCost, perHour float64) {
		if p == nil {
			return
		}
		reqH += perHour * p.RequestsPerUnit
		actH += perHour * p.ActionsPerUnit
		coreMsH += perHour * p.ClusterCPUMsPer
		eventsDay += 24 * perHour * p.EventsPerUnit
		bytesDay += 24 * perHour * math.Max(p.DBBytesPerUnit, 0)
	}
	canH := R / 24 // one run a replica-day continues as new
	add(in.CAN, canH)
	add(in.Restart, R*crashes)
	m.RequestsPerS = round1(reqH / 3600)
	m.ActionsPerS = round1(actH / 3600)
	m.ActionsReplicaMonth = round1(actH * hoursPerMonth / R)
	m.NodeActionsShare = round3(N * in.NodeActionsH / actH)
	m.ContinueAsNewPerS = round3(canH / 3600)
	m.SteadyCores = round3(coreMsH / 3600 / 1000) // core-ms per hour → cores
	m.HistoryEventsPerDay = math.Round(eventsDay)
	// The open runs, and the closed ones kept for the namespace's retention.
	m.GrowthGBPerDay = round3(bytesDay / 1e9)
	m.DatabaseGB = round1((R*in.BytesPerReplica + retentionDays*bytesDay) / 1e9)
	if in.Start != nil {
		m.StartCoreHours = round3(R * in.Start.ClusterCPUMsPer / 1000 / 3600)
	}
	if in.Restart != nil {
		m.RestartCoreMsPerUnit = in.Restart.ClusterCPUMsPer
	}
	m.HistoryShards = shardsFor(replicas)
	return m
}

// shardsFor is the history shard count for a fleet: fixed when the cluster
// is created, it caps the history hosts (a shard is owned by one host at a
// time); one shard per 2,000 open replicas, at least 512 (Temporal's advice
// for a production cluster that will grow), a power of two.
func shardsFor(replicas int) int {
	n := 512
	for n*2000 < replicas {
		n *= 2
	}
	return n
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func readResults(path string) (*Results, error) {
	var r Results
	return &r, readJSON(path, &r)
}

// attachedSteady is a steady-state window measured beside a scale run by
// hand, on its cluster (bench/results/*-steady.json): it replaces the run's
// own steady state in the model when that one is void.
type attachedSteady struct {
	Nodes                   int     `json:"nodes"`
	Replicas                int     `json:"replicas"`
	RequestsPerReplicaHour  float64 `json:"requests_per_replica_hour"`
	NodeRequestsPerNodeHour float64 `json:"node_level_requests_per_node_hour"`
	Actions                 float64 `json:"actions"`
	IntervalS               float64 `json:"interval_s"`
	ClusterCPUPercent       float64 `json:"cluster_cpu_percent_of_one_core"`
}

func (a *attachedSteady) apply(in *capacityInputs) {
	in.NodeRequestsH = a.NodeRequestsPerNodeHour
	in.NodeActionsH = a.Actions / (a.IntervalS / 3600) / float64(a.Nodes)
	in.ReplicaRequestsH = a.RequestsPerReplicaHour
	in.NodeCPUPercent = a.ClusterCPUPercent / float64(a.Nodes)
}

// printModel prints the model of a million replicas on 10,000 nodes from
// path's unit costs and, given check, the steady state that check's unit
// costs predict for path's fleet beside what path measured.
func printModel(w io.Writer, path, check, steady string) error {
	r, err := readResults(path)
	if err != nil {
		return err
	}
	in, err := inputsFrom(r)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var att *attachedSteady
	if steady != "" {
		att = &attachedSteady{}
		if err := readJSON(steady, att); err != nil || att.Nodes < 1 || att.IntervalS <= 0 {
			return fmt.Errorf("--model-steady %s: not a steady window (nodes, interval_s): %v", steady, err)
		}
		att.apply(in)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "unit costs from %s (%d replicas, %d nodes, commit %s):\n", path, in.Replicas, in.Nodes, r.Machine.Commit)
	fmt.Fprintf(&b, "  per node-hour: %.0f requests, %.0f actions, %.2f %% of a core; per replica-hour: %.4f requests; %.0f bytes per replica\n",
		in.NodeRequestsH, in.NodeActionsH, in.NodeCPUPercent, in.ReplicaRequestsH, in.BytesPerReplica)
	for _, u := range []struct {
		name string
		p    *PhaseCost
	}{{"continue-as-new", in.CAN}, {"restart (storm)", in.Restart}, {"start", in.Start}} {
		if u.p != nil {
			fmt.Fprintf(&b, "  %s: %s\n", u.name, u.p)
		}
	}
	for _, m := range []CapacityModel{in.at(in.Replicas, in.Nodes, 0.01, 7), in.at(1_000_000, 10_000, 0.01, 7)} {
		fmt.Fprintf(&b, "model at %d replicas on %d nodes (1 %% crash per replica-hour, 7-day retention):\n", m.Replicas, m.Nodes)
		j, _ := json.MarshalIndent(m, "  ", "  ")
		fmt.Fprintf(&b, "  %s\n", j)
	}
	if check != "" {
		small, err := readResults(check)
		if err != nil {
			return err
		}
		sin, err := inputsFrom(small)
		if err != nil {
			return fmt.Errorf("%s: %w", check, err)
		}
		p := sin.at(in.Replicas, in.Nodes, 0, 0)
		st := r.Fleet.Steady
		reqS, actS, cpu := st.Cost.Requests/st.Cost.Seconds, st.Cost.Actions/st.Cost.Seconds, st.ClusterCPUPercent
		if att != nil {
			p = sin.at(att.Replicas, att.Nodes, 0, 0)
			reqS = (att.RequestsPerReplicaHour*float64(att.Replicas) + att.NodeRequestsPerNodeHour*float64(att.Nodes)) / 3600
			actS, cpu = att.Actions/att.IntervalS, att.ClusterCPUPercent
		}
		fmt.Fprintf(&b, "check: the healthy steady state of %d replicas on %d nodes predicted from %s (%d replicas) vs measured:\n",
			p.Replicas, p.Nodes, check, sin.Replicas)
		fmt.Fprintf(&b, "  requests/s %.2f vs %.2f; actions/s %.2f vs %.2f; cluster CPU %.1f %% vs %.1f %% of a core; database %.2f vs %.2f GB\n",
			p.RequestsPerS, reqS, p.ActionsPerS, actS, p.SteadyCores*100, cpu,
			float64(in.Replicas)*sin.BytesPerReplica/1e9, float64(in.Replicas)*in.BytesPerReplica/1e9)
	}
	_, err = io.WriteString(w, b.String())
	return err
}
