package host

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/testenv"
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
		rt.stop(b)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/ready")
}

// BenchmarkProcess runs the real binary in a host namespace: process start
// to ready line, and peak resident memory after a burst of matched pings.
func BenchmarkProcess(b *testing.B) {
	bin := pingpathBinary(b)
	tp := newTopo(b, topoOptions{})
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	var ready time.Duration
	var hwm int
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
		hwm = max(hwm, statusKB(b, cmd.Process.Pid, "VmHWM"))
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

// statusKB reads a "Name: N kB" line of /proc/PID/status.
func statusKB(b testing.TB, pid int, name string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

// pingpathBinary builds cmd/pingpath once (or uses $PINGPATH_BIN).
func pingpathBinary(b testing.TB) string {
	if p := os.Getenv("PINGPATH_BIN"); p != "" {
		return p
	}
	goBin := testenv.RequireProgram(b, "go")
	out := filepath.Join(b.TempDir(), "pingpath")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/pingpath/pingpath/cmd/pingpath")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building pingpath: %v\n%s", err, msg)
	}
	return out
}

// BenchmarkBPFCost measures the kernel's own accounting (bpf_stats) of the
// tracer's programs: run time per program run for matched ICMP echo packets,
// and for unrelated UDP bridged across both hosts at the highest rate a Go
// sender reaches, plus the total BPF time per unrelated bridged packet and
// the flood rate with and without the tracer.
func BenchmarkBPFCost(b *testing.B) {
	tp := newTopo(b, topoOptions{})
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	testenv.Require(b, err == nil, fmt.Sprintf("bpf_stats: %v", err))
	defer stats.Close()
	floodFor := func(d time.Duration) int {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		n, err := tp.vmA.UDPFlood(ctx, netip.AddrPortFrom(tp.dst, 9), 0)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	for i := 0; i < b.N; i++ {
		base := floodFor(time.Second)
		rt := startTracer(b, tp.hostA, Config{SrcIP: tp.src, DstIP: tp.dst})
		progs := openPrograms(b, rt)

		s0 := snapshot(b, progs)
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
		s1 := snapshot(b, progs)
		traced := floodFor(time.Second)
		s2 := snapshot(b, progs)
		for name, p := range progs {
			_ = p
			if d := s1[name].sub(s0[name]); d.runs > 0 {
				b.ReportMetric(d.perRun(), "ns/run-matched-"+name)
			}
			if d := s2[name].sub(s1[name]); d.runs > 0 {
				b.ReportMetric(d.perRun(), "ns/run-unrelated-"+name)
			}
		}
		var total time.Duration
		for name := range progs {
			total += s2[name].sub(s1[name]).time
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(traced), "bpf-ns/bridged-pkt")
		b.ReportMetric(float64(base), "pps-untraced")
		b.ReportMetric(float64(traced), "pps-traced")
		for _, p := range progs {
			p.Close()
		}
		st := rt.stop(b)
		b.ReportMetric(pingRate, "matched-pings/s")
		b.ReportMetric(float64(st.Trailer.Counters["pings"]), "pings-traced")
		b.ReportMetric(float64(st.Trailer.Counters["ringbuf_lost"]), "ringbuf-lost")
	}
}

type progStat struct {
	runs uint64
	time time.Duration
}

func (s progStat) sub(o progStat) progStat { return progStat{s.runs - o.runs, s.time - o.time} }
func (s progStat) perRun() float64         { return float64(s.time.Nanoseconds()) / float64(s.runs) }

func openPrograms(b testing.TB, rt *runningTracer) map[string]*ebpf.Program {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := map[string]*ebpf.Program{}
	for _, id := range rt.ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			b.Fatal(err)
		}
		info, err := p.Info()
		if err != nil {
			b.Fatal(err)
		}
		out[info.Name] = p
	}
	return out
}

func snapshot(b testing.TB, progs map[string]*ebpf.Program) map[string]progStat {
	out := map[string]progStat{}
	for name, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		out[name] = progStat{s.RunCount, s.Runtime}
	}
	return out
}
