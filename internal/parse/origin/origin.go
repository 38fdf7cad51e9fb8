// Package origin reads the text logs of the origin tools, the BCC scripts
// pingpath replaces: kernel_icmp_rtt.py (guest stack), icmp_drop_detector.py
// / icmp_path_tracer.py (hypervisor host), tun_tx_to_kvm_irq.py (tun → vhost
// → KVM interrupt) and kvm_vhost_tun_latency_details.py / _no_discovery.py
// (guest kick → tun). Each reader returns what its tool printed, in the
// tool's own terms (its blocks, flows, chains and lines, with the line
// numbers they came from); package parse maps them onto observations of the
// segment model. A line that cannot be understood is reported through Warn
// and every other line is still used. Nothing here depends on pingpath's
// own formats.
package origin

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Format is the origin tool that wrote a log.
type Format int

// Formats, recognised by content.
const (
	Unknown  Format = iota
	VMRTT           // kernel_icmp_rtt.py (either label set)
	HostPath        // icmp_drop_detector.py / icmp_path_tracer.py
	TunIRQ          // tun_tx_to_kvm_irq.py
	KVMTun          // kvm_vhost_tun_latency_details.py / _no_discovery.py
	Workflow        // the origin workflow's commands.log (which tool wrote which log)
)

// Detect recognises an origin log from its first bytes (up to ~64 KiB).
func Detect(head []byte) Format {
	switch {
	case bytes.Contains(head, []byte(CommandsBanner)):
		return Workflow
	case bytes.Contains(head, []byte("=== Kernel ICMP RTT Tracer ===")),
		bytes.Contains(head, []byte("=== ICMP RTT Trace:")):
		return VMRTT
	case bytes.Contains(head, []byte("=== ICMP Drop Detector ===")),
		bytes.Contains(head, []byte("=== ICMP Path Tracer ===")),
		bytes.Contains(head, []byte("ReqRX:")) && bytes.Contains(head, []byte("RepTX:")):
		return HostPath
	case bytes.Contains(head, []byte("TUN TX QUEUE INTERRUPT TRACING")),
		bytes.Contains(head, []byte("TUN TX INTERRUPT [")):
		return TunIRQ
	case bytes.Contains(head, []byte("Target vhost TIDs:")),
		bytes.Contains(head, []byte("TID -> Queue -> Eventfd")),
		bytes.Contains(head, []byte("KVM -> vhost -> TUN")),
		bytes.Contains(head, []byte("S0 (ioeventfd->kick)")),
		reKVMTunLine.Match(firstLines(head)):
		return KVMTun
	}
	return Unknown
}

func firstLines(b []byte) []byte {
	if len(b) > 4096 {
		b = b[:4096]
	}
	return b
}

// Warn receives a problem found at a line of the log (0: the log as a
// whole).
type Warn func(line int, format string, args ...any)

// Dur is a duration as a log printed it; OK is false when the log printed
// none (N/A, a missing line).
type Dur struct {
	NS int64
	OK bool
}

// MaxLine bounds the memory one line may take; a longer line is skipped
// with a warning and reading resumes at the next line.
const MaxLine = 1 << 20

// Scan is what Lines saw besides the lines it handed on.
type Scan struct {
	Lines   int // lines read, skipped ones included
	Skipped int // lines longer than MaxLine, skipped
	// Failures are the lines in which the tool (or the Python or BCC
	// under it) said that it failed, in file order.
	Failures []Failure
	// Script is the origin script a Python traceback names ("" when none).
	Script string
}

// Failure is a tool's own report that it failed.
type Failure struct {
	Line int
	Text string
}

// failureMarks are the texts with which the origin tools, BCC and Python
// say a tool failed: BCC's compile and attach errors, the tools' own
// messages around them, and the shell's when the tool could not start.
var failureMarks = [][]byte{
	[]byte("Error loading BPF program"),
	[]byte("Failed to load BPF program"),
	[]byte("Failed to compile BPF"),
	[]byte("Failed to attach BPF"),
	[]byte("bpf: Failed to load program"),
	[]byte("This program must be run as root"),
	[]byte("can't open file"),
	[]byte("command not found"),
	[]byte("No such file or directory"),
}

var reTracebackFile = regexp.MustCompile(`^\s+File "([^"]*/)?([^"/]+\.py)", line \d+`)

// Lines calls fn for every line of r (numbered from 1, without the line
// end). A line longer than MaxLine is reported through warn and skipped,
// and reading goes on at the next line; a read error ends reading with a
// warning. It returns what it saw, including the tool's own error lines.
func Lines(r io.Reader, warn Warn, fn func(n int, line []byte)) Scan {
	return scanLines(r, warn, fn, 64*1024, MaxLine)
}

