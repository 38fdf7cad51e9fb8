// Package tracertest is the shared test harness of the tracer packages:
// running a tracer (in-process inside a namespace, or as a pingpath
// process), waiting for it to be ready, stopping it and reading its record
// stream, checking that the BPF programs and links it created are gone, and
// reading the kernel's per-program run-time accounting (bpf_stats) for the
// cost benchmarks. It needs no external binaries, so it works in the
// kernel-matrix guest.
package tracertest

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
)

// GuestMaxCPU is the --max-cpu of tracers in the kernel matrix's TCG
// guests: emulation makes every BPF run and the tracer's own work 5-50
// times dearer, so the unrelated floods some tests send would stop a
// tracer at the default (5 % of one CPU) — the guard is for real hosts and
// is tested on this machine's kernel (internal/orchestrate's lab test).
const GuestMaxCPU = 400

// StartTimeout bounds the wait for a tracer's ready line, StopTimeout the
// wait for its exit, GoneTimeout the wait for its BPF objects to be freed
// (one RCU grace period after the last reference is closed). StartTimeout
// is long for the kernel matrix: in a TCG guest on a loaded machine,
// loading and attaching a tracer's fentry programs took over 30 s (6.1);
// a wait that succeeds returns at the ready line.
const (
	StartTimeout = 2 * time.Minute
	StopTimeout  = 30 * time.Second
	GoneTimeout  = 10 * time.Second
)

// startTimeout is StartTimeout scaled by the guest's slowdown
// (testenv.Slowdown: arm64 guests under TCG).
func startTimeout() time.Duration { return StartTimeout * time.Duration(testenv.Slowdown()) }

// Tracer is a tracer running in-process (tracer.Run on its own goroutine).
type Tracer struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	exited      chan struct{} // closed when tracer.Run returned (err)
	err         error
	where       string

	mu   sync.Mutex
	ids  []ebpf.ProgramID
	coll *ebpf.Collection // the loaded objects, while the tracer runs
}

// syncBuffer is a bytes.Buffer safe to read while the tracer writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// Start runs the tool newTool makes through do (which runs a function on a
// thread inside the tracer's network namespace, e.g. nettest.Netns.Do; nil
// runs it here) with opts, and waits for the ready line. where names the
// place in failure messages. Stdout, Stderr, Stdin and OnReady of opts are
// set by Start; Format defaults to json and MaxDuration to 2 minutes
// (times testenv.Slowdown);
// EventBuffer, BTF and ProbeReadCompat to what the kernel matrix's rung
// forces (testenv). The
// tracer's cost counts its BPF programs only (ProcessCPU is zero): the test
// process's other work is not the tracer's. The tracer is cancelled at the
// end of the test.
func Start(t testing.TB, where string, do func(func() error) error, newTool func() (tracer.Tool, error), opts tracer.Options) *Tracer {
	t.Helper()
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	if opts.EventBuffer == "" {
		opts.EventBuffer = testenv.EventBuffer()
	}
	if opts.BTF == "" {
		opts.BTF = testenv.BTF()
	}
	opts.ProbeReadCompat = opts.ProbeReadCompat || testenv.ProbeReadCompat()
	ctx, cancel := context.WithCancel(context.Background())
	rt := &Tracer{cancel: cancel, exited: make(chan struct{}), where: where}
	ready := make(chan struct{})
	if opts.Format == "" {
		opts.Format = "json"
	}
	if opts.MaxDuration == 0 {
		// Scaled like the start: in an arm64 guest at load 39 a host
		// tracer reached 2 minutes before the test's pings were done.
		opts.MaxDuration = 2 * time.Minute * time.Duration(testenv.Slowdown())
	}
	if opts.MaxCPU == 0 && testenv.InGuest() {
		opts.MaxCPU = GuestMaxCPU
	}
	opts.Stdout, opts.Stderr, opts.Stdin = &rt.out, &rt.errOut, bytes.NewReader(nil)
	if opts.ProcessCPU == nil {
		opts.ProcessCPU = func() time.Duration { return 0 }
	}
	opts.OnReady = func(l *tracer.Loaded) {
		rt.mu.Lock()
		rt.ids = append([]ebpf.ProgramID(nil), l.ProgramIDs...)
		rt.coll = l.Coll
		rt.mu.Unlock()
		close(ready)
	}
	go func() {
		rt.err = do(func() error {
			tool, err := newTool()
			if err != nil {
				return err
			}
			return tracer.Run(ctx, tool, opts)
		})
		close(rt.exited)
	}()
	t.Cleanup(cancel)
	select {
	case <-ready:
	case <-rt.exited:
		cancel()
		t.Fatalf("tracer in %s exited before ready: %v (stderr: %s)", where, rt.err, rt.errOut.String())
	case <-time.After(startTimeout()):
		cancel()
		t.Fatalf("tracer in %s not ready after %v (stderr: %s)", where, startTimeout(), rt.errOut.String())
	}
	if len(rt.ProgramIDs()) == 0 {
		t.Fatalf("tracer in %s reported no program IDs", where)
	}
	checkProbeReadCompat(t, where, rt.errOut.String())
	return rt
}

