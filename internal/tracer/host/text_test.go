package host

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
)

// The text view keeps the origin's line shapes (research notes §1.2) so
// people and scripts used to icmp_drop_detector.py can read it.
func TestTextView(t *testing.T) {
	tool := &Tool{
		cfg: Config{SrcIP: netip.MustParseAddr("192.168.77.83"), DstIP: netip.MustParseAddr("192.168.76.244"),
			VMInterfaces: []string{"vnet35"}, PhyInterfaces: []string{"enp24s0f0np0"}, Timeout: time.Second, Role: "auto"},
		ifindexOf: map[string]uint32{"vnet35": 62, "enp24s0f0np0": 3},
	}
	start := time.Date(2026, 2, 6, 16, 0, 26, 0, time.Local)
	h := &record.Header{StartMonoNS: 1_000_000_000, StartWallNS: start.UnixNano(),
		Probes: []record.Probe{{Stage: "req_in", Method: "raw_tracepoint", Target: "netif_receive_skb", Available: true}}}
	var b bytes.Buffer
	tool.TextHeader(&b, h)
	c, out := newTestCorrelator("auto")
	for _, e := range senderPing(15812, 1, 1_450_000_000) {
		c.Add(e)
	}
	c.Add(senderPing(15813, 1, 3_000_000_000)[0])
	c.Add(senderPing(15813, 1, 3_000_000_000)[1])
	c.Flush(10_000_000_000)
	tool.TextPing(&b, h, out.pings[0])
	tool.TextDrop(&b, h, out.drops[0])
	tool.TextTrailer(&b, h, &record.Trailer{ExitReason: "signal", Counters: map[string]uint64{"pings": 1}})
	got := b.String()
	for _, want := range []string{
		"Source IP: 192.168.77.83\nDestination IP: 192.168.76.244\n",
		"VM Interface(s): vnet35(ifindex=62)\n",
		"Flow path (sender host):\n  [0] Request RX at vnet35\n  [1] Request TX at enp24s0f0np0\n",
		"Flow path (receiver host):\n  [0] Request RX at enp24s0f0np0\n",
		"Tracing... Hit Ctrl-C to end.\n",
		"2026-02-06 16:00:26.450 [complete] ID=15812 Seq=1 Role=sender ReqRX:vnet0 ReqTX:eth0 RepRX:eth1 RepTX:vnet0\n",
		"  Latency(us): ReqInternal=80.0  External=400.0  RepInternal=55.0  Total=535.0\n" + strings.Repeat("-", 80) + "\n",
		"=== ICMP Drop Detected: 2026-02-06 16:00:28.000 ===\nFlow: 192.168.77.83 -> 192.168.76.244 (ID=15813, Seq=1) Role=sender\n",
		"  [1] ReqTX: recorded at eth0\n  [2] RepRX: MISSING\n",
		"Drop Location: EXTERNAL (network or peer)\n  Request sent from eth0 but Reply NOT received at enp24s0f0np0\n",
		"Total flows tracked: 2\nComplete flows: 1\n",
		"External drops: 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("text view lacks %q; got:\n%s", want, got)
		}
	}
}