// scanLines is Lines with its buffer size and line bound as parameters (the
// fuzz test uses small ones).
func scanLines(r io.Reader, warn Warn, fn func(n int, line []byte), bufSize, maxLine int) Scan {
	br := bufio.NewReaderSize(r, bufSize)
	var (
		sc       Scan
		long     []byte // a line longer than the buffer, being assembled
		skipping bool   // inside a line longer than MaxLine
		skipped  int    // its length so far
		tb       = traceback{}
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping && len(long)+len(chunk) <= maxLine {
				long = append(long, chunk...)
				continue
			}
			if !skipping {
				skipping, skipped, long = true, len(long), long[:0]
			}
			skipped += len(chunk)
			continue
		}
		if len(chunk) > 0 || len(long) > 0 || skipping {
			sc.Lines++
			line := chunk
			if len(long) > 0 {
				long = append(long, chunk...)
				line = long
			}
			if skipping || len(bytes.TrimRight(line, "\r\n")) > maxLine {
				warn(sc.Lines, "line longer than %d bytes (%d bytes) skipped", maxLine, skipped+len(line))
				sc.Skipped++
			} else {
				line = bytes.TrimRight(line, "\r\n")
				tb.check(&sc, sc.Lines, line)
				fn(sc.Lines, line)
			}
			skipping, skipped, long = false, 0, long[:0]
		}
		if err != nil {
			if err != io.EOF {
				warn(sc.Lines+1, "reading stopped: %v", err)
			}
			break
		}
	}
	tb.end(&sc)
	return sc
}

// traceback follows a Python traceback: its exception line (the first
// unindented line after the frames) is the failure it reports.
type traceback struct {
	line int // of "Traceback (most recent call last):"; 0 outside one
}

func (tb *traceback) check(sc *Scan, n int, line []byte) {
	if len(line) == 0 || line[0] == '{' || line[0] == '[' {
		// Record streams (JSON) and ping's or kvm_vhost's timestamped
		// lines are never a tool's error, and are most of the lines.
		return
	}
	if tb.line > 0 {
		if line[0] == ' ' || line[0] == '\t' {
			if m := reTracebackFile.FindSubmatch(line); m != nil && sc.Script == "" && ScriptFormat(string(m[2])) != Unknown {
				sc.Script = string(m[2])
			}
			return
		}
		if !bytes.HasPrefix(line, []byte("During handling")) && !bytes.HasPrefix(line, []byte("The above exception")) &&
			!bytes.HasPrefix(line, []byte("Traceback (")) {
			// Ctrl-C (SIGINT) is how the tools are stopped: a
			// KeyboardInterrupt traceback is their normal end.
			if !bytes.HasPrefix(line, []byte("KeyboardInterrupt")) {
				sc.Failures = append(sc.Failures, Failure{Line: tb.line, Text: string(line)})
			}
			tb.line = 0
			return
		}
	}
	if bytes.HasPrefix(line, []byte("Traceback (most recent call last)")) {
		tb.line = n
		return
	}
	for _, m := range failureMarks {
		if bytes.Contains(line, m) {
			sc.Failures = append(sc.Failures, Failure{Line: n, Text: string(line)})
			return
		}
	}
}

// end reports a traceback cut off before its exception line.
func (tb *traceback) end(sc *Scan) {
	if tb.line > 0 {
		sc.Failures = append(sc.Failures, Failure{Line: tb.line, Text: "Python traceback (the exception line is missing)"})
	}
}

// ScriptFormat names the format an origin script writes, from its file
// name ("icmp_drop_detector.py", "/tmp/kvm_vhost_tun_latency_details.py").
func ScriptFormat(name string) Format {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	switch {
	case name == "kernel_icmp_rtt.py":
		return VMRTT
	case name == "icmp_drop_detector.py", name == "icmp_path_tracer.py":
		return HostPath
	case name == "tun_tx_to_kvm_irq.py":
		return TunIRQ
	case strings.HasPrefix(name, "kvm_vhost_tun_latency") && strings.HasSuffix(name, ".py"):
		return KVMTun
	}
	return Unknown
}

// parseTimestamp reads "2006-01-02 15:04:05[.000]" as UTC (the tools print
// local time without a zone; only differences within one log matter).
func parseTimestamp(s string) (int64, bool) {
	layout := "2006-01-02 15:04:05"
	if len(s) > len(layout)+10 {
		s = s[:len(layout)+10] // at most ns resolution
	}
	if len(s) > len(layout) {
		layout += ".000000000"[:len(s)-len(layout)]
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// usToNS converts a printed microsecond value ("60191.937") to ns.
func usToNS(s string) (int64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
		return 0, false
	}
	return int64(math.Round(v * 1000)), true
}

// msToNS converts a printed millisecond value ("0.030") to ns.
func msToNS(s string) (int64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e9 {
		return 0, false
	}
	return int64(math.Round(v * 1e6)), true
}

func atou16(b []byte) (uint16, bool) {
	v, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(v), err == nil
}
