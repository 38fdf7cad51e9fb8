// Package watch is the continuous side of pingpath watch: it takes the
// lines the running tracers and pings stream back (orchestrate.Watch),
// joins them per ping in a rolling window per pair (analyze.Window: the
// same join as a whole run, bounded memory), and exposes the result as
// Prometheus metrics, a rolling report of the last pings per pair, and,
// when asked, the streams themselves on disk.
package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/report"
)

// Options configure a Collector.
type Options struct {
	Environment string
	// Pairs names every pair watched (the env file's order).
	Pairs []string
	// Settle is how long after a ping's first observation it is joined
	// (5s): longer than the tracers take to report a ping, drops included.
	Settle time.Duration
	// Flush is how often arrived lines are joined and the metrics updated
	// (250ms).
	Flush time.Duration
	// ReportDir, when set, gets DIR/<pair>/report.{json,md,html} of the
	// last ReportPings joined pings every ReportEvery (1000, 1m).
	ReportDir   string
	ReportEvery time.Duration
	ReportPings int
	// KeepDir, when set, gets every stream as it arrives, per pair
	// (DIR/<pair>/<node>.<tool>[.<start>].jsonl and ping[.<start>].log):
	// `pingpath analyze DIR/<pair>` reads them. It grows without bound.
	KeepDir string
	// Registerer takes the metrics.
	Registerer prometheus.Registerer
	// Logf, if set, receives what goes wrong with reports and files.
	Logf func(format string, args ...any)
}

// Collector implements orchestrate.WatchSink.
type Collector struct {
	o Options
	m *metrics

	mu      sync.Mutex
	streams map[streamKey]*stream
	running map[streamKey]bool
	// Owned by Run's goroutine: the windows by pair, and their late
	// counts already exported.
	windows map[string]*analyze.Window
	late    map[string]int
	// pingListed: the last sequence number each ping stream printed.
	pingListed map[streamKey]int
}

var _ orchestrate.WatchSink = (*Collector)(nil)

// streamKey names one start of one stream.
type streamKey struct {
	node, tool, pairs string
	start             int
}

// stream is what the collector keeps of one started stream.
type stream struct {
	ws     *orchestrate.WatchStream
	header []byte // the first line (record header, or ping's PING line)
	// byPair: per pair index, the lines not joined yet and the kept file.
	pending [][]byte
	files   []*os.File
	// counters last reported (stats, trailer), for the deltas.
	last map[string]uint64
	// registered: the header is in the pair's window; ended: no more lines.
	registered []bool
	ended      bool
}

// New returns a Collector registering its metrics with o.Registerer.
func New(o Options) (*Collector, error) {
	if o.Settle == 0 {
		o.Settle = 5 * time.Second
	}
	if o.Flush == 0 {
		o.Flush = 250 * time.Millisecond
	}
	if o.ReportEvery == 0 {
		o.ReportEvery = time.Minute
	}
	if o.ReportPings == 0 {
		o.ReportPings = 1000
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	c := &Collector{o: o, m: newMetrics(o.Registerer), streams: map[streamKey]*stream{}, running: map[streamKey]bool{},
		windows: map[string]*analyze.Window{}, late: map[string]int{}, pingListed: map[streamKey]int{}}
	keep := o.ReportPings
	if o.ReportDir == "" {
		keep = 0
	}
	for _, p := range o.Pairs {
		// At most 16 pings a second for Settle can be open; beyond 64 K
		// the oldest are joined early.
		c.windows[p] = analyze.NewWindow(o.Settle, keep, 1<<16)
		for _, dir := range []string{o.ReportDir, o.KeepDir} {
			if dir == "" {
				continue
			}
			if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
				return nil, fmt.Errorf("creating %s: %w", filepath.Join(dir, p), err)
			}
		}
	}
	return c, nil
}

func keyOf(s *orchestrate.WatchStream) streamKey {
	return streamKey{s.Node, s.Tool, fmt.Sprint(s.Pairs), s.Start}
}

