package analyze

import (
	"path/filepath"
	"sort"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse"
)

// NodeCost is what the pingpath tracers of one machine cost it, as they
// measured it themselves (the cost in each record stream's trailer): the
// run time of their BPF programs plus the CPU time of their processes,
// from their ready lines to the end of tracing.
type NodeCost struct {
	// Node is the machine's role in the run (manifest), else the streams'
	// hostname.
	Node    string   `json:"node"`
	Tracers []string `json:"tracers"`
	BPFUS   float64  `json:"bpf_us"`     // BPF run time, all CPUs
	ProcUS  float64  `json:"process_us"` // tracer processes' CPU time
	// USPerPing is (BPF + process) µs per ping sent, BPFUSPerPing the BPF
	// part alone (0 when no ping count is known).
	USPerPing    float64 `json:"us_per_ping"`
	BPFUSPerPing float64 `json:"bpf_us_per_ping"`
	// PingsBPFUSPerPing is the part of BPFUSPerPing spent in hook runs
	// that emitted an event, i.e. on the pings' own packets; the rest ran
	// for every other packet (or write) of the machine that passed the
	// hooks, which a busy host has many of whatever the ping count. Absent
	// when no tracer of the node told them apart (tracers before
	// 2026-12-06) or nothing matched.
	PingsBPFUSPerPing *float64 `json:"pings_bpf_us_per_ping,omitempty"`
	// OtherBPFRuns is the number of runs for other packets (with the split).
	OtherBPFRuns uint64 `json:"other_bpf_runs,omitempty"`
	// CPUPercent is the node's tracers together, in percent of one CPU, over
	// the time they traced; PeakCPUPercent the highest any of them reached
	// over its --max-cpu window.
	CPUPercent     float64 `json:"cpu_percent"`
	PeakCPUPercent float64 `json:"peak_cpu_percent"`
	// Detached lists the tracers that stopped themselves because they cost
	// more than their --max-cpu.
	Detached []string `json:"detached,omitempty"`
}

// nodeCosts sums the tracers' own cost per machine. pings is the number of
// pings the per-ping figures divide by.
func nodeCosts(m *manifest.Manifest, files []*parse.File, pings int) []NodeCost {
	roleOf := map[string]string{}
	var order []string
	if m != nil {
		for _, n := range m.Nodes {
			order = append(order, n.Role)
			for _, t := range n.Tracers {
				roleOf[filepath.Base(t.File)] = n.Role
			}
		}
	}
	byNode := map[string]*NodeCost{}
	pingsNS := map[string]float64{}
	otherRuns := map[string]uint64{}
	for _, f := range files {
		c := f.Cost
		if c == nil {
			continue
		}
		node := roleOf[filepath.Base(f.Path)]
		if node == "" {
			node = f.Hostname
		}
		if node == "" {
			node = "unknown"
		}
		nc := byNode[node]
		if nc == nil {
			nc = &NodeCost{Node: node}
			byNode[node] = nc
		}
		nc.Tracers = append(nc.Tracers, f.Tool)
		nc.BPFUS += float64(c.BPFNS) / 1e3
		if c.MatchedBPFRuns > 0 {
			pingsNS[node] += float64(c.MatchedBPFNS)
			otherRuns[node] += c.BPFRuns - min(c.MatchedBPFRuns, c.BPFRuns)
		}
		nc.ProcUS += float64(c.UserNS) / 1e3
		if c.WallNS > 0 {
			nc.CPUPercent += float64(c.TotalNS()) / float64(c.WallNS) * 100
		}
		nc.PeakCPUPercent = max(nc.PeakCPUPercent, c.PeakCPUPercent)
		if f.DetachedWallNS != 0 {
			nc.Detached = append(nc.Detached, f.Tool)
		}
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	rank := func(n string) int {
		for i, o := range order {
			if o == n {
				return i
			}
		}
		return len(order)
	}
	sort.Slice(nodes, func(i, j int) bool {
		if ri, rj := rank(nodes[i]), rank(nodes[j]); ri != rj {
			return ri < rj
		}
		return nodes[i] < nodes[j]
	})
	out := make([]NodeCost, 0, len(nodes))
	for _, n := range nodes {
		nc := byNode[n]
		sort.Strings(nc.Tracers)
		if pings > 0 {
			nc.USPerPing = (nc.BPFUS + nc.ProcUS) / float64(pings)
			nc.BPFUSPerPing = nc.BPFUS / float64(pings)
			if ns, ok := pingsNS[n]; ok {
				v := ns / 1e3 / float64(pings)
				nc.PingsBPFUSPerPing, nc.OtherBPFRuns = &v, otherRuns[n]
			}
		}
		out = append(out, *nc)
	}
	return out
}
