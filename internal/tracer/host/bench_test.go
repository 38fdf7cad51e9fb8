package host

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// Benchmarks of the host tracer (numbers in docs/tracer-host.md). Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/tracer/host/

// BenchmarkStartReady measures Run from start to the ready line in-process
// (BTF, capability probes, load, verify, attach).
func BenchmarkStartReady(b *testing.B) {
	tp := newTopo(b, topoOptions{})
	cfg := Config{SrcIP: tp.src, DstIP: tp.dst}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rt := startTracer(b, tp.hostA, cfg)
		total += time.Since(t0)
		rt.Stop(b)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/ready")
}

// BenchmarkProcess runs the real binary in a host namespace: process start
// to ready line, and peak resident memory after a burst of matched pings.
func BenchmarkProcess(b *testing.B) {
	bin := tracertest.PingpathBinary(b)
	tp := newTopo(b, topoOptions{})
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	var ready time.Duration
	var hwm float64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, "trace", "host", "--src-ip", tp.src.String(), "--dst-ip", tp.dst.String(),
			"--vm-interface", tp.hostA.vnet, "--phy-interface", tp.hostA.phy, "--output", os.DevNull)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := tp.hostA.ns.Start(cmd); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "ready ") {
		}
		ready += time.Since(t0)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := tp.vmA.Ping(ctx, nettest.PingOptions{Dst: tp.dst, ID: 99, FirstSeq: 1, Count: 5000, Wait: time.Second})
		cancel()
		if err != nil {
			b.Fatalf("ping: %v", err)
		}
		b.ReportMetric(float64(len(res.Replies)), "pings-answered")
		hwm = max(hwm, tracertest.StatusKB(cmd.Process.Pid, "VmHWM"))
		_ = cmd.Process.Signal(syscall.SIGINT)
		go func() { _, _ = bufioDrain(sc) }()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("tracer exit: %v", err)
		}
	}
	b.ReportMetric(float64(ready.Microseconds())/1e3/float64(b.N), "ms/ready")
	b.ReportMetric(float64(hwm)/1024, "MB-peak-RSS")
}

func bufioDrain(sc *bufio.Scanner) (int, error) {
	n := 0
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// BenchmarkBPFCost measures the kernel's own accounting (bpf_stats) of the
// tracer's programs: run time per program run for matched ICMP echo packets,
// and for unrelated UDP bridged across both hosts at the highest rate a Go
// sender reaches, plus the total BPF time per unrelated bridged packet and
// the flood rate with and without the tracer.
func BenchmarkBPFCost(b *testing.B) {
	tp := newTopo(b, topoOptions{})
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	defer tracertest.EnableStats(b).Close()
	floodFor := func(d time.Duration) int { return tracertest.FloodFor(b, tp.vmA, tp.dst, d) }
	for i := 0; i < b.N; i++ {
		base := floodFor(time.Second)
		rt := startTracer(b, tp.hostA, Config{SrcIP: tp.src, DstIP: tp.dst})
		ids := rt.ProgramIDs()

		s0 := tracertest.ReadStats(b, ids)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t0 := time.Now()
		res, err := tp.vmA.Ping(ctx, nettest.PingOptions{Dst: tp.dst, ID: 31, FirstSeq: 1, Count: 5000, Wait: time.Second})
		pingRate := float64(len(res.Replies)) / time.Since(t0).Seconds() // Ping returns once all replies are in
		cancel()
		if err != nil {
			b.Fatalf("ping: %v", err)
		}
		// A loaded machine may lose some of a flood; the cost per run holds.
		b.ReportMetric(float64(len(res.Replies)), "pings-answered")
		s1 := tracertest.ReadStats(b, ids)
		traced := floodFor(time.Second)
		s2 := tracertest.ReadStats(b, ids)
		matched, _ := s1.Sub(s0)
		matched.Report(b, "matched")
		unrelated, total := s2.Sub(s1)
		unrelated.Report(b, "unrelated")
		b.ReportMetric(float64(total.Nanoseconds())/float64(traced), "bpf-ns/bridged-pkt")
		b.ReportMetric(float64(base), "pps-untraced")
		b.ReportMetric(float64(traced), "pps-traced")
		st := rt.Stop(b)
		b.ReportMetric(pingRate, "matched-pings/s")
		b.ReportMetric(float64(st.Trailer.Counters["pings"]), "pings-traced")
		b.ReportMetric(float64(st.Trailer.Counters["ringbuf_lost"]), "ringbuf-lost")
	}
}
