// Package e2e runs pingpath end to end on the built-in lab: the real binary
// (`pingpath run`, `analyze`, `compare`) against four network namespaces with
// real sshd, real tracers and real pings, with known impairments injected on
// the wire between the hosts. The tests check that what the report says is
// what the lab did (docs/accuracy.md); the benchmark measures what tracing
// costs the traffic it observes (docs/observer-effect.md).
//
// Everything needs root, sshd and /dev/net/tun: without them the tests skip
// (and fail under CI=true, see internal/testenv).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// pathSegments are the segments of the product's model (docs/analysis.md),
// in path order. The residuals ("virtualization unmeasured") are not
// segments: they absorb whatever no tracer sees and are judged separately.
var pathSegments = []string{"A", "B_1", "B", "CJ", "D", "E", "F", "G", "H", "I_1", "I", "K", "L", "M"}

// stats is a STATS object of report.json (pingpath.report/v1).
type stats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_us"`
	Min  float64 `json:"min_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
}

// reportDrop is one entry of report.json's drops.
type reportDrop struct {
	ID          int    `json:"id"`
	Seq         int    `json:"seq"`
	Status      string `json:"status"`
	LastSeen    string `json:"last_seen"`
	FirstMissed string `json:"first_missed"`
	Segment     string `json:"segment"`
	Reason      string `json:"reason"`
}

// perPing is one entry of report.json's per_ping.
type perPing struct {
	ID       int                `json:"id"`
	Seq      int                `json:"seq"`
	Complete bool               `json:"complete"`
	Values   map[string]float64 `json:"values_us"`
	Excluded []string           `json:"excluded"`
}

// report is the part of report.json the tests read.
type report struct {
	Schema string `json:"schema"`
	Source string `json:"source"` // pingpath, origin or mixed
	Pings  struct {
		Sent     int `json:"sent"`
		Matched  int `json:"matched"`
		Complete int `json:"complete"`
		Lost     int `json:"lost"`
	} `json:"pings"`
	RTT         stats            `json:"rtt"`
	Segments    map[string]stats `json:"segments"`
	Residuals   map[string]stats `json:"residuals"`
	SharedClock bool             `json:"shared_clock"`
	Drops       []reportDrop     `json:"drops"`
	Warnings    []string         `json:"warnings"`
	Notes       []string         `json:"notes"`
	PerPing     []perPing        `json:"per_ping"`
}

// delta is a DELTA object of compare.json (pingpath.compare/v1).
type delta struct {
	AP50        float64  `json:"a_p50_us"`
	BP50        float64  `json:"b_p50_us"`
	DP50        float64  `json:"delta_p50_us"`
	PValue      *float64 `json:"p_value"`
	Significant bool     `json:"significant"`
	MinEffect   float64  `json:"min_effect_us"`
	AN          int      `json:"a_n"`
	BN          int      `json:"b_n"`
}

// p is the p-value, NaN when compare had no values on a side.
func (d delta) p() float64 {
	if d.PValue == nil {
		return math.NaN()
	}
	return *d.PValue
}

// comparison is the part of compare.json the tests read.
type comparison struct {
	Schema      string           `json:"schema"`
	RTT         delta            `json:"rtt"`
	Segments    map[string]delta `json:"segments"`
	Attribution []struct {
		Segment string  `json:"segment"`
		DMean   float64 `json:"delta_mean_us"`
	} `json:"attribution"`
}

// requireLab skips (CI: fails) where the lab cannot run. The QEMU kernel
// matrix guest has no sshd or iproute2; the host run covers these tests.
func requireLab(t testing.TB) {
	t.Helper()
	if testenv.InGuest() {
		t.Skip("end-to-end lab tests need sshd and run on the host, not in the kernel matrix guest")
	}
	testenv.RequireRoot(t)
}

// pingpath runs the real binary (the one the lab uses, labtest.Binary) and
// returns its stdout. Any exit code other than 0 fails the test.
func pingpath(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := runPingpath(ctx, labtest.Binary(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runPingpath runs bin with args and returns its stdout; an exit code other
// than 0 is an error that quotes both outputs.
func runPingpath(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("pingpath %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), tail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// series is one measured run: a lab brought up with opts, `pingpath run`
// with every tracer on every node, and the analysis it wrote.
type series struct {
	Name   string
	Lab    *lab.Lab
	Dir    string // the run directory
	Report *report
}

// spec names a series and the lab it runs on.
type spec struct {
	name string
	opts lab.Options
}

// measure brings up one lab per spec, runs `pingpath run` (count pings at
// interval) on all of them AT THE SAME TIME, takes the labs down and returns
// the runs with their report.json, in the order of specs. Runs that are
// compared with each other are measured together so that they see the same
// machine: on a shared 2-CPU machine the load of the moment moves every
// wake-up on the path, and two runs taken one after the other differ by that
// as well as by what the test changed (docs/accuracy.md).
func measure(t *testing.T, count int, interval time.Duration, specs ...spec) []*series {
	t.Helper()
	bin := labtest.Binary(t)
	runs := make([]*series, len(specs))
	for i, sp := range specs {
		runs[i] = &series{Name: sp.name, Lab: labtest.Up(t, sp.opts), Dir: filepath.Join(t.TempDir(), sp.name)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outs := make([]string, len(runs))
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, s := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = runPingpath(ctx, bin, "run", "-c", s.Lab.EnvFile, "-o", s.Dir,
				"--count", fmt.Sprint(count), "--interval", interval.String())
		}()
	}
	wg.Wait()
	for i, s := range runs {
		if err := s.Lab.Down(ctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if errs[i] != nil {
			t.Fatalf("%s: %v", s.Name, errs[i])
		}
		l := s.Lab
		t.Logf("%s (wire %s, delay %s, loss %g%%, clock %q):\n%s", s.Name, l.Wire, l.WireDelay, l.WireLoss, specs[i].opts.WireClock, summaryOf(outs[i]))
		s.Report = readJSON[report](t, filepath.Join(s.Dir, "report.json"))
	}
	return runs
}

// summaryOf drops `pingpath run`'s progress lines and keeps the summary.
func summaryOf(runOutput string) string {
	var keep []string
	for _, line := range strings.Split(runOutput, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "pings:") || len(keep) > 0 {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return runOutput
	}
	return strings.Join(keep, "\n")
}

// readJSON decodes a JSON file, failing the test on any error.
func readJSON[T any](t testing.TB, path string) *T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return v
}

// readStream reads one tracer's record stream of a run directory.
func readStream(t testing.TB, path string) *record.Stream {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := record.Read(f)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if len(s.Problems) > 0 {
		t.Errorf("%s: undecodable lines: %v", path, s.Problems)
	}
	return s
}

// quantile of sorted xs with linear interpolation between closest ranks
// (the definition docs/analysis.md uses).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (pos-float64(lo))*(sorted[lo+1]-sorted[lo])
}
