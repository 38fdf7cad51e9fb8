package origin

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
)

// kvm_vhost_tun_latency_details.py and _no_discovery.py print one line per
// packet leaving the guest, with the host's wall time of day (no date) and
// integer microseconds, but no ICMP identity: the analysis pairs each line
// with the host tool's observation of the same packet by time window.
// `total=0us` means stage S0 was not matched; such lines carry no B_1/I_1.
var (
	reKVMTunLine = regexp.MustCompile(`(?m)^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\] tid=(\d+) queue=(-?\d+) s0=(\d+)us s1=(\d+)us s2=(\d+)us total=(\d+)us`)
	reKVMTunFlow = regexp.MustCompile(`src=([0-9a-fA-F.:]+),dst=([0-9a-fA-F.:]+)`)
	reKVMTunDev  = regexp.MustCompile(`^Device filter: (\S+)`)
)

// DayNS is the length of a day in ns; kvm_vhost times are ns since midnight.
const DayNS = int64(86400e9)

// KVMTunLog is a kvm_vhost_tun_latency_*.py log.
type KVMTunLog struct {
	Device       string
	SrcIP, DstIP string // the flow filter
	Packets      []KVMTunPacket
	Ended        bool
	// Scan is what reading the log saw: line count, skipped lines, the
	// tool's own error lines.
	Scan Scan
}

// KVMTunPacket is one packet leaving the guest.
type KVMTunPacket struct {
	Line      int
	TimeOfDay int64 // ns since the host's midnight (ms resolution)
	// S0 (ioeventfd → kick), S1, S2 and Total, each unknown when the tool
	// printed total=0us (S0 not matched).
	S0, S1, S2, Total Dur
	Note              string
}

// ReadKVMTun reads a kvm_vhost_tun_latency_details.py / _no_discovery.py log.
func ReadKVMTun(r io.Reader, warn Warn) *KVMTunLog {
	log := &KVMTunLog{}
	zero := 0
	log.Scan = Lines(r, warn, func(n int, line []byte) {
		if len(line) > 0 && line[0] == '[' {
			m := reKVMTunLine.FindSubmatch(line)
			if m == nil {
				warn(n, "bad per-packet line %q", truncate(line))
				return
			}
			var v [10]int64
			for i := 0; i < 10; i++ {
				x, err := strconv.ParseInt(string(m[1+i]), 10, 64)
				if err != nil {
					warn(n, "bad number %q", m[1+i])
					return
				}
				v[i] = x
			}
			if v[0] > 23 || v[1] > 59 || v[2] > 60 {
				warn(n, "bad time of day")
				return
			}
			p := KVMTunPacket{Line: n, TimeOfDay: ((v[0]*60+v[1])*60+v[2])*1e9 + v[3]*1e6}
			if v[9] == 0 {
				zero++
				p.Note = "total=0us (S0 not matched)"
			} else {
				p.S0, p.S1, p.S2, p.Total = Dur{v[6] * 1000, true}, Dur{v[7] * 1000, true}, Dur{v[8] * 1000, true}, Dur{v[9] * 1000, true}
			}
			log.Packets = append(log.Packets, p)
			return
		}
		if m := reKVMTunDev.FindSubmatch(line); m != nil {
			log.Device = string(m[1])
			return
		}
		if bytes.Contains(line, []byte("src=")) && (bytes.Contains(line, []byte("low")) || bytes.Contains(line, []byte("proto="))) {
			if m := reKVMTunFlow.FindSubmatch(line); m != nil && log.SrcIP == "" {
				log.SrcIP, log.DstIP = string(m[1]), string(m[2])
			}
			return
		}
		if bytes.Contains(line, []byte("Summary Statistics")) || bytes.HasPrefix(line, []byte("[final]")) {
			log.Ended = true
		}
	})
	if zero > 0 {
		warn(0, "%d line(s) with total=0us (S0 not matched) carry no total and are left out", zero)
	}
	return log
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
