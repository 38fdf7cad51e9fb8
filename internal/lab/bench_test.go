package lab_test

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

// BenchmarkRTT measures VM-to-VM ping RTT (50 pings, 10 ms apart, after a
// warm-up that resolves ARP) for each VM link and wire, and the RTT a
// 0.5 ms relay delay adds. Run with -benchtime 1x; numbers are reported as
// metrics (µs) and recorded in docs/lab.md.
func BenchmarkRTT(b *testing.B) {
	const delay = 500 * time.Microsecond
	cases := []struct {
		name string
		opts lab.Options
	}{
		{"veth-link/veth-wire", lab.Options{VMLink: lab.VMLinkVeth}},
		{"tap-link/veth-wire", lab.Options{VMLink: lab.VMLinkTap}},
		{"veth-link/relay", lab.Options{VMLink: lab.VMLinkVeth, Wire: lab.WireRelay}},
		{"tap-link/relay", lab.Options{VMLink: lab.VMLinkTap, Wire: lab.WireRelay}},
		{"tap-link/relay-0.5ms", lab.Options{VMLink: lab.VMLinkTap, WireDelay: delay}},
		{"tap-link/relay-userclock", lab.Options{VMLink: lab.VMLinkTap, Wire: lab.WireRelay, WireClock: wire.ClockUser}},
		{"tap-link/relay-0.5ms-userclock", lab.Options{VMLink: lab.VMLinkTap, WireDelay: delay, WireClock: wire.ClockUser}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l := labtest.Up(b, c.opts)
			ping(b, ctx, l, 3, "0.01") // ARP, caches
			var st pingStats
			for range b.N {
				st, _ = ping(b, ctx, l, 50, "0.01")
			}
			b.ReportMetric(float64(st.min.Microseconds()), "min-µs")
			b.ReportMetric(float64(st.avg.Microseconds()), "avg-µs")
			b.ReportMetric(float64(st.max.Microseconds()), "max-µs")
			if l.Wire == lab.WireRelay {
				if err := l.Down(ctx); err != nil {
					b.Fatal(err)
				}
				if late, ok := relayLateness(l); ok {
					b.ReportMetric(float64(late.Microseconds()), "relay-late-max-µs")
				}
			}
		})
	}
}

var lateMax = regexp.MustCompile(`late_max=(\S+)`)

// relayLateness reads the largest release lateness of either direction
// from the relay's final log lines.
func relayLateness(l *lab.Lab) (time.Duration, bool) {
	b, err := os.ReadFile(l.LogFile("wire"))
	if err != nil {
		return 0, false
	}
	var worst time.Duration
	found := false
	for _, m := range lateMax.FindAllSubmatch(b, -1) {
		d, err := time.ParseDuration(string(m[1]))
		if err == nil {
			worst, found = max(worst, d), true
		}
	}
	return worst, found
}
