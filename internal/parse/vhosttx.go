package parse

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
	reVhostLine = regexp.MustCompile(`(?m)^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\] tid=(\d+) queue=(-?\d+) s0=(\d+)us s1=(\d+)us s2=(\d+)us total=(\d+)us`)
	reVhostFlow = regexp.MustCompile(`src=([0-9a-fA-F.:]+),dst=([0-9a-fA-F.:]+)`)
	reVhostDev  = regexp.MustCompile(`^Device filter: (\S+)`)
)

// DayNS is the length of a day in ns; kvm_vhost times are ns since midnight.
const DayNS = int64(86400e9)

func parseVhostTX(f *File, r io.Reader) error {
	f.Tool, f.Identity = "kvm_vhost_tun_latency", "time-window"
	ended := false
	zero := 0
	err := lines(f, r, func(n int, line []byte) {
		if len(line) > 0 && line[0] == '[' {
			m := reVhostLine.FindSubmatch(line)
			if m == nil {
				f.warnf(n, "bad per-packet line %q", truncate(line))
				return
			}
			var v [10]int64
			for i := 0; i < 10; i++ {
				x, err := strconv.ParseInt(string(m[1+i]), 10, 64)
				if err != nil {
					f.warnf(n, "bad number %q", m[1+i])
					return
				}
				v[i] = x
			}
			if v[0] > 23 || v[1] > 59 || v[2] > 60 {
				f.warnf(n, "bad time of day")
				return
			}
			o := Obs{Vantage: VhostTXRequest, Line: n,
				Time: ((v[0]*60+v[1])*60+v[2])*1e9 + v[3]*1e6}
			if v[9] == 0 {
				zero++
				o.Note = "total=0us (S0 not matched)"
			} else {
				o.Set(D0, v[6]*1000)
				o.Set(D1, v[7]*1000)
				o.Set(D2, v[8]*1000)
				o.Set(D3, v[9]*1000)
			}
			f.Obs = append(f.Obs, o)
			return
		}
		if m := reVhostDev.FindSubmatch(line); m != nil {
			f.Device = string(m[1])
			return
		}
		if bytes.Contains(line, []byte("src=")) && (bytes.Contains(line, []byte("low")) || bytes.Contains(line, []byte("proto="))) {
			if m := reVhostFlow.FindSubmatch(line); m != nil && f.SrcIP == "" {
				f.SrcIP, f.DstIP = string(m[1]), string(m[2])
			}
			return
		}
		if bytes.Contains(line, []byte("Summary Statistics")) || bytes.HasPrefix(line, []byte("[final]")) {
			ended = true
		}
	})
	if zero > 0 {
		f.warnf(0, "%d line(s) with total=0us (S0 not matched) carry no total and are left out", zero)
	}
	f.Truncated = !ended
	return err
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
