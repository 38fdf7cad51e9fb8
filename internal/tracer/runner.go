package tracer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/pingpath/pingpath/internal/buildinfo"
	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/record"
)

// Exit reasons written to the trailer (record.Exit*).
const (
	ExitSignal      = record.ExitSignal
	ExitDuration    = record.ExitDuration
	ExitMaxDuration = record.ExitMaxDuration
	ExitStdinEOF    = record.ExitStdinEOF
	ExitMaxCPU      = record.ExitMaxCPU
	ExitError       = record.ExitError
)

// DefaultMaxDuration bounds every tracer run (--max-duration).
const DefaultMaxDuration = 15 * time.Minute

// Sink receives a tool's records; the runner writes them in the chosen format.
type Sink interface {
	Ping(*record.Ping) error
	Drop(*record.Drop) error
}

// Tool is one tracer (vm, host, vhost-rx, vhost-tx). Run calls, in order:
// Stages, Filter, Spec, Describe, Start, then Event/Tick from one goroutine
// until stop, then Finish.
type Tool interface {
	// Name is the header's tool (record.ToolVM, ...).
	Name() string
	// Stages is the probe ladder of every stage, in path order.
	Stages() []Stage
	// Filter is the in-kernel filter (pp_* globals).
	Filter() Filter
	// Spec returns a fresh CollectionSpec (the bpf2go load<Name>() function)
	// with the tool's own variables set for the chosen probes. The runner
	// then prunes unused programs and applies the Filter.
	Spec(choices []Choice) (*ebpf.CollectionSpec, error)
	// Describe fills the tool's header fields (Role, SrcIP, DstIP, Interfaces).
	Describe(h *record.Header)
	// Start gets the chosen probes and the sink, before events flow.
	Start(choices []Choice, out Sink) error
	// Event handles one ring-buffer record (raw bytes of the C event struct).
	Event(raw []byte) error
	// Tick is called about every 100 ms with CLOCK_MONOTONIC ns (expire state).
	Tick(now uint64)
	// Finish closes open state (incomplete flows become drop records) and
	// returns the tool's trailer counters (at least pings, drops, incomplete).
	Finish() map[string]uint64
}

// CollectionUser is a Tool that talks to its loaded programs while they
// run (the runner hands it the collection before Start): the host tracer
// writes global variables its programs read once it has looked something
// up that it should not look up before the ready line.
type CollectionUser interface {
	UseCollection(coll *ebpf.Collection) error
}

// WarningSource is a Tool that can run into something while it traces
// that a reader of its stream must know, such as a capability it could not
// get (the host tracer: headers in page fragments that stay unread because
// the kernel's direct map was not found). The runner writes each warning as
// a warning record and a stderr line, as it does its own (WarnMaxCPU).
type WarningSource interface {
	// Warnings returns the warnings not returned before. The runner calls
	// it from the event goroutine after every Tick and once after Finish,
	// before the trailer.
	Warnings() []record.Warning
}

// TextView is implemented by tools with their own text rendering (the
// origin's blocks). Tools without one get a generic view.
type TextView interface {
	TextHeader(w io.Writer, h *record.Header)
	TextPing(w io.Writer, h *record.Header, p *record.Ping)
	TextDrop(w io.Writer, h *record.Header, d *record.Drop)
	TextTrailer(w io.Writer, h *record.Header, t *record.Trailer)
}

