package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/cluster"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// PhaseCost is what the cluster spent on one phase of the scale bench, per
// unit of work (a replica started, a restart, a run continued as new): the
// capacity model in the README multiplies these.
type PhaseCost struct {
	Units  int         `json:"units"`
	Server requestCost `json:"server"`
	Events int64       `json:"history_events"`
	// DBBytes is the growth of both databases (PostgreSQL grows by pages,
	// so it is meaningful over hundreds of units, not one).
	DBBytes int64   `json:"db_bytes"`
	CPUSecs float64 `json:"cluster_cpu_s"`
	// Per unit: requests (long polls apart), billable actions, history
	// events, and CPU milliseconds of every Temporal service and PostgreSQL
	// together (simnode's apart).
	RequestsPerUnit float64            `json:"requests_per_unit"`
	ActionsPerUnit  float64            `json:"actions_per_unit"`
	EventsPerUnit   float64            `json:"history_events_per_unit"`
	DBBytesPerUnit  float64            `json:"db_bytes_per_unit"`
	ClusterCPUMsPer float64            `json:"cluster_cpu_ms_per_unit"`
	CPUMsPerUnit    map[string]float64 `json:"cpu_ms_per_unit_by_process"`
}

func (p *PhaseCost) String() string {
	return fmt.Sprintf("per unit (%d): %.1f requests, %.1f actions, %.1f history events, %.0f database bytes, %.1f ms of cluster CPU",
		p.Units, p.RequestsPerUnit, p.ActionsPerUnit, p.EventsPerUnit, p.DBBytesPerUnit, p.ClusterCPUMsPer)
}

// costMeter counts a phase from its start: the frontend's counters, the
// history events in the database and each process's CPU.
type costMeter struct {
	c       *cluster.Cluster
	pids    func() map[string]int
	counts  serverCounts
	events  int64
	db      int64
	samples map[string]procSample
	began   time.Time
}

func startMeter(ctx context.Context, c *cluster.Cluster, pids func() map[string]int) (*costMeter, error) {
	m := &costMeter{c: c, pids: pids, samples: map[string]procSample{}}
	var err error
	if m.counts, err = scrapeServer(ctx, c.MetricsURL(), "default"); err != nil {
		return nil, err
	}
	if m.events, err = historyEventTotal(ctx, c); err != nil {
		return nil, err
	}
	if m.db, err = dbBytes(ctx, c); err != nil {
		return nil, err
	}
	for name, pid := range pids() {
		if s, err := sampleTree(pid); err == nil {
			m.samples[name] = s
		}
	}
	m.began = time.Now()
	return m, nil
}

func (m *costMeter) stop(ctx context.Context, units int) (*PhaseCost, error) {
	counts, err := scrapeServer(ctx, m.c.MetricsURL(), "default")
	if err != nil {
		return nil, err
	}
	events, err := historyEventTotal(ctx, m.c)
	if err != nil {
		return nil, err
	}
	db, err := dbBytes(ctx, m.c)
	if err != nil {
		return nil, err
	}
	p := &PhaseCost{Units: units, Server: diffCounts(m.counts, counts, time.Since(m.began)), Events: events - m.events,
		DBBytes: db - m.db, CPUMsPerUnit: map[string]float64{}}
	n := float64(max(units, 1))
	for name, pid := range m.pids() {
		s1, err := sampleTree(pid)
		s0, ok := m.samples[name]
		if err != nil || !ok {
			continue
		}
		secs := (s1.cpu - s0.cpu).Seconds()
		p.CPUMsPerUnit[name] = round3(secs * 1000 / n)
		if name != "simnode" {
			p.CPUSecs += secs
		}
	}
	p.CPUSecs = round1(p.CPUSecs)
	p.RequestsPerUnit = round3(p.Server.Requests / n)
	p.ActionsPerUnit = round3(p.Server.Actions / n)
	p.EventsPerUnit = round3(float64(p.Events) / n)
	p.DBBytesPerUnit = round1(float64(p.DBBytes) / n)
	p.ClusterCPUMsPer = round3(p.CPUSecs * 1000 / n)
	return p, nil
}

// dbBytes is the size of both of the cluster's databases.
func dbBytes(ctx context.Context, c *cluster.Cluster) (int64, error) {
	var total int64
	for _, db := range []string{"temporal", "temporal_visibility"} {
		n, err := dbSize(ctx, c, db)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// rolloverNode moves every replica of the fleet's last node to a new run
// (the rollover update): the cost of one continue-as-new, which each
// replica pays about once a day. It returns how many moved.
func rolloverNode(ctx context.Context, tc client.Client, cfg fleetConfig) (int, error) {
	i := cfg.Nodes - 1
	n := cfg.Replicas / cfg.Nodes
	if i < cfg.Replicas%cfg.Nodes {
		n++
	}
	dep, svc := fmt.Sprintf("fleet-%02d", i%cfg.Deployments+1), fmt.Sprintf("s%03d", i+1)
	err := parallel(n, 32, func(r int) error {
		id := replica.ID{Deployment: dep, Service: svc, Replica: r + 1}
		h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: id.WorkflowID(), UpdateName: replica.UpdateRollover, UpdateID: uuid.NewString(),
			Args:         []any{workflows.RolloverRequest{RequestID: uuid.NewString()}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return fmt.Errorf("rollover %s: %w", id.Ref(), err)
		}
		return h.Get(ctx, nil)
	})
	return n, err
}
