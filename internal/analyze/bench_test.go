package analyze

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used; records
// per CPU-second is the per-core rate even on a machine busy with other work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRun measures parse + join + summary of a whole run directory:
// 8 tracer streams of 50 000 pings (one record per ping and tracer) plus
// ping's output. It reports records/s on one core (go test -cpu 1).
func BenchmarkRun(b *testing.B) {
	dir := b.TempDir()
	const pings = 50_000
	synthRun{pings: pings, firstSeq: 1, id: 1, sharedClk: true}.write(b, dir)
	var bytes int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
			bytes += st.Size()
		}
	}
	records := int64(pings * 8)
	b.SetBytes(bytes)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r, err := Run(dir)
		if err != nil {
			b.Fatal(err)
		}
		if r.Counts.Complete != pings {
			b.Fatalf("complete %d", r.Counts.Complete)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if cpu > 0 {
		b.ReportMetric(float64(records)*float64(b.N)/cpu.Seconds(), "records/cpu-s")
	}
}
