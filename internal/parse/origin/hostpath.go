package origin

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// icmp_drop_detector.py / icmp_path_tracer.py (--verbose) print one line per
// stage event of a flow and, after the [complete] line, the latency line.
// Drop reports are separate blocks. The tool decides drops on userspace
// arrival order, which is wrong when perf rings are read out of order, so a
// drop is the tool's claim, to be re-checked against the other vantage
// points.
var (
	reHostEvent   = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[(\w+)\] ID=(\d+) Seq=(\d+) ReqRX:([Y-]) ReqTX:([Y-]) RepRX:([Y-]) RepTX:([Y-])`)
	reHostLatency = regexp.MustCompile(`^\s*Latency\(us\): ReqInternal=(\S+)\s+External=(\S+)\s+RepInternal=(\S+)\s+Total=(\S+)`)
	reHostDrop    = regexp.MustCompile(`^=== ICMP Drop Detected: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ===`)
	reHostFlow    = regexp.MustCompile(`^Flow: (\S+) -> (\S+) \(ID=(\d+), Seq=(\d+)\)`)
	reHostStage   = regexp.MustCompile(`^\s*\[(\d)\] (\w+): (recorded|MISSING)`)
	reHostIface   = regexp.MustCompile(`^(RX|TX) Interface\(s\): (.*)$`)
	reHostIP      = regexp.MustCompile(`^(Source|Destination) IP: (\S+)`)
)

// HostStageNames are the host tool's names of its four stages, in path
// order (pingpath's host tool calls them req_in, req_out, rep_in, rep_out).
var HostStageNames = [4]string{"ReqRX", "ReqTX", "RepRX", "RepTX"}

// Host tool roles (Role).
const (
	RoleSender   = "sender"   // the request enters from the VM side
	RoleReceiver = "receiver" // the request enters from the physical side
)

// HostLog is an icmp_drop_detector.py / icmp_path_tracer.py log.
type HostLog struct {
	RxIface, TxIface string // the devices the tool was told to watch, "vnet35,eth1"
	SrcIP, DstIP     string
	Flows            []HostFlow // in order of their first line, complete or not
	Drops            []HostDrop
	// Tracked is the closing statistics' "Total flows tracked" (-1 when
	// not printed): with --verbose missing, the tool tracks flows but
	// prints none.
	Tracked int
	Ended   bool
	// Scan is what reading the log saw: line count, skipped lines, the
	// tool's own error lines.
	Scan Scan
}

// HostFlow is one ping as the tool followed it.
type HostFlow struct {
	Line    int // of the flow's first line
	ID, Seq uint16
	Time    int64 // Unix ns of the first line (local time read as UTC)
	// Seen has bit i set once stage i (HostStageNames) was printed as seen;
	// StageWall is the time of the line that first showed it (ms resolution).
	Seen      uint8
	StageWall [4]int64
	// Latency: ReqInternal, External, RepInternal, Total, from the line
	// after [complete].
	Latency [4]Dur
}

// HostDrop is a drop block: the tool's claim that a ping was lost.
type HostDrop struct {
	Line        int
	ID, Seq     uint16
	Time        int64
	LastSeen    string // HostStageNames
	FirstMissed string
	Location    string // e.g. "EXTERNAL (network or peer)"
}

// Role is the host's role as the watched devices tell it: the request
// enters from the VM side on the sender host. Empty when the devices do not
// tell (the analysis then compares the totals of both hosts' logs).
func (l *HostLog) Role() string {
	switch {
	case IsVMIface(firstIface(l.RxIface)):
		return RoleSender
	case IsVMIface(firstIface(l.TxIface)):
		return RoleReceiver
	}
	return ""
}

// IsVMIface reports whether a device name looks like the host side of a
// VM's NIC (libvirt vnetN, tapN, Xen vifN, macvtapN).
func IsVMIface(name string) bool {
	for _, p := range []string{"vnet", "tap", "vif", "macvtap", "vhost"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ifaceNames turns "vnet35(ifindex=62), eth1(ifindex=3)" into "vnet35,eth1".
func ifaceNames(s string) string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if i := strings.IndexByte(part, '('); i >= 0 {
			part = part[:i]
		}
		if part != "" {
			out = append(out, part)
		}
	}
	return strings.Join(out, ",")
}

func firstIface(s string) string {
	if i := strings.IndexByte(s, ','); i >= 0 {
		return s[:i]
	}
	return s
}

// ReadHost reads an icmp_drop_detector.py / icmp_path_tracer.py log.
func ReadHost(r io.Reader, warn Warn) *HostLog {
	log := &HostLog{Tracked: -1}
	open := map[uint32]int{} // id<<16|seq → index in log.Flows of the flow not yet complete
	var drop *HostDrop
	flushDrop := func() {
		if drop != nil {
			log.Drops = append(log.Drops, *drop)
			drop = nil
		}
	}
	lastComplete := -1
	log.Scan = Lines(r, warn, func(n int, line []byte) {
		if m := reHostEvent.FindSubmatch(line); m != nil {
			flushDrop()
			id, ok1 := atou16(m[3])
			seq, ok2 := atou16(m[4])
			t, ok3 := parseTimestamp(string(m[1]))
			if !ok1 || !ok2 || !ok3 {
				warn(n, "bad flow line %q", line)
				return
			}
			key := uint32(id)<<16 | uint32(seq)
			i, ok := open[key]
			if !ok {
				log.Flows = append(log.Flows, HostFlow{ID: id, Seq: seq, Time: t, Line: n})
				i = len(log.Flows) - 1
				open[key] = i
			}
			fl := &log.Flows[i]
			for s := range HostStageNames {
				if m[5+s][0] == 'Y' && fl.Seen&(1<<s) == 0 {
					fl.Seen |= 1 << s
					fl.StageWall[s] = t
				}
			}
			lastComplete = -1
			if string(m[2]) == "complete" {
				delete(open, key)
				lastComplete = i
			}
			return
		}
		if m := reHostLatency.FindSubmatch(line); m != nil {
			if lastComplete < 0 {
				warn(n, "latency line without a preceding [complete] line")
				return
			}
			fl := &log.Flows[lastComplete]
			for k := range fl.Latency {
				v, ok := usToNS(string(m[1+k]))
				if !ok {
					warn(n, "bad latency value %q", m[1+k])
					continue
				}
				fl.Latency[k] = Dur{v, true}
			}
			lastComplete = -1
			return
		}
		if m := reHostDrop.FindSubmatch(line); m != nil {
			flushDrop()
			t, _ := parseTimestamp(string(m[1]))
			drop = &HostDrop{Time: t, Line: n}
			return
		}
		if drop != nil {
			if m := reHostFlow.FindSubmatch(line); m != nil {
				id, ok1 := atou16(m[3])
				seq, ok2 := atou16(m[4])
				if !ok1 || !ok2 {
					warn(n, "bad drop flow line %q", line)
					drop = nil
					return
				}
				drop.ID, drop.Seq = id, seq
				return
			}
			if m := reHostStage.FindSubmatch(line); m != nil {
				if string(m[3]) == "recorded" {
					drop.LastSeen = string(m[2])
				} else if drop.FirstMissed == "" {
					drop.FirstMissed = string(m[2])
				}
				return
			}
			if rest, ok := bytes.CutPrefix(line, []byte("Drop Location: ")); ok {
				drop.Location = string(rest)
				return
			}
		}
		if m := reHostIface.FindSubmatch(line); m != nil {
			if string(m[1]) == "RX" {
				log.RxIface = ifaceNames(string(m[2]))
			} else {
				log.TxIface = ifaceNames(string(m[2]))
			}
			return
		}
		if m := reHostIP.FindSubmatch(line); m != nil {
			if string(m[1]) == "Source" {
				log.SrcIP = string(m[2])
			} else {
				log.DstIP = string(m[2])
			}
			return
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Total flows tracked: ")); ok {
			if v, err := strconv.Atoi(string(bytes.TrimSpace(rest))); err == nil && v >= 0 {
				log.Tracked = v
			}
			return
		}
		if bytes.HasPrefix(line, []byte("=== ICMP Flow Statistics ===")) || bytes.HasPrefix(line, []byte("Detaching...")) {
			flushDrop()
			log.Ended = true
		}
	})
	flushDrop()
	return log
}