// Options are the flags every tracer shares (see cli.addTracerFlags).
type Options struct {
	Probe          string        // auto|fentry|kprobe|tracepoint
	Format         string        // json|text
	Output         string        // file; "" or "-" = Stdout
	Duration       time.Duration // 0 = until stopped
	MaxDuration    time.Duration // > 0, always on
	StopOnStdinEOF bool
	// RenewOnStdin makes every line read on stdin renew MaxDuration: a
	// controller that keeps a tracer running sends one now and then, and
	// the tracer still stops MaxDuration after the last one when the
	// controller is gone without closing stdin.
	RenewOnStdin bool
	// StatsInterval, when positive, writes a stats record (the running
	// counters) this often.
	StatsInterval time.Duration
	// MaxCPU (percent of one CPU, > 0; 0 = DefaultMaxCPU) bounds what the
	// tracer may cost: its BPF programs on all CPUs plus its own process,
	// over MaxCPUWindow. Above it the tracer detaches and stops (ExitMaxCPU).
	MaxCPU float64
	// MaxCPUWindow is the span MaxCPU is held over (0 = CostWindow). A
	// longer one lets start-up work and bursts pass: on emulated machines
	// the tracer's own CPU time comes in jumps.
	MaxCPUWindow time.Duration
	// ProcessCPU returns the CPU time of the tracer's process so far (nil:
	// getrusage of this process). A tracer run in-process by a test shares
	// the process with other work and passes its own.
	ProcessCPU func() time.Duration
	RingBytes  uint32 // ring buffer size (power of two, ≥ page size); 0 = 4 MiB
	// EventBuffer is how events leave the kernel (--event-buffer): auto
	// (the ring buffer where the kernel has one, else the perf event
	// array), ringbuf or perf. A perf event array gets RingBytes / CPUs per
	// CPU (PerfBufferBytes).
	EventBuffer string
	// BTF is a file with the running kernel's BTF, for kernels without
	// /sys/kernel/btf/vmlinux (--btf); "" uses the kernel's own.
	BTF string
	// ProbeReadCompat makes the programs call bpf_probe_read(_str) where
	// they call the _kernel/_user variants, as on kernels before 5.5
	// (UseOldProbeRead; --probe-read-compat, hidden: for proving that
	// fallback on newer kernels).
	ProbeReadCompat bool

	Args map[string]string // flags as given, copied to the header

	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// OnReady, if set, is called after the ready line (tests read the
	// program IDs from it).
	OnReady func(*Loaded)
}

