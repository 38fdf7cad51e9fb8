package report

import (
	"testing"

	"github.com/pingpath/pingpath/internal/analyze"
)

func TestCostLine(t *testing.T) {
	c := analyze.NodeCost{Node: "sender-host", Tracers: []string{"host", "vhost-rx"}, USPerPing: 12.34, BPFUSPerPing: 4.5, CPUPercent: 0.256}
	if got, want := costLine(c), "measurement cost on sender-host: 12.3 µs per ping, 0.26 % of a CPU (BPF 4.5 µs per ping; host, vhost-rx)"; got != want {
		t.Errorf("costLine = %q, want %q", got, want)
	}
	pings := 0.84
	c.PingsBPFUSPerPing, c.OtherBPFRuns = &pings, 1234
	if got, want := costLine(c), "measurement cost on sender-host: 12.3 µs per ping, 0.26 % of a CPU (BPF 4.5 µs per ping, 0.8 of it on the pings' packets and the rest in 1234 runs for other traffic; host, vhost-rx)"; got != want {
		t.Errorf("costLine = %q, want %q", got, want)
	}
	c.PingsBPFUSPerPing = nil
	c.Detached, c.PeakCPUPercent = []string{"host"}, 7.25
	if got, want := costLine(c), "measurement cost on sender-host: 12.3 µs per ping, 0.26 % of a CPU (BPF 4.5 µs per ping; host, vhost-rx); host detached itself over --max-cpu (peak 7.2 %)"; got != want {
		t.Errorf("costLine = %q, want %q", got, want)
	}
}