// Line implements orchestrate.WatchSink.
func (c *Collector) Line(s *orchestrate.WatchStream, line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := keyOf(s)
	st := c.streams[k]
	if st == nil {
		// The first line: the header.
		st = &stream{ws: s, header: bytes.Clone(line), pending: make([][]byte, len(s.Pairs)),
			files: make([]*os.File, len(s.Pairs)), last: map[string]uint64{}, registered: make([]bool, len(s.Pairs))}
		c.streams[k] = st
		c.keep(st, -1, line)
		return
	}
	if s.Tool == "ping" {
		st.add(0, line)
		c.keep(st, 0, line)
		return
	}
	var probe struct {
		Type       string            `json:"type"`
		Pair       int               `json:"pair"`
		Counters   map[string]uint64 `json:"counters"`
		ExitReason string            `json:"exit_reason"`
		Code       string            `json:"code"`    // warning
		Message    string            `json:"message"` // warning
	}
	if json.Unmarshal(line, &probe) != nil {
		return
	}
	switch probe.Type {
	case record.TypePing, record.TypeDrop:
		if probe.Pair < 0 || probe.Pair >= len(s.Pairs) {
			return // not a pair of ours: the tracer was told only these
		}
		st.add(probe.Pair, line)
		c.keep(st, probe.Pair, line)
	case record.TypeWarning:
		// What the tracer says of itself while it runs (detached over
		// --max-cpu, frames it could not read): the watcher's log says it
		// at once, and every pair's kept stream keeps it, as run's files do.
		c.o.Logf("%s: warning %s: %s", s, probe.Code, probe.Message)
		c.keepEveryPair(st, line)
	case record.TypeStats, record.TypeTrailer:
		c.counters(st, probe.Counters)
		if probe.Type == record.TypeTrailer {
			if probe.ExitReason == record.ExitMaxCPU {
				c.m.detached.WithLabelValues(s.Node, s.Tool).Inc()
			}
			c.keepEveryPair(st, line)
		}
	}
}

// keepEveryPair appends a line of the whole stream (a warning, the
// trailer) to every pair's kept file.
func (c *Collector) keepEveryPair(st *stream, line []byte) {
	for i := range st.files {
		c.keep(st, i, line)
	}
}

func (st *stream) add(pair int, line []byte) {
	st.pending[pair] = append(st.pending[pair], append(bytes.Clone(line), '\n')...)
}

// counters turns a tracer's running counters into counter increments.
func (c *Collector) counters(st *stream, now map[string]uint64) {
	s := st.ws
	add := func(v *prometheus.CounterVec, scale float64, name string, labels ...string) {
		x, ok := now[name]
		if !ok {
			return
		}
		if x > st.last[name] {
			v.WithLabelValues(labels...).Add(float64(x-st.last[name]) * scale)
		}
		st.last[name] = x
	}
	add(c.m.events, 1, "events", s.Node, s.Tool)
	add(c.m.ringLost, 1, "ringbuf_lost", s.Node, s.Tool)
	add(c.m.cpu, 1e-9, "cpu_user_ns", s.Node, s.Tool, "user")
	add(c.m.cpu, 1e-9, "cpu_system_ns", s.Node, s.Tool, "system")
	add(c.m.bpf, 1e-9, "bpf_ns", s.Node, s.Tool)
	add(c.m.bpfRuns, 1, "bpf_runs", s.Node, s.Tool)
}

// keep appends line to the stream's kept file of pair index i (every
// pair's for i < 0: the header), opening it on first use.
func (c *Collector) keep(st *stream, i int, line []byte) {
	if c.o.KeepDir == "" {
		return
	}
	s := st.ws
	for p := range s.Pairs {
		if i >= 0 && p != i {
			continue
		}
		if st.files[p] == nil {
			name := s.Node + "." + s.Tool
			if s.Tool == "ping" {
				name = "ping"
			}
			if s.Start > 0 {
				name += fmt.Sprintf(".%d", s.Start)
			}
			ext := ".jsonl"
			if s.Tool == "ping" {
				ext = ".log"
			}
			f, err := os.OpenFile(filepath.Join(c.o.KeepDir, s.Pairs[p], name+ext), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				c.o.Logf("keeping %s: %v", s, err)
				continue
			}
			st.files[p] = f
			if i >= 0 {
				// Opened after the header went by (cannot happen: the
				// header opens every pair's file), keep it readable.
				_, _ = f.Write(append(bytes.Clone(st.header), '\n'))
			}
		}
		if _, err := st.files[p].Write(append(bytes.Clone(line), '\n')); err != nil {
			c.o.Logf("keeping %s: %v", s, err)
		}
	}
}

// Started implements orchestrate.WatchSink.
func (c *Collector) Started(s *orchestrate.WatchStream) {
	c.mu.Lock()
	c.running[keyOf(s)] = true
	c.mu.Unlock()
	c.m.tracerRunning.WithLabelValues(s.Node, s.Tool).Inc()
}

// Ended implements orchestrate.WatchSink.
func (c *Collector) Ended(s *orchestrate.WatchStream, err error, unexpected bool) {
	c.mu.Lock()
	k := keyOf(s)
	if c.running[k] {
		delete(c.running, k)
		c.m.tracerRunning.WithLabelValues(s.Node, s.Tool).Dec()
	}
	if st := c.streams[k]; st != nil {
		for _, f := range st.files {
			if f != nil {
				f.Close()
			}
		}
		st.files = make([]*os.File, len(st.files))
		st.ended = true
	}
	c.mu.Unlock()
	if unexpected {
		c.m.restarts.WithLabelValues(s.Node, s.Tool).Inc()
		c.o.Logf("%s ended: %v (restarting)", s, err)
	}
}