// Validate checks the options and fills defaults.
func (o *Options) Validate() error {
	var err error
	if o.Probe, err = ParseProbe(o.Probe); err != nil {
		return err
	}
	if o.EventBuffer, err = ParseEventBuffer(o.EventBuffer); err != nil {
		return err
	}
	switch o.Format {
	case "":
		o.Format = "json"
	case "json", "text":
	default:
		return fmt.Errorf("--format %q: want json or text", o.Format)
	}
	if o.MaxDuration <= 0 {
		return fmt.Errorf("--max-duration %s: must be positive (it cannot be disabled)", o.MaxDuration)
	}
	if o.Duration < 0 {
		return fmt.Errorf("--duration %s: must not be negative", o.Duration)
	}
	switch {
	case o.MaxCPU == 0:
		o.MaxCPU = DefaultMaxCPU
	case o.MaxCPU < 0 || o.MaxCPU != o.MaxCPU:
		return fmt.Errorf("--max-cpu %g: must be a positive percentage of one CPU (it cannot be disabled)", o.MaxCPU)
	}
	switch {
	case o.MaxCPUWindow == 0:
		o.MaxCPUWindow = CostWindow
	case o.MaxCPUWindow < costEvery || o.MaxCPUWindow > time.Hour:
		return fmt.Errorf("--max-cpu-window %s: must be between %s and 1h", o.MaxCPUWindow, costEvery)
	}
	if o.StatsInterval < 0 || o.StatsInterval > 0 && o.StatsInterval < 100*time.Millisecond {
		return fmt.Errorf("--stats-interval %s: must be 0 (off) or at least 100ms", o.StatsInterval)
	}
	if o.RingBytes != 0 && (o.RingBytes&(o.RingBytes-1) != 0 || o.RingBytes < 4096) {
		return fmt.Errorf("ring buffer size %d: must be a power of two ≥ 4096", o.RingBytes)
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	return nil
}

// Run runs tool until ctx is cancelled (signal), --duration or
// --max-duration elapse, or stdin closes (--stop-on-stdin-eof). A stop is a
// clean exit (nil error) with a trailer. Errors before the ready line return
// without output; later errors end the stream with an "error" trailer.
func Run(ctx context.Context, tool Tool, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the memlock limit: %w", err)
	}
	stages := tool.Stages()
	kbtf, btfErr := kernel.LoadBTF(o.BTF)
	switch {
	case btfErr != nil && o.BTF != "":
		return &UsageError{fmt.Errorf("--btf: %w", btfErr)}
	case errors.Is(btfErr, ebpf.ErrNotSupported):
		return noKernelBTF(btfErr)
	case btfErr != nil:
		return btfErr
	}
	if u, ok := tool.(KernelBTFUser); ok {
		u.UseKernelBTF(kbtf)
	}
	caps := probeCapabilities(stages, kbtf, btfErr, kernelChecks())
	buffer, bufferWhy, err := ChooseEventBuffer(o.EventBuffer, RingBufferSupport)
	if err != nil {
		return err
	}
	choices, loaded, err := load(tool, stages, caps, kbtf, buffer, o)
	var unpatched *UnpatchedFentryError
	if errors.As(err, &unpatched) {
		// Once more without those fentry rungs: their stages take the
		// next rung (kprobe), and say why.
		drop := map[string]bool{}
		for _, t := range unpatched.Targets {
			drop[t] = true
		}
		if choices, loaded, err = load(tool, withoutFentry(stages, drop), caps, kbtf, buffer, o); err == nil {
			noteUnpatched(choices, stages, drop)
		}
	}
	if err != nil {
		return err
	}
	defer loaded.Close()
	rd, err := openEventReader(loaded.Coll, buffer, o.RingBytes)
	if err != nil {
		return err
	}
	defer rd.Close()

	out, closeOut, err := openOutput(o)
	if err != nil {
		return err
	}
	defer closeOut()
	hdr := header(tool, choices, o)
	hdr.EventBuffer = buffer
	w := newRecordWriter(out, o.Format, hdr, tool)
	w.reader = rd
	if err := w.header(); err != nil {
		return err
	}
	if u, ok := tool.(EventBufferUser); ok {
		u.UseEventBuffer(buffer)
	}
	if u, ok := tool.(CollectionUser); ok {
		if err := u.UseCollection(loaded.Coll); err != nil {
			return w.fail(loaded, err)
		}
	}
	if err := tool.Start(choices, w); err != nil {
		return w.fail(loaded, err)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}

	stop := stopper(ctx, o)
	if bufferWhy != "" {
		fmt.Fprintf(o.Stderr, "event buffer: perf event array (%s)\n", bufferWhy)
	}
	fmt.Fprintf(o.Stderr, "ready tool=%s pid=%d probes=%s events=%s\n", tool.Name(), os.Getpid(), readyProbes(choices), buffer)
	if o.OnReady != nil {
		o.OnReady(loaded)
	}

	meter, err := newCostMeter(loaded, tool, o.MaxCPU, o.MaxCPUWindow, o.ProcessCPU)
	if err != nil {
		return w.fail(loaded, err)
	}
	w.meter = meter
	nextStats, lastCost := time.Now().Add(o.StatsInterval), time.Now()
	onTick := func(now time.Time) (string, error) {
		if err := toolWarnings(tool, w, o.Stderr); err != nil {
			return "", err
		}
		if now.Sub(lastCost) >= costEvery {
			lastCost = now
			if err := meter.read(now); err != nil {
				return "", err
			}
			if _, over := meter.over(); over {
				return ExitMaxCPU, nil
			}
		}
		if o.StatsInterval > 0 && !now.Before(nextStats) {
			nextStats = now.Add(o.StatsInterval)
			return "", w.stats(loaded)
		}
		return "", nil
	}
	reason, err := loop(rd, tool, out, stop, &w.events, onTick)
	if err != nil {
		return w.fail(loaded, err)
	}
	// Detach first so nothing new arrives, then drain what is in the ring.
	if err := loaded.Detach(); err != nil {
		return w.fail(loaded, fmt.Errorf("detaching: %w", err))
	}
	if reason == ExitMaxCPU {
		msg, _ := meter.over()
		fmt.Fprintf(o.Stderr, "detached tool=%s reason=%s: %s\n", tool.Name(), ExitMaxCPU, msg)
		if err := w.warning(&record.Warning{AtNS: kernel.MonotonicNS(), Code: record.WarnMaxCPU, Message: msg}); err != nil {
			return w.fail(loaded, err)
		}
	}
	if err := drain(rd, tool, &w.events); err != nil {
		return w.fail(loaded, err)
	}
	counters := tool.Finish()
	if err := toolWarnings(tool, w, o.Stderr); err != nil {
		return w.fail(loaded, err)
	}
	return w.trailer(loaded, reason, counters, nil)
}

