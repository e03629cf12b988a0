package main

import (
	"math"
	"testing"
)

// The model is the sum of its unit costs, scaled.
func TestCapacityModelScalesUnitCosts(t *testing.T) {
	in := &capacityInputs{Replicas: 1000, Nodes: 10, NodeRequestsH: 720, NodeActionsH: 720, NodeCPUPercent: 0.5,
		BytesPerReplica: 40_000,
		CAN:             &PhaseCost{RequestsPerUnit: 10, ActionsPerUnit: 5, EventsPerUnit: 20, DBBytesPerUnit: 10_000, ClusterCPUMsPer: 36},
		Restart:         &PhaseCost{RequestsPerUnit: 8, ActionsPerUnit: 4, EventsPerUnit: 12, DBBytesPerUnit: 2_000, ClusterCPUMsPer: 72},
		Start:           &PhaseCost{ClusterCPUMsPer: 3600}}
	m := in.at(24_000, 100, 0.01, 7)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		// 100 nodes x 720/h + 1,000 continue-as-new/h x 10 + 240 restarts/h x 8.
		{"requests/s", m.RequestsPerS, math.Round((72_000+10_000+1_920)/3600.0*10) / 10},
		{"actions/s", m.ActionsPerS, math.Round((72_000+5_000+960)/3600.0*10) / 10},
		{"actions per replica-month", m.ActionsReplicaMonth, math.Round((72_000+5_000+960)*730/24_000.0*10) / 10},
		{"cores", m.SteadyCores, math.Round((0.5+(1000*36+240*72)/3600.0/1000)*1000) / 1000},
		{"events/day", m.HistoryEventsPerDay, 24 * (1000*20 + 240*12)},
		{"growth GB/day", m.GrowthGBPerDay, math.Round(24*(1000*10_000+240*2_000)/1e9*1000) / 1000},
		{"database GB", m.DatabaseGB, math.Round((24_000*40_000+7*24*(1000*10_000+240*2_000))/1e9*10) / 10},
		{"start core-hours", m.StartCoreHours, 24_000 * 3.6 / 3600},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	for replicas, want := range map[int]int{1: 512, 1_000_000: 512, 1_024_001: 1024, 10_000_000: 8192} {
		if got := shardsFor(replicas); got != want {
			t.Errorf("shardsFor(%d) = %d, want %d", replicas, got, want)
		}
	}
}
