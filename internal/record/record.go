// Package record defines the versioned JSON-lines stream every pingpath tracer
// writes and the analysis reads: one header record, then ping, drop and
// warning records, then one trailer record. The format is documented in
// docs/record-format.md; change both together and bump Schema on any
// incompatible change.
package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Schema names this version of the stream. Readers refuse other major versions.
const Schema = "pingpath.trace/v1"

// Record types (the "type" field of every line).
const (
	TypeHeader  = "header"
	TypePing    = "ping"
	TypeDrop    = "drop"
	TypeWarning = "warning"
	TypeTrailer = "trailer"
	// TypeStats is a tracer's running counters, written every
	// --stats-interval while it runs (for controllers that keep it running:
	// the trailer comes only at the end).
	TypeStats = "stats"
)

// Exit reasons of a trailer (Trailer.ExitReason).
const (
	ExitSignal      = "signal"
	ExitDuration    = "duration"
	ExitMaxDuration = "max-duration"
	ExitStdinEOF    = "stdin-eof"
	// ExitMaxCPU: the tracer detached itself because it cost the machine
	// more than its --max-cpu (a Warning record says by how much).
	ExitMaxCPU = "max-cpu"
	ExitError  = "error"
)

// Warning codes (Warning.Code).
const (
	// WarnMaxCPU: the tracer's own cost exceeded --max-cpu; it detached
	// its probes and stopped tracing.
	WarnMaxCPU = "max-cpu"
	// WarnPagedHeaders: the host tracer cannot read the headers of packets
	// that lie in page fragments (it did not find the kernel's direct map,
	// or not in time): those packets are not matched, and counted in the
	// trailer's paged_headers_unread.
	WarnPagedHeaders = "paged-headers"
)

// Tool names (the "tool" field of the header).
const (
	ToolVM      = "vm"
	ToolHost    = "host"
	ToolVhostRX = "vhost-rx"
	ToolVhostTX = "vhost-tx"
)

// Probe reports how one stage is observed: which rung of its attach ladder was
// chosen, or why the stage is unavailable on this kernel.
type Probe struct {
	Stage     string `json:"stage"`            // stage name, e.g. "p1_start"
	Method    string `json:"method,omitempty"` // "fentry", "kprobe", "tracepoint", "raw_tracepoint"; empty when unavailable
	Target    string `json:"target,omitempty"` // function or tracepoint, e.g. "ip_local_out", "net/net_dev_start_xmit"
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"` // why unavailable, or why a lower rung was chosen
}

// Header is the first record of a stream.
type Header struct {
	Type     string `json:"type"`   // always "header"
	Schema   string `json:"schema"` // always Schema
	Tool     string `json:"tool"`   // ToolVM, ToolHost, ...
	Version  string `json:"version"`
	Kernel   string `json:"kernel"` // uname -r
	Hostname string `json:"hostname"`
	// BootID is /proc/sys/kernel/random/boot_id. Two streams with the same
	// boot id share one CLOCK_MONOTONIC (as all nodes of the lab do), so
	// their timestamps may be compared directly.
	BootID      string   `json:"boot_id,omitempty"`
	Netns       uint64   `json:"netns"` // inode of the tracer's network namespace
	Clock       string   `json:"clock"` // "CLOCK_MONOTONIC": the clock of every *_ns timestamp
	StartMonoNS uint64   `json:"start_mono_ns"`
	StartWallNS int64    `json:"start_wall_ns"`  // wall clock (Unix ns) read together with StartMonoNS
	Role        string   `json:"role,omitempty"` // vm: "tx"|"rx"; host: "sender"|"receiver"; may be "auto" until known
	SrcIP       string   `json:"src_ip,omitempty"`
	DstIP       string   `json:"dst_ip,omitempty"`
	Interfaces  []string `json:"interfaces,omitempty"`
	// Pairs lists every (src_ip, dst_ip) pair a tracer serving several
	// pairs filters (host --pair); SrcIP/DstIP are Pairs[0]. A record's
	// Pair indexes it. Absent for one pair.
	Pairs  []Pair  `json:"pairs,omitempty"`
	Probes []Probe `json:"probes"`
	// EventBuffer is how the events left the kernel: "ringbuf" (BPF ring
	// buffer) or "perf" (perf event array, kernels without ring buffers or
	// --event-buffer perf). Absent in streams of older tracers (ringbuf).
	EventBuffer string            `json:"event_buffer,omitempty"`
	Args        map[string]string `json:"args,omitempty"` // the flags the tracer was started with
}