// toolWarnings writes what a WarningSource tool ran into since the last
// call: a stderr line (what a user watching the tracer sees; `pingpath
// run` keeps it in the run's stderr log) and a warning record (what the
// analysis reads and the report lists).
func toolWarnings(tool Tool, w *recordWriter, stderr io.Writer) error {
	src, ok := tool.(WarningSource)
	if !ok {
		return nil
	}
	for _, wr := range src.Warnings() {
		fmt.Fprintf(stderr, "warning tool=%s code=%s: %s\n", tool.Name(), wr.Code, wr.Message)
		if err := w.warning(&wr); err != nil {
			return err
		}
	}
	return nil
}

// KernelBTFUser is a tool that reads kernel types itself (a struct layout,
// enum names): the runner gives it the kernel BTF it loaded, from --btf or
// /sys/kernel/btf/vmlinux, before asking for its BPF object.
type KernelBTFUser interface {
	UseKernelBTF(*kernel.BTF)
}

// noKernelBTF is the error of a tracer started on a kernel without BTF and
// without --btf: every tracer's programs read kernel structures through
// CO-RE, which needs the kernel's types, so nothing could load. It says
// what check says of such a node.
func noKernelBTF(err error) error {
	release, _ := kernel.Release()
	return fmt.Errorf("%s (%w); the tracers' BPF programs need its types (CO-RE): give them this kernel's BTF as a file with --btf FILE (env file: btf:), made on a machine with the kernel's debuginfo by %s (or the kernel's file from a BTFHub-style archive); %s",
		kernel.NoBTF(release), err, kernel.BTFFileCommand(release), kernel.BTFLastResort)
}

// load chooses the rungs, prepares the BPF object and attaches it.
func load(tool Tool, stages []Stage, caps Capabilities, kbtf *kernel.BTF, buffer string, o Options) ([]Choice, *Loaded, error) {
	choices, err := Select(stages, caps, o.Probe)
	if err != nil {
		return nil, nil, fmt.Errorf("choosing probes: %w", err)
	}
	spec, err := tool.Spec(choices)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the BPF object: %w", err)
	}
	if _, err := PruneSpec(spec, choices); err != nil {
		return nil, nil, err
	}
	if err := tool.Filter().Apply(spec); err != nil {
		return nil, nil, err
	}
	if err := ConfigureEventBuffer(spec, buffer, o.RingBytes); err != nil {
		return nil, nil, err
	}
	if o.ProbeReadCompat {
		n := UseOldProbeRead(spec)
		fmt.Fprintf(o.Stderr, "probe-read-compat: %d calls of bpf_probe_read_kernel/_user(_str) made bpf_probe_read(_str), as on kernels before 5.5\n", n)
	}
	loaded, err := LoadAndAttach(spec, choices, kbtf)
	return choices, loaded, err
}

// withoutFentry is stages without the fentry rungs on the targets in drop.
func withoutFentry(stages []Stage, drop map[string]bool) []Stage {
	out := make([]Stage, len(stages))
	for i, st := range stages {
		out[i] = st
		out[i].Rungs = nil
		for _, r := range st.Rungs {
			if r.Method == Fentry && len(r.Hooks) == 1 && drop[r.Hooks[0].Target] {
				continue
			}
			out[i].Rungs = append(out[i].Rungs, r)
		}
	}
	return out
}

// noteUnpatched adds to the reason of every stage that lost an fentry rung
// (in stages) to drop why it did.
func noteUnpatched(choices []Choice, stages []Stage, drop map[string]bool) {
	for i := range choices {
		for _, st := range stages {
			if st.Name != choices[i].Stage {
				continue
			}
			for _, r := range st.Rungs {
				if r.Method == Fentry && len(r.Hooks) == 1 && drop[r.Hooks[0].Target] {
					choices[i].Reason = joinReason(choices[i].Reason, "fentry "+r.Hooks[0].Target+": "+unpatchedNote)
				}
			}
		}
	}
}

