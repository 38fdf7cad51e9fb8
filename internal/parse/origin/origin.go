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
	"io"
	"math"
	"strconv"
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
)

// Detect recognises an origin log from its first bytes (up to ~64 KiB).
func Detect(head []byte) Format {
	switch {
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

// MaxLine bounds the memory one line may take; a longer line ends reading
// with a warning.
const MaxLine = 1 << 20

// Lines calls fn for every line of r (numbered from 1, without the line
// end) and reports a read error through warn.
func Lines(r io.Reader, warn Warn, fn func(n int, line []byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		fn(n, bytes.TrimRight(sc.Bytes(), "\r"))
	}
	if err := sc.Err(); err != nil {
		warn(n+1, "reading stopped: %v", err)
	}
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
