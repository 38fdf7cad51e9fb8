package parse

import (
	"bytes"
	"io"
	"math"
	"regexp"
	"strconv"
	"time"
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

// parseTimestamp reads "2006-01-02 15:04:05[.000]" as UTC (the producers
// print local time without a zone; only differences within one file matter).
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

func atou16(b []byte) (uint16, bool) {
	v, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(v), err == nil
}

func parseVMText(f *File, r io.Reader) error {
	f.Tool, f.Identity = "kernel_icmp_rtt", "exact"
	var (
		cur     *Obs
		hasSess bool
		dir     string
		ended   bool
	)
	flush := func(n int) {
		if cur != nil {
			switch {
			case !hasSess:
				f.warnf(cur.Line, "trace block without a Session line skipped")
			case cur.Has == 0:
				f.warnf(cur.Line, "trace block without latency totals skipped")
			default:
				if cur.Has&(1<<D3) == 0 {
					f.warnf(cur.Line, "trace block for id %d seq %d has no Total RTT line (cut short?)", cur.ID, cur.Seq)
				}
				f.Obs = append(f.Obs, *cur)
			}
		}
		cur, hasSess = nil, false
	}
	err := lines(f, r, func(n int, line []byte) {
		if m := reVMBlock.FindSubmatch(line); m != nil {
			flush(n)
			cur = &Obs{Line: n}
			if t, ok := parseTimestamp(string(m[1])); ok {
				cur.Time, cur.TimeWall = t, true
			}
			d := string(m[2])
			if dir == "" {
				dir = d
			}
			if d == "RX" {
				cur.Vantage = VMRx
			} else {
				cur.Vantage = VMTx
			}
			return
		}
		if cur == nil {
			if m := reVMDir.FindSubmatch(line); m != nil {
				dir = string(m[1])
			} else if m := reVMPing.FindSubmatch(line); m != nil {
				f.SrcIP, f.DstIP = string(m[1]), string(m[2])
			} else if bytes.HasPrefix(line, []byte("Exiting.")) || bytes.HasPrefix(line, []byte("Detaching...")) {
				ended = true
			}
			return
		}
		if m := reVMSession.FindSubmatch(line); m != nil {
			id, ok1 := atou16(m[3])
			seq, ok2 := atou16(m[4])
			if !ok1 || !ok2 {
				f.warnf(n, "bad ICMP id/seq in %q", line)
				return
			}
			cur.ID, cur.Seq, cur.HasID, hasSess = id, seq, true, true
			if f.SrcIP == "" {
				f.SrcIP, f.DstIP = string(m[1]), string(m[2])
			}
			return
		}
		if m := reVMValue.FindSubmatch(line); m != nil {
			v, ok := usToNS(string(m[2]))
			if !ok {
				if string(m[2]) != "N/A" {
					f.warnf(n, "bad value %q", m[2])
				}
				return
			}
			switch m[1][0] {
			case 'T':
				switch {
				case bytes.HasPrefix(m[1], []byte("Total Path 1")):
					cur.Set(D0, v)
				case bytes.HasPrefix(m[1], []byte("Total Path 2")):
					cur.Set(D2, v)
				default:
					cur.Set(D3, v)
				}
			case 'I':
				cur.Set(D1, v)
			}
			return
		}
		if bytes.HasPrefix(line, []byte("Detaching...")) || bytes.HasPrefix(line, []byte("Exiting.")) {
			flush(n)
			ended = true
		}
	})
	flush(0)
	switch dir {
	case "TX":
		f.Role = "tx"
	case "RX":
		f.Role = "rx"
	}
	f.Truncated = !ended
	return err
}