// loop reads events until a stop reason arrives, or onTick (called on every
// tick, ~100 ms) returns one.
func loop(rd eventReader, tool Tool, out *bufio.Writer, stop <-chan string, events *uint64,
	onTick func(now time.Time) (string, error)) (string, error) {
	const tickEvery = 100 * time.Millisecond
	// The read deadline is the next tick, so an idle ring still returns in
	// time to tick and to see a stop, and a busy one costs no deadline
	// update per event. It is a millisecond past the tick: the reader waits
	// in whole milliseconds, rounded down, and then polls without waiting
	// until the deadline, which spun for up to a millisecond per tick (half
	// of an idle tracer's CPU time).
	deadline := func(tick time.Time) time.Time { return tick.Add(tickEvery + time.Millisecond) }
	tick := time.Now()
	rd.SetDeadline(deadline(tick))
	for {
		select {
		case reason := <-stop:
			return reason, nil
		default:
		}
		if now := time.Now(); now.Sub(tick) >= tickEvery {
			tick = now
			tool.Tick(kernel.MonotonicNS())
			if reason, err := onTick(now); err != nil || reason != "" {
				return reason, err
			}
			if err := out.Flush(); err != nil {
				return "", fmt.Errorf("writing output: %w", err)
			}
			rd.SetDeadline(deadline(tick))
		}
		raw, err := rd.next()
		switch {
		case err == nil:
			*events++
			if err := tool.Event(raw); err != nil {
				return "", err
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		default:
			return "", fmt.Errorf("reading the event buffer: %w", err)
		}
	}
}

// drain reads what is left in the event buffer without waiting.
func drain(rd eventReader, tool Tool, events *uint64) error {
	rd.SetDeadline(time.Now())
	for {
		raw, err := rd.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("draining the event buffer: %w", err)
		}
		*events++
		if err := tool.Event(raw); err != nil {
			return err
		}
	}
}

// stopper returns a channel that yields the first stop reason.
func stopper(ctx context.Context, o Options) <-chan string {
	ch := make(chan string, 4)
	send := func(r string) {
		select {
		case ch <- r:
		default:
		}
	}
	renew := make(chan struct{}, 1)
	go func() {
		var dur <-chan time.Time
		if o.Duration > 0 {
			t := time.NewTimer(o.Duration)
			defer t.Stop()
			dur = t.C
		}
		maxT := time.NewTimer(o.MaxDuration)
		defer maxT.Stop()
		for {
			select {
			case <-ctx.Done():
				send(ExitSignal)
			case <-dur:
				send(ExitDuration)
			case <-maxT.C:
				send(ExitMaxDuration)
			case <-renew:
				maxT.Reset(o.MaxDuration)
				continue
			}
			return
		}
	}()
	if o.StopOnStdinEOF || o.RenewOnStdin {
		go func() {
			if o.RenewOnStdin {
				br := bufio.NewReader(o.Stdin)
				for {
					if _, err := br.ReadSlice('\n'); err != nil && err != bufio.ErrBufferFull {
						break
					}
					select {
					case renew <- struct{}{}:
					default:
					}
				}
			} else {
				_, _ = io.Copy(io.Discard, o.Stdin)
			}
			if o.StopOnStdinEOF {
				send(ExitStdinEOF)
			}
		}()
	}
	return ch
}

func readyProbes(choices []Choice) string {
	parts := make([]string, 0, len(choices))
	for _, c := range choices {
		p := c.Probe()
		if !p.Available {
			parts = append(parts, c.Stage+"=unavailable")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s:%s", c.Stage, p.Method, p.Target))
	}
	return strings.Join(parts, ",")
}

func header(tool Tool, choices []Choice, o Options) *record.Header {
	h := &record.Header{Tool: tool.Name(), Version: buildinfo.String(), Clock: "CLOCK_MONOTONIC", Args: o.Args}
	h.Kernel, _ = kernel.Release()
	h.Hostname, _ = os.Hostname()
	h.BootID, _ = kernel.BootID()
	h.Netns, _ = kernel.NetnsInode()
	h.StartWallNS = time.Now().UnixNano()
	h.StartMonoNS = kernel.MonotonicNS()
	for _, c := range choices {
		h.Probes = append(h.Probes, c.Probe())
	}
	tool.Describe(h)
	return h
}

func openOutput(o Options) (*bufio.Writer, func(), error) {
	if o.Output == "" || o.Output == "-" {
		return bufio.NewWriterSize(o.Stdout, 64*1024), func() {}, nil
	}
	f, err := os.Create(o.Output)
	if err != nil {
		return nil, nil, fmt.Errorf("creating output: %w", err)
	}
	return bufio.NewWriterSize(f, 64*1024), func() { f.Close() }, nil
}
