package analyze

import (
	"math"
	"testing"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

func TestNodeCosts(t *testing.T) {
	m := &manifest.Manifest{Nodes: []manifest.Node{
		{Role: manifest.RoleSenderVM, Tracers: []manifest.Tracer{{Tool: "vm", File: "sender-vm.vm.jsonl"}}},
		{Role: manifest.RoleSenderHost, Tracers: []manifest.Tracer{
			{Tool: "host", File: "sender-host.host.jsonl"}, {Tool: "vhost-tx", File: "sender-host.vhost-tx.jsonl"}}},
	}}
	files := []*parse.File{
		{Path: "/run/sender-host.vhost-tx.jsonl", Tool: "vhost-tx",
			Cost: &record.Cost{WallNS: 10e9, BPFNS: 2e6, UserNS: 8e6, PeakCPUPercent: 0.3}},
		{Path: "/run/sender-host.host.jsonl", Tool: "host", DetachedWallNS: 1,
			Cost: &record.Cost{WallNS: 5e9, BPFNS: 4e6, UserNS: 1e6, PeakCPUPercent: 7.5, BPFRuns: 30000, MatchedBPFNS: 3e5, MatchedBPFRuns: 400}},
		{Path: "/run/sender-vm.vm.jsonl", Tool: "vm", Cost: &record.Cost{WallNS: 10e9, BPFNS: 1e6, UserNS: 1e6}},
		{Path: "/run/ping.log", Kind: parse.KindPing}, // no cost: not a tracer
		{Path: "/run/elsewhere.jsonl", Tool: "vm", Hostname: "h9", Cost: &record.Cost{WallNS: 1e9, BPFNS: 1e3}},
	}
	got := nodeCosts(m, files, 100)
	if len(got) != 3 || got[0].Node != manifest.RoleSenderVM || got[1].Node != manifest.RoleSenderHost || got[2].Node != "h9" {
		t.Fatalf("nodes %+v: want sender-vm, sender-host (manifest order), then h9 (hostname)", got)
	}
	sh := got[1]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	// BPF 6 ms + process 9 ms over 100 pings; % of a CPU: 10 ms / 10 s + 5 ms / 5 s.
	if !near(sh.BPFUS, 6000) || !near(sh.ProcUS, 9000) || !near(sh.USPerPing, 150) || !near(sh.BPFUSPerPing, 60) ||
		!near(sh.CPUPercent, 0.2) || sh.PeakCPUPercent != 7.5 {
		t.Errorf("sender-host %+v", sh)
	}
	// Only the host tracer told the pings' runs apart: 0.3 ms over 100
	// pings, and 29 600 runs for other traffic.
	if p := sh.PingsBPFUSPerPing; p == nil || !near(*p, 3) || sh.OtherBPFRuns != 29600 {
		t.Errorf("sender-host pings' share %v, other runs %d: want 3 µs per ping, 29600", p, sh.OtherBPFRuns)
	}
	if got[0].PingsBPFUSPerPing != nil {
		t.Errorf("sender-vm: a split without matched figures: %v", *got[0].PingsBPFUSPerPing)
	}
	if len(sh.Tracers) != 2 || sh.Tracers[0] != "host" || len(sh.Detached) != 1 || sh.Detached[0] != "host" {
		t.Errorf("sender-host tracers %v detached %v", sh.Tracers, sh.Detached)
	}
	if none := nodeCosts(nil, files, 0); none[0].USPerPing != 0 {
		t.Errorf("per ping without a ping count: %+v", none[0])
	}
}
