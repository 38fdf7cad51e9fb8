package analyze

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/badfile"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse/origin"
)

// copyAnchor copies the named files of an anchor run into a new directory
// (all its files when names is empty) and returns it.
func copyAnchor(t *testing.T, run string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if len(names) == 0 {
		entries, err := os.ReadDir(anchor(run))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(anchor(run), n))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, n), string(b))
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// find returns the entry of list that key names.
func find[T any](t *testing.T, list []T, key func(T) string, name string) T {
	t.Helper()
	for _, x := range list {
		if key(x) == name {
			return x
		}
	}
	t.Fatalf("%s not found in %+v", name, list)
	var zero T
	return zero
}

func coverage(t *testing.T, r *Result, vantage string) Coverage {
	t.Helper()
	return find(t, r.Coverage, func(c Coverage) string { return c.Vantage }, vantage)
}

func fileInfo(t *testing.T, r *Result, name string) FileInfo {
	t.Helper()
	return find(t, r.Files, func(f FileInfo) string { return f.Path }, name)
}

const bccError = "Error loading BPF program: Failed to compile BPF module <text>"

// The case of the issue: the sender VM's log and a host-send.log holding
// only the origin tool's error. It used to be skipped silently, the 26
// pings of one vantage point were "matched" and 83.6 % of the RTT was
// called "virtualization unmeasured".
func TestFailedVantageIsNotVirtualization(t *testing.T) {
	dir := copyAnchor(t, "measurement-20260204-180934", "send-vm-icmp.log")
	writeFile(t, filepath.Join(dir, "host-send.log"), "In file included from /virtual/main.c:2:\n"+bccError+"\n")
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := fileInfo(t, r, "host-send.log")
	if f.Status != FileFailed || f.Vantage != "sender host" || !strings.Contains(f.Note, "host-send.log:2: "+bccError) {
		t.Errorf("host-send.log: %+v", f)
	}
	c := coverage(t, r, "sender host")
	if c.Status != CovFailed || !strings.Contains(c.Detail, bccError) {
		t.Errorf("sender host coverage %+v", c)
	}
	if r.Counts.Matched != 0 {
		t.Errorf("%d pings matched across one vantage point", r.Counts.Matched)
	}
	for _, l := range r.Layers {
		if strings.HasPrefix(l.Name, "virtualization") && (l.Measured || l.Share != 0) {
			t.Errorf("layer %+v: nothing bounds it, it must not be called virtualization", l)
		}
	}
	last := r.Layers[len(r.Layers)-1]
	if !last.NotCovered || !strings.HasPrefix(last.Name, "not covered: sender host failed") ||
		!strings.Contains(last.Flag, "B, D, I, K, CJ") || last.Share < 0.8 {
		t.Errorf("the uncovered RTT: %+v", last)
	}
	if !strings.HasPrefix(r.ResidualContents["virt_unmeasured_sender"], "not computed: sender host failed") {
		t.Errorf("residual: %q", r.ResidualContents["virt_unmeasured_sender"])
	}
	// With the tool's banner before the error, the content places it.
	writeFile(t, filepath.Join(dir, "host-send.log"), "=== ICMP Drop Detector ===\nRX Interface(s): vnet35(ifindex=62)\nTX Interface(s): eth0(ifindex=3)\n"+bccError+"\n")
	r, err = Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := coverage(t, r, "sender host"); c.Status != CovFailed || !strings.Contains(c.Detail, "host-send.log:4: "+bccError) {
		t.Errorf("with the banner: %+v", c)
	}
	if r.Counts.Complete != 26 || len(r.LayerSet) == 0 {
		t.Errorf("a failed vantage point made the others' pings incomplete: %+v", r.Counts)
	}
}

// With every vantage point but the sender host, the receiver side's
// residual is still virtualization (its bounds were measured); the rest is
// named after the failed host.
func TestOneHostFailedInFullRun(t *testing.T) {
	dir := copyAnchor(t, "measurement-20260204-180934")
	writeFile(t, filepath.Join(dir, "send-host-icmp.log"), "Traceback (most recent call last):\n  File \"/tmp/icmp_path_tracer.py\", line 700, in <module>\n    b = BPF(text=bpf_text)\nException: Failed to compile BPF module <text>\n")
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	// commands.log says which tool wrote send-host-icmp.log.
	if f := fileInfo(t, r, "send-host-icmp.log"); f.Vantage != "sender host" || !strings.Contains(f.Note, "from commands.log") {
		t.Errorf("placement: %+v", f)
	}
	if r.Stats[ValResidR].N == 0 || r.Stats[ValResidS].N != 0 {
		t.Errorf("residuals: sender n=%d receiver n=%d", r.Stats[ValResidS].N, r.Stats[ValResidR].N)
	}
	var names []string
	for _, l := range r.Layers {
		names = append(names, l.Name)
	}
	want := "not covered: sender host failed"
	if !slices.Contains(names, want) {
		t.Fatalf("layers %q, want one named %q", names, want)
	}
	if math.Abs(sharesSum(r)-1) > 1e-9 {
		t.Errorf("shares sum to %v", sharesSum(r))
	}
	for _, l := range r.Layers {
		if l.Name == "virtualization unmeasured" && (!l.Measured || !strings.Contains(l.Flag, "virt_unmeasured_sender not computed")) {
			t.Errorf("%+v", l)
		}
	}
}

