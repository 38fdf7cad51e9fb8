// Package parse reads everything a measurement leaves behind — pingpath's own
// tracer record streams, the origin tools' text logs (kernel_icmp_rtt,
// icmp_drop_detector/icmp_path_tracer, tun_tx_to_kvm_irq,
// kvm_vhost_tun_latency) and ping's own output — and turns each file into a
// list of per-ping observations in one common shape. Files are recognised by
// their content, never by their name. Parsing is forgiving: a line that
// cannot be understood becomes a warning naming file and line, and every
// other line is still used. The origin tools' text formats are read by the
// subpackage origin; this package maps them, like its own record streams
// (whose stage tables are internal/record's), onto observations.
package parse

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"unicode/utf8"

	"github.com/pingpath/pingpath/internal/inputfile"
	"github.com/pingpath/pingpath/internal/parse/origin"
	"github.com/pingpath/pingpath/internal/record"
)

// Kind says which producer wrote a file.
type Kind int

// File kinds, recognised by content.
const (
	KindUnknown   Kind = iota
	KindRecord         // pingpath tracer JSON-lines stream (internal/record)
	KindVMText         // origin kernel_icmp_rtt.py (either label set)
	KindHostText       // origin icmp_drop_detector.py / icmp_path_tracer.py
	KindTunText        // origin tun_tx_to_kvm_irq.py
	KindVhostTX        // origin kvm_vhost_tun_latency_details.py / _no_discovery.py
	KindPing           // output of `ping -D -n -O`
	KindToolError      // nothing but a tool's error output (a BCC compile error, a Python traceback)
	KindCommands       // the origin workflow's commands.log: which tool wrote which log
)

