package origin

import (
	"bytes"
	"io"
	"regexp"
)

// kernel_icmp_rtt.py prints one block per completed ping. Only the lines
// that are identical in both label sets (main: "P1:S0 (ip_local_out)"; dev:
// "P1 (ip_local_out)") are used: the block header, Session, the two path
// totals, Total RTT and Inter-Path. Per-hop lines differ between the sets
// and may print N/A, so they are not needed.
var (
	reVMBlock   = regexp.MustCompile(`^=== ICMP RTT Trace: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \((TX|RX)\b`)
	reVMSession = regexp.MustCompile(`^Session: (\S+) -> (\S+) \(ID: (\d+), Seq: (\d+)\)`)
	reVMPing    = regexp.MustCompile(`^Ping Session: (\S+) -> (\S+)`)
	reVMDir     = regexp.MustCompile(`^Trace Direction: (TX|RX)`)
	reVMValue   = regexp.MustCompile(`^\s*(Total Path 1|Total Path 2|Total RTT \(Path1 Start to Path2 End\)|Inter-Path Latency \(P1 end -> P2 start\)):\s*(\S+)\s*us`)
)

// VMLog is a kernel_icmp_rtt.py log.
type VMLog struct {
	Dir          string // "TX" (sender VM) or "RX" (receiver VM); "" when not printed
	SrcIP, DstIP string
	Blocks       []VMBlock
	Ended        bool // the tool's closing lines are there
	// Scan is what reading the log saw: line count, skipped lines, the
	// tool's own error lines.
	Scan Scan
}

// VMBlock is one ping's trace block.
type VMBlock struct {
	Line    int
	Time    int64 // Unix ns of the block header (local time read as UTC); 0 when unreadable
	RX      bool  // the block is the receiver VM's
	ID, Seq uint16
	// The totals: path 1 (request), inter-path, path 2 (reply), round
	// trip (receiver: path 1 start to path 2 end).
	Path1, InterPath, Path2, Total Dur
}

// ReadVM reads a kernel_icmp_rtt.py log. Blocks without a Session line or
// without any total are reported and left out.
func ReadVM(r io.Reader, warn Warn) *VMLog {
	log := &VMLog{}
	var (
		cur     *VMBlock
		hasSess bool
	)
	flush := func() {
		if cur != nil {
			switch {
			case !hasSess:
				warn(cur.Line, "trace block without a Session line skipped")
			case !cur.Path1.OK && !cur.InterPath.OK && !cur.Path2.OK && !cur.Total.OK:
				warn(cur.Line, "trace block without latency totals skipped")
			default:
				if !cur.Total.OK {
					warn(cur.Line, "trace block for id %d seq %d has no Total RTT line (cut short?)", cur.ID, cur.Seq)
				}
				log.Blocks = append(log.Blocks, *cur)
			}
		}
		cur, hasSess = nil, false
	}
	log.Scan = Lines(r, warn, func(n int, line []byte) {
		if m := reVMBlock.FindSubmatch(line); m != nil {
			flush()
			cur = &VMBlock{Line: n, RX: string(m[2]) == "RX"}
			if t, ok := parseTimestamp(string(m[1])); ok {
				cur.Time = t
			}
			if log.Dir == "" {
				log.Dir = string(m[2])
			}
			return
		}
		if cur == nil {
			if m := reVMDir.FindSubmatch(line); m != nil {
				log.Dir = string(m[1])
			} else if m := reVMPing.FindSubmatch(line); m != nil {
				log.SrcIP, log.DstIP = string(m[1]), string(m[2])
			} else if bytes.HasPrefix(line, []byte("Exiting.")) || bytes.HasPrefix(line, []byte("Detaching...")) {
				log.Ended = true
			}
			return
		}
		if m := reVMSession.FindSubmatch(line); m != nil {
			id, ok1 := atou16(m[3])
			seq, ok2 := atou16(m[4])
			if !ok1 || !ok2 {
				warn(n, "bad ICMP id/seq in %q", line)
				return
			}
			cur.ID, cur.Seq, hasSess = id, seq, true
			if log.SrcIP == "" {
				log.SrcIP, log.DstIP = string(m[1]), string(m[2])
			}
			return
		}
		if m := reVMValue.FindSubmatch(line); m != nil {
			v, ok := usToNS(string(m[2]))
			if !ok {
				if string(m[2]) != "N/A" {
					warn(n, "bad value %q", m[2])
				}
				return
			}
			d := Dur{v, true}
			switch {
			case bytes.HasPrefix(m[1], []byte("Total Path 1")):
				cur.Path1 = d
			case bytes.HasPrefix(m[1], []byte("Total Path 2")):
				cur.Path2 = d
			case bytes.HasPrefix(m[1], []byte("Total RTT")):
				cur.Total = d
			default:
				cur.InterPath = d
			}
			return
		}
		if bytes.HasPrefix(line, []byte("Detaching...")) || bytes.HasPrefix(line, []byte("Exiting.")) {
			flush()
			log.Ended = true
		}
	})
	flush()
	return log
}