// ProgramIDs are the tracer's BPF programs (from its OnReady).
func (rt *Tracer) ProgramIDs() []ebpf.ProgramID {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.ids
}

// Map returns a handle of the tracer's map name, to read while the tracer
// runs (the caller closes it).
func (rt *Tracer) Map(t testing.TB, name string) *ebpf.Map {
	t.Helper()
	select {
	case <-rt.exited:
		t.Fatalf("tracer in %s: map %s asked for after it exited", rt.where, name)
	default:
	}
	rt.mu.Lock()
	m := rt.coll.Maps[name]
	rt.mu.Unlock()
	if m == nil {
		t.Fatalf("tracer in %s has no map %s", rt.where, name)
	}
	c, err := m.Clone()
	if err != nil {
		t.Fatalf("tracer in %s: map %s: %v", rt.where, name, err)
	}
	return c
}

// Output is the record stream written so far.
func (rt *Tracer) Output() string { return rt.out.String() }

// StderrContains tells whether the tracer's stderr holds s.
func (rt *Tracer) StderrContains(s string) bool { return strings.Contains(rt.errOut.String(), s) }

// WaitExit waits up to timeout for the tracer to stop by itself and tells
// whether it did (Stop then checks how).
func (rt *Tracer) WaitExit(t testing.TB, timeout time.Duration) bool {
	t.Helper()
	select {
	case <-rt.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop cancels the tracer, requires a clean exit and a well-formed stream
// with a trailer, checks that its programs are gone and returns the stream.
func (rt *Tracer) Stop(t testing.TB) *record.Stream {
	t.Helper()
	rt.cancel()
	select {
	case <-rt.exited:
		if rt.err != nil {
			t.Fatalf("tracer in %s: %v (stderr: %s)", rt.where, rt.err, rt.errOut.String())
		}
	case <-time.After(StopTimeout):
		t.Fatalf("tracer in %s did not stop within %v", rt.where, StopTimeout)
	}
	if err := tracer.WaitProgramsUnloaded(rt.ProgramIDs(), GoneTimeout); err != nil {
		t.Error(err)
	}
	return ReadStream(t, rt.out.Bytes())
}

// ReadStream parses a record stream and requires it to be well-formed and
// to end with a trailer.
func ReadStream(t testing.TB, b []byte) *record.Stream {
	t.Helper()
	s, err := record.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("reading tracer output: %v\n%s", err, b)
	}
	if len(s.Problems) > 0 {
		t.Errorf("bad lines in tracer output: %v", s.Problems)
	}
	if s.Trailer == nil {
		t.Fatalf("tracer output has no trailer:\n%s", b)
	}
	CheckEventBuffer(t, s.Header)
	CheckBTFFile(t, s.Header)
	return s
}

// CheckEventBuffer requires a tracer's header to name its event buffer, and
// the one PINGPATH_TEST_EVENT_BUFFER forces (the kernel matrix's perf rung).
func CheckEventBuffer(t testing.TB, h *record.Header) {
	t.Helper()
	if h == nil {
		return
	}
	switch forced := testenv.EventBuffer(); {
	case h.EventBuffer != tracer.EventBufferRing && h.EventBuffer != tracer.EventBufferPerf:
		t.Errorf("tracer header: event_buffer %q, want %s or %s", h.EventBuffer, tracer.EventBufferRing, tracer.EventBufferPerf)
	case forced != tracer.EventBufferAuto && h.EventBuffer != forced:
		t.Errorf("tracer header: event_buffer %q, but %s was forced (PINGPATH_TEST_EVENT_BUFFER)", h.EventBuffer, forced)
	}
}

// WaitPings waits until the stream holds at least n ping records (a record
// is written once a ping is complete), so that a test stops the tracer
// after its packets, not after a guessed sleep.
func (rt *Tracer) WaitPings(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	WaitRecords(t, rt.out.Bytes, AtLeast(record.TypePing, n), timeout)
}
