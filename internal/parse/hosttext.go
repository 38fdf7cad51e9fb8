package parse

import (
	"bytes"
	"io"
	"regexp"
	"strings"
)

// icmp_drop_detector.py / icmp_path_tracer.py (--verbose) print one line per
// stage event of a flow and, after the [complete] line, the latency line.
// Drop reports are separate blocks. The tool decides drops on userspace
// arrival order, which is wrong when perf rings are read out of order, so a
// drop is kept as the tool's claim and re-checked against the other
// vantage points by the analysis.
var (
	reHostEvent   = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[(\w+)\] ID=(\d+) Seq=(\d+) ReqRX:([Y-]) ReqTX:([Y-]) RepRX:([Y-]) RepTX:([Y-])`)
	reHostLatency = regexp.MustCompile(`^\s*Latency\(us\): ReqInternal=(\S+)\s+External=(\S+)\s+RepInternal=(\S+)\s+Total=(\S+)`)
	reHostDrop    = regexp.MustCompile(`^=== ICMP Drop Detected: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ===`)
	reHostFlow    = regexp.MustCompile(`^Flow: (\S+) -> (\S+) \(ID=(\d+), Seq=(\d+)\)`)
	reHostStage   = regexp.MustCompile(`^\s*\[(\d)\] (\w+): (recorded|MISSING)`)
	reHostIface   = regexp.MustCompile(`^(RX|TX) Interface\(s\): (.*)$`)
	reHostIP      = regexp.MustCompile(`^(Source|Destination) IP: (\S+)`)
)

// HostStageNames are the origin host tool's names of the four stages.
var HostStageNames = [NumStages]string{"ReqRX", "ReqTX", "RepRX", "RepTX"}

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

func parseHostText(f *File, r io.Reader) error {
	f.Tool, f.Identity = "icmp_path_tracer", "exact"
	open := map[uint32]int{} // id<<16|seq → index in f.Obs of the flow not yet complete
	var drop *DropObs
	ended := false
	flushDrop := func() {
		if drop != nil {
			f.Drops = append(f.Drops, *drop)
			drop = nil
		}
	}
	lastComplete := -1
	err := lines(f, r, func(n int, line []byte) {
		if m := reHostEvent.FindSubmatch(line); m != nil {
			flushDrop()
			id, ok1 := atou16(m[3])
			seq, ok2 := atou16(m[4])
			t, ok3 := parseTimestamp(string(m[1]))
			if !ok1 || !ok2 || !ok3 {
				f.warnf(n, "bad flow line %q", line)
				return
			}
			key := uint32(id)<<16 | uint32(seq)
			i, ok := open[key]
			if !ok {
				f.Obs = append(f.Obs, Obs{ID: id, Seq: seq, HasID: true, Time: t, TimeWall: true, Line: n})
				i = len(f.Obs) - 1
				open[key] = i
			}
			o := &f.Obs[i]
			for s := 0; s < NumStages; s++ {
				if m[5+s][0] == 'Y' && o.Seen&(1<<s) == 0 {
					o.Seen |= 1 << s
					o.StageWall[s] = t
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
				f.warnf(n, "latency line without a preceding [complete] line")
				return
			}
			o := &f.Obs[lastComplete]
			for k := 0; k < NumDur; k++ {
				v, ok := usToNS(string(m[1+k]))
				if !ok {
					f.warnf(n, "bad latency value %q", m[1+k])
					continue
				}
				o.Set(k, v)
			}
			lastComplete = -1
			return
		}
		if m := reHostDrop.FindSubmatch(line); m != nil {
			flushDrop()
			t, _ := parseTimestamp(string(m[1]))
			drop = &DropObs{Time: t, Line: n}
			return
		}
		if drop != nil {
			if m := reHostFlow.FindSubmatch(line); m != nil {
				id, ok1 := atou16(m[3])
				seq, ok2 := atou16(m[4])
				if !ok1 || !ok2 {
					f.warnf(n, "bad drop flow line %q", line)
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
				f.RxIface = ifaceNames(string(m[2]))
			} else {
				f.TxIface = ifaceNames(string(m[2]))
			}
			return
		}
		if m := reHostIP.FindSubmatch(line); m != nil {
			if string(m[1]) == "Source" {
				f.SrcIP = string(m[2])
			} else {
				f.DstIP = string(m[2])
			}
			return
		}
		if bytes.HasPrefix(line, []byte("=== ICMP Flow Statistics ===")) || bytes.HasPrefix(line, []byte("Detaching...")) {
			flushDrop()
			ended = true
		}
	})
	flushDrop()
	// Flows whose drop block names them are still in f.Obs (partial); the
	// analysis uses Seen for drop localisation.
	switch {
	case IsVMIface(firstIface(f.RxIface)):
		f.Role = "sender"
	case IsVMIface(firstIface(f.TxIface)):
		f.Role = "receiver"
	}
	v := HostSender
	if f.Role == "receiver" {
		v = HostReceiver
	}
	for i := range f.Obs {
		f.Obs[i].Vantage = v
	}
	for i := range f.Drops {
		f.Drops[i].Vantage = v
	}
	f.Truncated = !ended
	return err
}

func firstIface(s string) string {
	if i := strings.IndexByte(s, ','); i >= 0 {
		return s[:i]
	}
	return s
}
