package tracer

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/record"
)

// recordWriter writes the stream in JSON (record.Writer) or text (the tool's
// TextView, else a generic view). It is the Sink handed to the tool.
type recordWriter struct {
	out    *bufio.Writer
	json   *record.Writer
	text   TextView
	hdr    *record.Header
	events uint64
	meter  *costMeter  // nil until ready
	reader eventReader // nil until the buffer is open
}

func newRecordWriter(out *bufio.Writer, format string, hdr *record.Header, tool Tool) *recordWriter {
	w := &recordWriter{out: out, hdr: hdr}
	if format == "json" {
		w.json = record.NewWriter(out)
		return w
	}
	if tv, ok := tool.(TextView); ok {
		w.text = tv
	} else {
		w.text = genericText{}
	}
	return w
}

func (w *recordWriter) header() error {
	if w.json != nil {
		return w.json.Write(w.hdr)
	}
	w.text.TextHeader(w.out, w.hdr)
	return nil
}

// Ping implements Sink.
func (w *recordWriter) Ping(p *record.Ping) error {
	if w.json != nil {
		return w.json.Write(p)
	}
	w.text.TextPing(w.out, w.hdr, p)
	return nil
}

// Drop implements Sink.
func (w *recordWriter) Drop(d *record.Drop) error {
	if w.json != nil {
		return w.json.Write(d)
	}
	w.text.TextDrop(w.out, w.hdr, d)
	return nil
}

// runCounters adds the counters every tracer keeps to c: events read,
// events the ring or perf buffer could not take (ringbuf_lost, whichever
// buffer), and the process's own CPU time.
func (w *recordWriter) runCounters(l *Loaded, c map[string]uint64) error {
	c["events"] = w.events
	var records uint64
	if w.reader != nil {
		records = w.reader.lostRecords()
	}
	lost, err := l.EventsLost(records)
	c["ringbuf_lost"] = lost
	if w.meter != nil {
		// The BPF side of the tracer's cost so far (the trailer's cost
		// has the whole account).
		bpf, runs := w.meter.bpfTotals()
		c["bpf_ns"], c["bpf_runs"] = bpf, runs
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		c["cpu_user_ns"] = uint64(ru.Utime.Nano())
		c["cpu_system_ns"] = uint64(ru.Stime.Nano())
	}
	return err
}

// stats writes a stats record: the running counters.
func (w *recordWriter) stats(l *Loaded) error {
	if w.json == nil {
		return nil // the text view has no place for them
	}
	s := &record.Stats{AtNS: kernel.MonotonicNS(), Counters: map[string]uint64{}}
	if err := w.runCounters(l, s.Counters); err != nil {
		return err
	}
	return w.json.Write(s)
}

// warning writes a warning record (text: a WARNING line).
func (w *recordWriter) warning(r *record.Warning) error {
	if w.json != nil {
		return w.json.Write(r)
	}
	_, err := fmt.Fprintf(w.out, "\nWARNING: %s\n", r.Message)
	return err
}

func (w *recordWriter) trailer(l *Loaded, reason string, counters map[string]uint64, runErr error) error {
	t := &record.Trailer{EndMonoNS: kernel.MonotonicNS(), ExitReason: reason, Counters: map[string]uint64{}}
	if w.meter != nil {
		// One last reading: the drain and the flush of open flows are
		// part of what tracing cost.
		if err := w.meter.read(time.Now()); err == nil {
			t.Cost = w.meter.cost()
		}
	}
	for k, v := range counters {
		t.Counters[k] = v
	}
	lerr := w.runCounters(l, t.Counters)
	if runErr != nil {
		t.Error = runErr.Error()
	} else if lerr != nil {
		t.Error = lerr.Error()
	}
	var err error
	if w.json != nil {
		err = w.json.Write(t)
	} else {
		w.text.TextTrailer(w.out, w.hdr, t)
	}
	if ferr := w.out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("writing output: %w", ferr)
	}
	if runErr != nil {
		return runErr
	}
	return err
}

// fail ends the stream with an error trailer and returns err.
func (w *recordWriter) fail(l *Loaded, err error) error {
	return w.trailer(l, ExitError, nil, err)
}

// genericText is the text view of tools without their own.
type genericText struct{}

func (genericText) TextHeader(w io.Writer, h *record.Header) {
	fmt.Fprintf(w, "=== pingpath %s tracer %s (kernel %s, host %s, netns %d) ===\n", h.Tool, h.Version, h.Kernel, h.Hostname, h.Netns)
	WriteProbesText(w, h)
}

func (genericText) TextPing(w io.Writer, _ *record.Header, p *record.Ping) {
	fmt.Fprintf(w, "ping id=%d seq=%d", p.ID, p.Seq)
	for _, k := range sortedKeys(p.Durations) {
		fmt.Fprintf(w, " %s=%.3fus", k, float64(p.Durations[k])/1e3)
	}
	fmt.Fprintln(w)
}

func (genericText) TextDrop(w io.Writer, _ *record.Header, d *record.Drop) {
	fmt.Fprintf(w, "incomplete id=%d seq=%d last_seen=%s first_missed=%s\n", d.ID, d.Seq, d.LastSeen, d.FirstMissed)
}

func (genericText) TextTrailer(w io.Writer, _ *record.Header, t *record.Trailer) {
	WriteTrailerText(w, t)
}

// WriteProbesText writes the probe choice lines shared by every text view.
func WriteProbesText(w io.Writer, h *record.Header) {
	fmt.Fprintln(w, "Probes:")
	for _, p := range h.Probes {
		if p.Available {
			fmt.Fprintf(w, "  [OK] %-9s %s %s", p.Stage, p.Method, p.Target)
		} else {
			fmt.Fprintf(w, "  [--] %-9s unavailable", p.Stage)
		}
		if p.Reason != "" {
			fmt.Fprintf(w, " (%s)", p.Reason)
		}
		fmt.Fprintln(w)
	}
}

// WriteTrailerText writes the trailer lines shared by every text view.
func WriteTrailerText(w io.Writer, t *record.Trailer) {
	fmt.Fprintf(w, "\nDetaching... (%s)\n", t.ExitReason)
	parts := make([]string, 0, len(t.Counters))
	for _, k := range sortedKeys(t.Counters) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, t.Counters[k]))
	}
	fmt.Fprintf(w, "Counters: %s\n", strings.Join(parts, " "))
	if c := t.Cost; c != nil {
		fmt.Fprintf(w, "Cost: %.1f %% of one CPU (peak %.1f %%, --max-cpu %g %%): BPF %.3f ms in %d runs, process %.3f ms, over %.1f s\n",
			c.CPUPercent, c.PeakCPUPercent, c.MaxCPUPercent, float64(c.BPFNS)/1e6, c.BPFRuns, float64(c.UserNS)/1e6, float64(c.WallNS)/1e9)
	}
	if t.Error != "" {
		fmt.Fprintf(w, "Error: %s\n", t.Error)
	}
	fmt.Fprintln(w, "Exiting.")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