var kindNames = [...]string{"not recognised", "pingpath record stream", "kernel_icmp_rtt log",
	"icmp_path_tracer log", "tun_tx_to_kvm_irq log", "kvm_vhost_tun_latency log", "ping output",
	"tool error output", "origin commands.log"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Vantage is one measurement point of the path: which tracer, in which role.
type Vantage int

// The eight vantage points, plus ping's own view.
const (
	VMTx           Vantage = iota // sender VM (vm tracer, role tx): A, InterPath_s, M, RTT
	VMRx                          // receiver VM (role rx): F, G, H, Total_rv
	HostSender                    // sender host: B, Ext_s, K, Total_s
	HostReceiver                  // receiver host: D, Ext_r, I, Total_r
	VhostRXRequest                // receiver host vhost-rx, echo request into the guest: E
	VhostRXReply                  // sender host vhost-rx, echo reply into the guest: L
	VhostTXRequest                // sender host vhost-tx, echo request out of the guest: B_1
	VhostTXReply                  // receiver host vhost-tx, echo reply out of the guest: I_1
	PingOwn                       // ping's own RTT per seq
	NumVantages
)

var vantageNames = [...]string{"sender VM", "receiver VM", "sender host", "receiver host",
	"receiver host vhost-rx (E)", "sender host vhost-rx (L)", "sender host vhost-tx (B_1)",
	"receiver host vhost-tx (I_1)", "ping"}

// vantageRecords names the record table and role behind each tracer
// vantage (record.Path.Spans then say which segment each duration is).
var vantageRecords = [...]struct {
	path *record.Path
	role string
}{
	VMTx: {record.VM, record.RoleTX}, VMRx: {record.VM, record.RoleRX},
	HostSender: {record.Host, record.RoleSender}, HostReceiver: {record.Host, record.RoleReceiver},
	VhostRXRequest: {record.VhostRX, record.RoleRequest}, VhostRXReply: {record.VhostRX, record.RoleReply},
	VhostTXRequest: {record.VhostTX, record.RoleRequest}, VhostTXReply: {record.VhostTX, record.RoleReply},
}

// Record returns the stage table and the role a tracer vantage reads; nil
// for ping's own view.
func (v Vantage) Record() (*record.Path, string) {
	if v < 0 || int(v) >= len(vantageRecords) {
		return nil, ""
	}
	return vantageRecords[v].path, vantageRecords[v].role
}

func (v Vantage) String() string {
	if v >= 0 && int(v) < len(vantageNames) {
		return vantageNames[v]
	}
	return "unknown vantage"
}

// Indexes into Obs.Dur. The meaning depends on the vantage:
//
//	VMTx:  D0=A (path1)  D1=InterPath_s  D2=M (path2)  D3=Total RTT
//	VMRx:  D0=F (path1)  D1=G (inter)    D2=H (path2)  D3=Total_rv
//	Host*: D0=B|D (req_internal) D1=Ext (external) D2=K|I (rep_internal) D3=Total
//	Vhost*: D3=total (E, L: t5−t1; B_1, I_1: netif_receive − kick)
//	PingOwn: D3=ping's RTT
const (
	D0 = iota
	D1
	D2
	D3
	NumDur
)

// Host stage indexes into Obs.Stage (CLOCK_MONOTONIC ns of the host).
const (
	StReqIn = iota
	StReqOut
	StRepIn
	StRepOut
	NumStages
)

// Obs is one vantage point's view of one ping.
type Obs struct {
	Vantage Vantage
	ID, Seq uint16
	// HasID is false when the producer printed no ICMP identity for this
	// observation (kvm_vhost_tun_latency lines); such observations are
	// matched to pings by time window.
	HasID bool
	// Dur holds durations in ns; bit i of Has says whether Dur[i] is known.
	Dur [NumDur]int64
	Has uint8
	// Stage holds host stage timestamps (CLOCK_MONOTONIC ns, record streams
	// only); bit i of HasStage says whether Stage[i] is known.
	Stage    [NumStages]uint64
	HasStage uint8
	// StageWall is the wall time (Unix ns) at which an origin host tool
	// printed each stage (ms resolution; used for time-window matching).
	StageWall [NumStages]int64
	// Seen has bit i set when host stage i was observed (record or origin).
	Seen uint8
	// Time orders observations within a file and places them on a time
	// axis: Unix ns of wall time when known (TimeWall), else the producer's
	// monotonic ns.
	Time     int64
	TimeWall bool
	Line     int // line of the file where the observation starts
	// Extra carries a few details worth showing (e.g. "chain": "time-window").
	Note string
}

// Set stores a duration.
func (o *Obs) Set(i int, ns int64) { o.Dur[i] = ns; o.Has |= 1 << i }

// Get returns a duration and whether it is known.
func (o *Obs) Get(i int) (int64, bool) { return o.Dur[i], o.Has&(1<<i) != 0 }

// SetStage stores a host stage timestamp.
func (o *Obs) SetStage(i int, ns uint64) { o.Stage[i] = ns; o.HasStage |= 1 << i }

// DropObs is a drop (or timeout) reported by one vantage point.
type DropObs struct {
	Vantage     Vantage
	ID, Seq     uint16
	LastSeen    string // stage name as the producer calls it
	FirstMissed string
	Location    string // origin: "EXTERNAL (network or peer)"; record: kernel symbol
	Reason      string // kernel drop reason when known
	Device      string
	Time        int64
	Line        int
}

// PingReply is ping's own view of one sequence number.
type PingReply struct {
	Seq     uint16
	RTTNS   int64 // 0 when no reply
	Replied bool
	Time    int64 // Unix ns of the -D timestamp
	Line    int
}

// File is one parsed input file.
type File struct {
	Path string
	Kind Kind
	// Tool and Role as the file states them (record header, or derived from
	// the origin banner).
	Tool, Role string
	// BootID and Hostname from a record header (empty for origin logs).
	BootID, Hostname, Kernel, Version string
	// StartMonoNS/StartWallNS map monotonic ns to wall time (record streams).
	StartMonoNS uint64
	StartWallNS int64
	// SrcIP/DstIP: the echo request's source and destination as the file
	// states them (filters, session line, flow filter).
	SrcIP, DstIP string
	// Devices the producer was told to watch (vnet, physical NIC).
	RxIface, TxIface, Device string
	// Identity describes how observations carry the ping identity:
	// "exact" (ICMP id+seq on every record), "stage1+time-window" (tun),
	// "time-window" (kvm_vhost), "seq" (ping).
	Identity string
	Obs      []Obs
	Drops    []DropObs
	Replies  []PingReply
	// Sent/Received from ping's summary line (0 when absent).
	Sent, Received int
	// Counters from a record trailer or an origin summary.
	Counters map[string]uint64
	// Cost is what the tracer measured it cost its machine (record
	// trailer; nil otherwise), ExitReason why it stopped, EndWallNS when.
	Cost       *record.Cost
	ExitReason string
	EndWallNS  int64
	// DetachedWallNS is when the tracer detached itself because it cost
	// more than --max-cpu (0: it did not): it saw nothing after that.
	DetachedWallNS int64
	Warnings       []string
	// Truncated is true when the producer's closing summary is missing.
	Truncated bool
	// Failures are the lines in which the producer said that it failed
	// (BCC's "Error loading BPF program", a Python traceback's exception,
	// a record trailer's error).
	Failures []origin.Failure
	// Script is the origin script a Python traceback in the file names.
	Script string
	// Lines is the number of lines read; SkippedLines those longer than
	// origin.MaxLine, skipped with a warning.
	Lines, SkippedLines int
	// Binary is true when the content is not text (a NUL byte, or not
	// UTF-8, within its first bytes).
	Binary bool
	// Partial says why only part of the file was read ("" when all of it).
	Partial string
	// Commands is the origin workflow's commands.log (KindCommands).
	Commands *origin.Commands
	// sizeHint is the input's size when known, to pre-size Obs.
	sizeHint int64
}

// Empty reports whether the file holds no observation of any ping.
func (f *File) Empty() bool { return len(f.Obs) == 0 && len(f.Drops) == 0 && len(f.Replies) == 0 }

func (f *File) warnf(line int, format string, args ...any) {
	// Cap the warning list so a garbage file cannot grow it without bound.
	const maxWarnings = 200
	if len(f.Warnings) == maxWarnings {
		f.Warnings = append(f.Warnings, fmt.Sprintf("%s: more warnings suppressed", filepath.Base(f.Path)))
	}
	if len(f.Warnings) > maxWarnings {
		return
	}
	f.Warnings = append(f.Warnings, fmt.Sprintf("%s:%d: %s", filepath.Base(f.Path), line, fmt.Sprintf(format, args...)))
}

// Detect recognises a file's producer from its first bytes (up to ~64 KiB).
func Detect(head []byte) Kind {
	trim := bytes.TrimLeft(head, " \t\r\n")
	if bytes.HasPrefix(trim, []byte("{")) {
		if bytes.Contains(head, []byte(`"pingpath.trace/`)) {
			return KindRecord
		}
		return KindUnknown
	}
	switch origin.Detect(head) {
	case origin.Workflow:
		return KindCommands
	case origin.VMRTT:
		return KindVMText
	case origin.HostPath:
		return KindHostText
	case origin.TunIRQ:
		return KindTunText
	case origin.KVMTun:
		return KindVhostTX
	}
	switch {
	case bytes.HasPrefix(trim, []byte("PING ")),
		bytes.Contains(head, []byte(" icmp_seq=")) && (bytes.Contains(head, []byte(" bytes from ")) || bytes.Contains(head, []byte("no answer yet"))):
		return KindPing
	}
	return KindUnknown
}

// DefaultMaxFileBytes bounds how much of one file ParseFile reads by
// default: 1 GiB is about 4 million tracer records (12 hours of one stream
// at 100 pings/s), which the analysis holds in about 600 MB.
const DefaultMaxFileBytes = 1 << 30

// ParseFile recognises and parses one file, reading at most maxBytes of it
// (the rest is left unread, with a warning and File.Partial saying so). A
// file that is not a regular file (a FIFO, a device, a symlink to one) is
// refused with an error wrapping inputfile.ErrNotRegular, without blocking
// on it. A file of unknown kind returns a File with Kind == KindUnknown (or
// KindToolError when it holds a tool's error output) and no error. Reading
// stops with ctx's error when ctx ends.
func ParseFile(ctx context.Context, path string, maxBytes int64) (*File, error) {
	fh, st, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %w", err)
	}
	defer fh.Close()
	var r io.Reader = ctxReader{ctx, fh}
	partial := ""
	if maxBytes > 0 && st.Size() > maxBytes {
		r = io.LimitReader(r, maxBytes)
		partial = fmt.Sprintf("read only the first %s of %s (raise --max-file-size to read all of it)", byteSize(maxBytes), byteSize(st.Size()))
	}
	f, err := parse(path, r, st.Size())
	if f != nil && partial != "" {
		f.Partial = partial
		f.warnf(0, "%s", partial)
	}
	if cerr := ctx.Err(); cerr != nil {
		return f, fmt.Errorf("reading %s: %w", path, cerr)
	}
	return f, err
}