// icmp_drop_detector.py without --verbose prints drop blocks only: the
// vantage point ran but gave no latency, and says why.
func TestHostToolWithoutVerbose(t *testing.T) {
	dir := copyAnchor(t, "measurement-20260206-160003", "send-vm-icmp.log")
	writeFile(t, filepath.Join(dir, "send-host-icmp.log"), `=== ICMP Drop Detector ===
Source IP: 192.168.77.83
Destination IP: 192.168.76.244
RX Interface(s): vnet35(ifindex=62)
TX Interface(s): enp24s0f0np0(ifindex=3)
Timeout: 1000 ms

Tracing... Hit Ctrl-C to end.

Detaching...

=== ICMP Flow Statistics ===
Total flows tracked: 20
Complete flows: 20
Request internal drops: 0
External drops: 0
Reply internal drops: 0
`)
	r, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := coverage(t, r, "sender host")
	if c.Status != CovNoObs || !strings.Contains(c.Detail, "without --verbose") {
		t.Errorf("sender host: %+v", c)
	}
	if f := fileInfo(t, r, "send-host-icmp.log"); f.Status != FileNoObs {
		t.Errorf("file: %+v", f)
	}
}

// compare of the anchor runs: A and the RTT were refused on every complete
// ping of 160003, so they are not comparable, never flagged and never
// attributed (this gave "VM stack −51.7 µs *" and "largest part A −53.1 µs
// (101.6 % of the change)").
func TestCompareRefusedIsNotComparable(t *testing.T) {
	a, err := Run(anchor("measurement-20260204-180934"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(anchor("measurement-20260206-160003"))
	if err != nil {
		t.Fatal(err)
	}
	c := Compare(a, b)
	for name, d := range map[string]Delta{"RTT": c.RTT, "A": c.Segments["A"]} {
		if d.Comparable || d.Signif || !strings.HasPrefix(d.NotComparable, "refused on every ping of B") {
			t.Errorf("%s: %+v", name, d)
		}
	}
	for _, l := range c.Layers {
		if l.Name == "VM stack" && (l.Comparable || l.Signif || !strings.Contains(l.NotComparable, "A: refused")) {
			t.Errorf("VM stack layer: %+v", l)
		}
	}
	if c.RTTDeltaComparable || c.ShareOf != "" {
		t.Errorf("RTT delta comparable %v, shares of %q", c.RTTDeltaComparable, c.ShareOf)
	}
	var sum float64
	for _, at := range c.Attribution {
		if at.Segment == "A" {
			if at.NotComparable == "" || at.Share != 0 {
				t.Errorf("A attributed: %+v", at)
			}
			continue
		}
		if d, ok := c.Segments[at.Segment]; !ok || !d.Comparable {
			t.Errorf("%s attributed but not comparable: %+v", at.Segment, at)
		}
		sum += at.DMean
	}
	if math.Abs(sum-c.AttributedDelta) > 0.01 || c.Attribution[0].Segment == "A" {
		t.Errorf("attributed %+v sum %.3f, want %.3f", c.Attribution, sum, c.AttributedDelta)
	}
	// Measured differently: a residual that subtracts B_1 and L in A but
	// nothing in B (no vhost tracers) is not comparable.
	dir := copyAnchor(t, "measurement-20260204-180934", "send-vm-icmp.log", "recv-vm-icmp.log", "send-host-icmp.log", "recv-host-icmp.log")
	b2, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2 := Compare(a, b2)
	if d := c2.Segments["virt_unmeasured_sender"]; d.Comparable || !strings.Contains(d.NotComparable, "measured differently") {
		t.Errorf("residual: %+v", d)
	}
	if d := c2.Segments["L"]; d.Comparable || !strings.Contains(d.NotComparable, "not measured in B (sender host vhost-rx (L) not run)") {
		t.Errorf("L: %+v", d)
	}
	if d := c2.Segments["B"]; !d.Comparable {
		t.Errorf("B measured alike: %+v", d)
	}
}

// Two runs in one directory (the origin workflow's env-a-/env-b- log
// sets) are refused with the prefixes that split them, and each can be
// read alone.
func TestTwoRunsInOneDirectory(t *testing.T) {
	dir := t.TempDir()
	for prefix, run := range map[string]string{"env-a-": "measurement-20260204-180934", "env-b-": "measurement-20260206-160003"} {
		src := copyAnchor(t, run)
		entries, _ := os.ReadDir(src)
		for _, e := range entries {
			if e.Name() != "commands.log" {
				os.Rename(filepath.Join(src, e.Name()), filepath.Join(dir, prefix+e.Name()))
			}
		}
	}
	_, err := Run(dir)
	var mr *MultiRunError
	if !errors.As(err, &mr) || !slices.Equal(mr.Runs, []string{"env-a-", "env-b-"}) ||
		!strings.Contains(err.Error(), "env-a-send-vm-icmp.log and env-b-send-vm-icmp.log") {
		t.Fatalf("%v", err)
	}
	r, err := RunContext(context.Background(), dir, Options{Prefix: "env-b-"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Run(anchor("measurement-20260206-160003"))
	if r.Counts != want.Counts || len(r.Files) != 8 {
		t.Errorf("env-b- alone: %+v, %d files; the run alone: %+v", r.Counts, len(r.Files), want.Counts)
	}
	if got := SplitRuns(nil, []string{"alpha", "beta"}); got != nil {
		t.Errorf("names without a common separated suffix split into %q", got)
	}
}

// Corrupt inputs are accounted for, never dropped silently, and never
// block: random bytes in place of a stream the manifest names, a 50 MB
// line, a symlink to /dev/urandom, a FIFO named like a stream; an
// over-long line inside ping's output loses no reply.
func TestCorruptFilesAccountedFor(t *testing.T) {
	dir := t.TempDir()
	s := synthRun{pings: 20, firstSeq: 1, id: 9}
	s.write(t, dir)
	// The generated run's sender host stream (c.jsonl) becomes random
	// bytes; the receiver VM's and receiver host's (b, d) make way for a
	// symlink to /dev/urandom and a FIFO.
	stream := "c.jsonl"
	for _, n := range []string{"b.jsonl", "d.jsonl"} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{Environment: "lab", Version: "test", Status: "complete", Ping: manifest.Ping{File: "ping.log", Count: 20, Sent: 20, Received: 20, ICMPID: 9}}
	junk := make([]byte, 256<<10)
	rand.Read(junk)
	if err := os.WriteFile(filepath.Join(dir, stream), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	m.Nodes = []manifest.Node{{Role: manifest.RoleSenderHost, Tracers: []manifest.Tracer{{Tool: "host", File: stream, State: "ok"}}}}
	if err := manifest.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	// The over-long line inside ping's output.
	pingLog := filepath.Join(dir, "ping.log")
	b, err := os.ReadFile(pingLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfterN(string(b), "\n", 4)
	writeFile(t, pingLog, lines[0]+lines[1]+strings.Repeat("x", origin.MaxLine+1)+"\n"+lines[2]+lines[3])
	writeFile(t, filepath.Join(dir, "one-line.log"), strings.Repeat("a", 50<<20))
	badfile.DeviceLink(t, filepath.Join(dir, "receiver-vm.vm.jsonl"))
	badfile.FIFO(t, filepath.Join(dir, "receiver-host.host.jsonl"))
	done := make(chan struct{})
	var r *Result
	go func() { r, err = Run(dir); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Run blocked")
	}
	if err != nil {
		t.Fatal(err)
	}
	if f := fileInfo(t, r, stream); f.Status != FileNotRecognised || f.Vantage != "sender host" || !strings.Contains(f.Note, "binary data") {
		t.Errorf("random stream: %+v", f)
	}
	if c := coverage(t, r, "sender host"); c.Status != CovUnreadable {
		t.Errorf("sender host: %+v", c)
	}
	for _, name := range []string{"receiver-vm.vm.jsonl", "receiver-host.host.jsonl"} {
		if f := fileInfo(t, r, name); f.Status != FileRefused || !strings.Contains(f.Note, "not a regular file") {
			t.Errorf("%s: %+v", name, f)
		}
	}
	for _, v := range []string{"receiver host", "receiver VM"} {
		if c := coverage(t, r, v); c.Status != CovUnreadable {
			t.Errorf("%s behind a FIFO or device: %+v", v, c)
		}
	}
	if f := fileInfo(t, r, "one-line.log"); f.Status != FileNotRecognised {
		t.Errorf("50 MB line: %+v", f)
	}
	all := strings.Join(r.Warnings, "\n")
	for _, want := range []string{"one-line.log:1: line longer than", "ping.log:3: line longer than", "receiver-vm.vm.jsonl: not read: not a regular file (a character device)",
		"receiver-host.host.jsonl: not read: not a regular file (a named pipe)"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	if r.Counts.Lost != 0 || r.Stats[ValPingRTT].N == 0 {
		t.Errorf("the long line in ping's output cost replies: %+v, ping RTT n=%d", r.Counts, r.Stats[ValPingRTT].N)
	}
	// A cancelled context stops the reading.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunContext(ctx, dir, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