// Ping is one traced ping (or, for the vhost tracers, one ICMP packet) with its
// raw stage timestamps and the durations derived from them.
type Ping struct {
	Type     string `json:"type"` // always "ping"
	ID       uint16 `json:"id"`   // ICMP echo identifier
	Seq      uint16 `json:"seq"`  // ICMP echo sequence (wraps at 65536)
	ICMPType uint8  `json:"icmp_type,omitempty"`
	// Role of the tracer when it saw this ping, when the tool decides it per
	// packet (host: "sender"|"receiver"; vhost-*: "request"|"reply").
	Role string `json:"role,omitempty"`
	// Pair is the index in Header.Pairs of the pair the packet belongs to
	// (0, and absent, for the first or only pair).
	Pair int `json:"pair,omitempty"`
	// Stages maps stage name → CLOCK_MONOTONIC ns. A stage that was not seen
	// is absent, never zero.
	Stages map[string]uint64 `json:"stages"`
	// Durations maps a derived duration name (e.g. "total", "path1") → ns.
	// Absent when an input stage is missing.
	Durations map[string]int64 `json:"durations_ns,omitempty"`
	// Devices maps stage name → network device name where the stage saw the packet.
	Devices map[string]string `json:"devices,omitempty"`
	CPU     map[string]uint32 `json:"cpu,omitempty"`
	PID     map[string]uint32 `json:"pid,omitempty"`
	Comm    map[string]string `json:"comm,omitempty"`
	// Extra holds tool-specific detail (queue, vhost tid, eventfd ctx, ...).
	Extra map[string]string `json:"extra,omitempty"`
}

// Drop is a ping that did not complete within the tracer's timeout.
type Drop struct {
	Type        string            `json:"type"` // always "drop"
	ID          uint16            `json:"id"`
	Seq         uint16            `json:"seq"`
	Role        string            `json:"role,omitempty"`
	Pair        int               `json:"pair,omitempty"` // as Ping.Pair
	LastSeen    string            `json:"last_seen"`      // last stage observed
	FirstMissed string            `json:"first_missed"`   // first stage expected but not observed
	Stages      map[string]uint64 `json:"stages"`
	Devices     map[string]string `json:"devices,omitempty"`
	// Kernel drop reason where this host's kernel freed the packet
	// (skb:kfree_skb), named from the kernel's BTF enum skb_drop_reason.
	Reason     string `json:"reason,omitempty"`
	ReasonCode uint32 `json:"reason_code,omitempty"`
	Location   string `json:"location,omitempty"` // symbol where the skb was freed, when known
	Device     string `json:"device,omitempty"`   // device of the freed skb, when known
	AtNS       uint64 `json:"at_ns,omitempty"`    // when the kernel freed it
}

// Warning is something the tracer itself ran into that a reader of the
// stream must know, e.g. that it stopped tracing before it was asked to.
type Warning struct {
	Type    string `json:"type"`  // always "warning"
	AtNS    uint64 `json:"at_ns"` // CLOCK_MONOTONIC ns
	Code    string `json:"code"`  // WarnMaxCPU, WarnPagedHeaders
	Message string `json:"message"`
}

// Trailer is the last record of a stream.
type Trailer struct {
	Type       string            `json:"type"` // always "trailer"
	EndMonoNS  uint64            `json:"end_mono_ns"`
	ExitReason string            `json:"exit_reason"` // ExitSignal, ExitDuration, ...
	Counters   map[string]uint64 `json:"counters"`    // events, pings, drops, incomplete, ringbuf_lost, ...
	// Cost is what tracing cost the machine, as the tracer measured it
	// (absent in streams of tracers that predate it).
	Cost  *Cost  `json:"cost,omitempty"`
	Error string `json:"error,omitempty"`
}

// Pair is one (initiator, target) address pair of Header.Pairs.
type Pair struct {
	SrcIP string `json:"src_ip"`
	DstIP string `json:"dst_ip"`
}

// Stats is a running tracer's counters so far (same names as the
// trailer's), written every --stats-interval.
type Stats struct {
	Type     string            `json:"type"` // always "stats"
	AtNS     uint64            `json:"at_ns"`
	Counters map[string]uint64 `json:"counters"`
}

// Cost is a tracer's own measure of what it cost the machine it ran on,
// from its ready line to the end of tracing: the run time of its BPF
// programs (every run counted, a random sample of runs timed; BPFNS is the
// estimate runs × mean timed run time) and the CPU time of its process.
type Cost struct {
	WallNS       uint64 `json:"wall_ns"`        // ready → end of tracing
	BPFNS        uint64 `json:"bpf_ns"`         // run time of the tracer's BPF programs, all CPUs
	BPFRuns      uint64 `json:"bpf_runs"`       // program runs (every hook crossing, matched or not)
	BPFTimedRuns uint64 `json:"bpf_timed_runs"` // runs actually timed: the estimate's sample
	// MatchedBPFNS and MatchedBPFRuns are the part of BPFNS and BPFRuns
	// spent in runs that emitted an event: what the traced pings' own
	// packets cost (estimated from the same sample; absent in streams of
	// tracers that predate them). The rest is every other packet of the
	// host passing the hooks.
	MatchedBPFNS   uint64 `json:"matched_bpf_ns,omitempty"`
	MatchedBPFRuns uint64 `json:"matched_bpf_runs,omitempty"`
	UserNS         uint64 `json:"user_ns"`  // CPU time of the tracer process (user + system)
	StartNS        uint64 `json:"start_ns"` // CPU time of the process before ready (BTF, load, attach)
	// CPUPercent is (BPFNS + UserNS) / WallNS in percent of one CPU;
	// PeakCPUPercent the highest over a CostWindow; MaxCPUPercent the
	// --max-cpu limit it was held to.
	CPUPercent     float64 `json:"cpu_percent"`
	PeakCPUPercent float64 `json:"peak_cpu_percent"`
	MaxCPUPercent  float64 `json:"max_cpu_percent"`
	// Hooks splits the BPF figures by hook (the tool's names).
	Hooks map[string]HookCost `json:"hooks,omitempty"`
}