// ctxReader ends a read once its context has ended, so that reading a huge
// file gives way to Ctrl-C or SIGTERM.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// Parse recognises and parses one input; name is used in warnings.
func Parse(name string, r io.Reader) (*File, error) { return parse(name, r, 0) }

func parse(name string, r io.Reader, size int64) (*File, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	head, _ := br.Peek(64 * 1024)
	f := &File{Path: name, Kind: Detect(head), sizeHint: size}
	var err error
	switch f.Kind {
	case KindRecord:
		err = readRecords(f, br)
	case KindVMText:
		err = parseVMText(f, br)
	case KindHostText:
		err = parseHostText(f, br)
	case KindTunText:
		err = parseTunText(f, br)
	case KindVhostTX:
		err = parseVhostTX(f, br)
	case KindPing:
		err = parsePing(f, br)
	case KindCommands:
		f.Commands = origin.ReadCommands(br, f.warnf)
	case KindUnknown:
		readUnknown(f, head, br)
	}
	if err != nil {
		return f, fmt.Errorf("parsing %s (%s): %w", name, f.Kind, err)
	}
	return f, nil
}

// readUnknown looks through a file no producer's banner was found in: text
// holding a tool's error lines is that tool's failed output; anything else
// stays unknown, and binary content is said to be such.
func readUnknown(f *File, head []byte, r io.Reader) {
	if isBinary(head) {
		f.Binary = true
		return
	}
	f.scanned(origin.Lines(r, f.warnf, func(int, []byte) {}))
	if len(f.Failures) > 0 {
		f.Kind = KindToolError
		f.Tool = f.Script
	}
}

// isBinary reports whether the head of a file is not text: a NUL byte, or
// more than a few bytes that are not UTF-8.
func isBinary(head []byte) bool {
	if bytes.IndexByte(head, 0) >= 0 {
		return true
	}
	bad := 0
	for b := head; len(b) > 0; {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			bad++
		}
		b = b[n:]
	}
	return bad > len(head)/100+3
}

// scanned keeps what the line reader saw.
func (f *File) scanned(sc origin.Scan) {
	f.Lines, f.SkippedLines = sc.Lines, sc.Skipped
	f.Failures = append(f.Failures, sc.Failures...)
	if f.Script == "" {
		f.Script = sc.Script
	}
}

// lines calls fn for every line of r (without the newline), numbering from
// 1. Over-long lines are reported and skipped.
func lines(f *File, r io.Reader, fn func(n int, line []byte)) error {
	f.scanned(origin.Lines(r, f.warnf, fn))
	return nil
}