// NodeUp implements orchestrate.WatchSink.
func (c *Collector) NodeUp(node string) { c.m.nodeUp.WithLabelValues(node).Set(1) }

// NodeDown implements orchestrate.WatchSink.
func (c *Collector) NodeDown(node string, err error) {
	c.m.nodeUp.WithLabelValues(node).Set(0)
	c.m.disconnects.WithLabelValues(node).Inc()
	c.o.Logf("%s: %v (reconnecting)", node, err)
}

// Run joins what arrived every Flush, updates the metrics and writes the
// rolling reports every ReportEvery, until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	flush := time.NewTicker(c.o.Flush)
	defer flush.Stop()
	var reports <-chan time.Time
	if c.o.ReportDir != "" {
		t := time.NewTicker(c.o.ReportEvery)
		defer t.Stop()
		reports = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-flush.C:
			c.Flush(now)
		case <-reports:
			c.WriteReports()
		}
	}
}

// chunk is the lines of one stream for one pair that arrived since the
// last flush, behind the stream's header.
type chunk struct {
	pair, key, name string
	text            []byte
	stream          streamKey
	ended           bool
}

// Flush joins the lines that arrived, and the pings settled at now.
func (c *Collector) Flush(now time.Time) {
	var chunks []chunk
	c.mu.Lock()
	for k, st := range c.streams {
		s := st.ws
		for i, pair := range s.Pairs {
			if st.registered[i] && len(st.pending[i]) == 0 {
				continue
			}
			st.registered[i] = true
			text := append(append(bytes.Clone(st.header), '\n'), st.pending[i]...)
			st.pending[i] = nil
			chunks = append(chunks, chunk{pair: pair, key: s.Node + "/" + s.Tool, name: s.Node + "." + s.Tool, text: text,
				stream: k, ended: st.ended})
		}
		if st.ended {
			delete(c.streams, k)
			delete(c.pingListed, k) // its last chunk, if any, is below
		}
	}
	c.mu.Unlock()
	for _, ch := range chunks {
		w := c.windows[ch.pair]
		if w == nil {
			continue
		}
		f, _ := parse.Parse(ch.name, bytes.NewReader(ch.text))
		if f == nil || f.Kind == parse.KindUnknown {
			continue
		}
		if f.Kind == parse.KindPing {
			c.listUnanswered(ch.stream, f)
			if ch.ended {
				delete(c.pingListed, ch.stream)
			}
		}
		w.Add(w.Stream(ch.key, f), f, now)
	}
	for pair, w := range c.windows {
		if res := w.Take(now); res != nil {
			c.m.observe(pair, res)
		}
		c.m.windowOpen.WithLabelValues(pair).Set(float64(w.Open()))
		if d := w.Late - c.late[pair]; d > 0 {
			c.m.windowLate.WithLabelValues(pair).Add(float64(d))
			c.late[pair] = w.Late
		}
	}
}

// listUnanswered adds, when ping's summary line is in f, a "no answer"
// for every request it sent but printed no line for (ping prints "no
// answer yet" for a request only when it sends the next one, so the last
// ones of a ping that ends have none), as the analysis of a whole run does.
// ping numbers its requests from 1.
func (c *Collector) listUnanswered(k streamKey, f *parse.File) {
	for _, r := range f.Replies {
		c.pingListed[k] = max(c.pingListed[k], int(r.Seq))
	}
	for seq := c.pingListed[k] + 1; f.Sent > 0 && seq <= f.Sent; seq++ {
		f.Replies = append(f.Replies, parse.PingReply{Seq: uint16(seq)})
		c.pingListed[k] = seq
	}
}

// WriteReports writes each pair's rolling report: report.json, .md and
// .html of the last ReportPings joined pings, replaced whole (written
// beside, then renamed over the old ones).
func (c *Collector) WriteReports() {
	for pair, w := range c.windows {
		res := w.Recent()
		if res == nil {
			continue
		}
		dir := filepath.Join(c.o.ReportDir, pair)
		res.Dir = dir
		res.Manifest = &manifest.Manifest{Environment: c.o.Environment}
		if err := writeReport(dir, res); err != nil {
			c.o.Logf("rolling report of %s: %v", pair, err)
		}
	}
}

func writeReport(dir string, res *analyze.Result) error {
	tmp, err := os.MkdirTemp(dir, ".report-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := report.WriteAll(tmp, res); err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"report.json", "report.md", "report.html"} {
		errs = append(errs, os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}