// HookCost is the BPF cost of one hook of a tracer.
type HookCost struct {
	Runs        uint64 `json:"runs"`
	NS          uint64 `json:"ns"`
	MatchedRuns uint64 `json:"matched_runs,omitempty"` // runs that emitted an event
	MatchedNS   uint64 `json:"matched_ns,omitempty"`
}

// TotalNS is the tracer's whole cost after ready: BPF and process CPU.
func (c *Cost) TotalNS() uint64 { return c.BPFNS + c.UserNS }

// Writer writes records as JSON lines.
type Writer struct {
	enc *json.Encoder
}

// NewWriter returns a Writer on w. The caller owns buffering and flushing.
func NewWriter(w io.Writer) *Writer {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &Writer{enc: enc}
}

// Write writes one record (a *Header, *Ping, *Drop, *Warning or *Trailer) and fills in
// its type field.
func (w *Writer) Write(rec any) error {
	switch r := rec.(type) {
	case *Header:
		r.Type, r.Schema = TypeHeader, Schema
	case *Ping:
		r.Type = TypePing
	case *Drop:
		r.Type = TypeDrop
	case *Warning:
		r.Type = TypeWarning
	case *Trailer:
		r.Type = TypeTrailer
	case *Stats:
		r.Type = TypeStats
	default:
		return fmt.Errorf("writing record: unsupported type %T", rec)
	}
	if err := w.enc.Encode(rec); err != nil {
		return fmt.Errorf("writing %T record: %w", rec, err)
	}
	return nil
}

// Stream is a decoded record stream.
type Stream struct {
	Header   *Header
	Pings    []Ping
	Drops    []Drop
	Warnings []Warning
	Trailer  *Trailer // nil when the stream was cut short
	// Stats is the last stats record (nil when there was none).
	Stats *Stats
	// Problems lists lines that could not be decoded ("line N: ...");
	// decoding goes on past them so that no good record is lost.
	Problems []string
}

// ErrNotRecordStream is returned by Read when the input does not start with a
// pingpath header record.
var ErrNotRecordStream = errors.New("not a pingpath record stream")

// Read decodes a whole stream. Lines that fail to decode are listed in
// Stream.Problems and skipped; only a missing header is an error.
func Read(r io.Reader) (*Stream, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	s := &Stream{}
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			if s.Header == nil {
				return nil, fmt.Errorf("line %d: %w", line, ErrNotRecordStream)
			}
			s.Problems = append(s.Problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		var err error
		switch probe.Type {
		case TypeHeader:
			h := &Header{}
			if err = json.Unmarshal(b, h); err == nil {
				if h.Schema != Schema {
					return nil, fmt.Errorf("line %d: unsupported schema %q (want %q)", line, h.Schema, Schema)
				}
				s.Header = h
			}
		case TypePing:
			var p Ping
			if err = json.Unmarshal(b, &p); err == nil {
				s.Pings = append(s.Pings, p)
			}
		case TypeDrop:
			var d Drop
			if err = json.Unmarshal(b, &d); err == nil {
				s.Drops = append(s.Drops, d)
			}
		case TypeWarning:
			var w Warning
			if err = json.Unmarshal(b, &w); err == nil {
				s.Warnings = append(s.Warnings, w)
			}
		case TypeTrailer:
			t := &Trailer{}
			if err = json.Unmarshal(b, t); err == nil {
				s.Trailer = t
			}
		case TypeStats:
			st := &Stats{}
			if err = json.Unmarshal(b, st); err == nil {
				s.Stats = st
			}
		default:
			err = fmt.Errorf("unknown record type %q", probe.Type)
		}
		if s.Header == nil {
			return nil, fmt.Errorf("line %d: %w", line, ErrNotRecordStream)
		}
		if err != nil {
			s.Problems = append(s.Problems, fmt.Sprintf("line %d: %v", line, err))
		}
	}
	if err := sc.Err(); err != nil {
		s.Problems = append(s.Problems, fmt.Sprintf("line %d: %v", line+1, err))
	}
	if s.Header == nil {
		return nil, ErrNotRecordStream
	}
	return s, nil
}
