package vm_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/testenv"
)

// Benchmarks print their numbers with b.ReportMetric and b.Log; run with
//   go test -run '^$' -bench . -benchtime 1x ./internal/tracer/vm/
// (make bench). Results are in docs/tracers.md.

// buildBinary builds the real pingpath binary (CGO off), so start time and
// RSS are those of what users run, not of the test binary.
func buildBinary(b *testing.B) string {
	b.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("needs the go toolchain to build the pingpath binary")
	}
	out := filepath.Join(b.TempDir(), "pingpath")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "github.com/pingpath/pingpath/cmd/pingpath")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building pingpath: %v\n%s", err, msg)
	}
	return out
}

func procStatusKB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}

// procCPUSeconds is utime+stime of pid (10 ms resolution).
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends comm: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// BenchmarkStartReady measures process start → ready line, and the RSS
// (VmHWM, the peak) of the ready tracer. Targets: ≤ 0.3 s, ≤ 40 MB.
func BenchmarkStartReady(b *testing.B) {
	testenv.RequireRoot(b)
	bin := buildBinary(b)
	p := nettest.NewPair(b, srcIP+"/24", dstIP+"/24")
	var times []time.Duration
	var hwm, rss, cpu []float64
	for i := 0; i < 5; i++ {
		start := time.Now()
		tr := startTracerBinary(b, bin, p.A, vmArgs()...)
		times = append(times, time.Since(start))
		hwm = append(hwm, procStatusKB(tr.cmd.Process.Pid, "VmHWM")/1024)
		rss = append(rss, procStatusKB(tr.cmd.Process.Pid, "VmRSS")/1024)
		cpu = append(cpu, procCPUSeconds(tr.cmd.Process.Pid))
		tr.signal(os.Interrupt)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	sort.Float64s(hwm)
	b.ReportMetric(times[len(times)/2].Seconds(), "s-to-ready(median)")
	b.ReportMetric(times[len(times)-1].Seconds(), "s-to-ready(max)")
	b.ReportMetric(hwm[len(hwm)-1], "MB-peak-RSS")
	sort.Float64s(cpu)
	b.ReportMetric(cpu[len(cpu)/2], "cpu-s-to-ready(median)")
	b.Logf("start→ready: %v; CPU s (user+sys) at ready: %v; peak RSS MB: %v; RSS at ready MB: %v", times, cpu, hwm, rss)
}

// progStats is run time and count per program name.
type progStats map[string][2]uint64

func readStats(b *testing.B, ids []ebpf.ProgramID) progStats {
	b.Helper()
	s := progStats{}
	for _, id := range ids {
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			b.Fatal(err)
		}
		info, err := prog.Info()
		if err != nil {
			b.Fatal(err)
		}
		st, err := prog.Stats()
		prog.Close()
		if err != nil {
			b.Fatal(err)
		}
		// Both tracers load the same programs; sum them per name.
		v := s[info.Name]
		s[info.Name] = [2]uint64{v[0] + uint64(st.Runtime), v[1] + st.RunCount}
	}
	return s
}

func reportStats(b *testing.B, phase string, before, after progStats) {
	b.Helper()
	var names []string
	for n := range after {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		dt, dc := after[n][0]-before[n][0], after[n][1]-before[n][1]
		if dc == 0 {
			b.Logf("%-9s %-16s runs=0", phase, n)
			continue
		}
		per := float64(dt) / float64(dc)
		b.Logf("%-9s %-16s runs=%-8d %.0f ns/run", phase, n, dc, per)
		b.ReportMetric(per, "ns/run-"+phase+"-"+n)
	}
}

// BenchmarkBPFRunTime reads the kernel's bpf_stats (run_time_ns / run_cnt
// per program) for unrelated traffic (UDP in the traced namespace, which
// passes the namespace check; and in another namespace, which does not) and
// for matched pings. Target ≤ 150 ns per unrelated event.
func BenchmarkBPFRunTime(b *testing.B) {
	testenv.RequireRoot(b)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling bpf stats: %v", err)
	}
	defer stats.Close()
	mine, other := nettest.NewPair(b, srcIP+"/24", dstIP+"/24"), nettest.NewPair(b, srcIP+"/24", dstIP+"/24")
	tx := startTracer(b, mine.A, vmArgs()...)
	rx := startTracer(b, mine.B, vmArgs()...)
	ids := append(append([]ebpf.ProgramID{}, tx.progIDs...), rx.progIDs...)
	ctx := context.Background()
	dst := netip.MustParseAddrPort(dstIP + ":9")

	// Steady state: the programs learn their namespace's struct net from the
	// first packet of it (pingpath.h pp_own_net).
	if _, err := mine.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 98, Count: 1}); err != nil {
		b.Fatal(err)
	}
	s0 := readStats(b, ids)
	if _, err := other.A.UDPFlood(ctx, dst, 200000); err != nil {
		b.Fatal(err)
	}
	s1 := readStats(b, ids)
	if _, err := mine.A.UDPFlood(ctx, dst, 200000); err != nil {
		b.Fatal(err)
	}
	s2 := readStats(b, ids)
	res, err := mine.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 99, Count: 5000})
	if err != nil {
		b.Fatal(err)
	}
	s3 := readStats(b, ids)
	reportStats(b, "otherns", s0, s1)
	reportStats(b, "samens", s1, s2)
	reportStats(b, "matched", s2, s3)
	b.Logf("matched phase: %d pings, %d replies", res.Sent, len(res.Replies))
	tx.signal(os.Interrupt)
	rx.signal(os.Interrupt)
}

// BenchmarkMatchedPingRate floods pings between traced namespaces (paced at
// 10 000/s, then unpaced) and checks that every ping gets its records and
// the ring buffer lost nothing. Target ≥ 10 000 pings/s without loss.
func BenchmarkMatchedPingRate(b *testing.B) {
	testenv.RequireRoot(b)
	p := nettest.NewPair(b, srcIP+"/24", dstIP+"/24")
	for _, run := range []struct {
		name     string
		count    int
		interval time.Duration
	}{{"paced10k", 30000, 100 * time.Microsecond}, {"unpaced", 30000, 0}} {
		tx := startTracer(b, p.A, vmArgs()...)
		rx := startTracer(b, p.B, vmArgs()...)
		start := time.Now()
		res, err := p.A.Ping(context.Background(), nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 7, FirstSeq: 0,
			Count: run.count, Interval: run.interval, Wait: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		txs, rxs := tx.signal(os.Interrupt), rx.signal(os.Interrupt)
		rate := float64(res.Sent) / elapsed.Seconds()
		b.ReportMetric(rate, "pings/s-"+run.name)
		b.Logf("%s: sent %d replies %d in %v (%.0f/s); tx records %d lost %d incomplete %d; rx records %d lost %d incomplete %d",
			run.name, res.Sent, len(res.Replies), elapsed.Round(time.Millisecond), rate,
			len(txs.Pings), txs.Trailer.Counters["ringbuf_lost"], txs.Trailer.Counters["incomplete"],
			len(rxs.Pings), rxs.Trailer.Counters["ringbuf_lost"], rxs.Trailer.Counters["incomplete"])
		if txs.Trailer.Counters["ringbuf_lost"] != 0 || rxs.Trailer.Counters["ringbuf_lost"] != 0 {
			b.Errorf("%s: ring buffer lost events", run.name)
		}
	}
}
