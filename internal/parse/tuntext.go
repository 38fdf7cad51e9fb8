package parse

import (
	"bytes"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
)

// tun_tx_to_kvm_irq.py prints one line per stage. Only Stage-1 lines carry
// the ICMP identity; Stage 2–5 lines carry the eventfd and the delay to the
// previous stage, in ms with 1 µs resolution. Lines come out of per-CPU
// perf rings, so a packet's Stage 2–5 block can be printed before its
// Stage-1 line. We therefore build chains from the Stage 2–5 lines
// (consecutive stages of one eventfd) and pair each Stage-1 line with the
// nearest unused chain in time (Time= is monotonic ns rendered as a 1970
// date, ms resolution). E/L = t5 − t1 = d2 + d4 + d5, because the tool's
// stage-4 delay is measured from stage 2, not stage 3 (adding d3 as the
// tool's own Total line does counts t3−t2 twice).
var (
	reTunLine  = regexp.MustCompile(`^TUN TX INTERRUPT \[([^:\]]+):q(\d+)\] Stage (\d) \[\w+\]: Time=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)`)
	reTunICMP  = regexp.MustCompile(`ICMP (\S+) -> (\S+) type=(\d+) code=\d+ id=(\d+) seq=(\d+)`)
	reTunDelay = regexp.MustCompile(`Delay=(-?[0-9.]+)ms`)
	reTunEvfd  = regexp.MustCompile(`EventFD\(\w+\)=(0x[0-9a-f]+)`)
	reTunIP    = regexp.MustCompile(`^\s*(Source|Destination) IP: (\S+)`)
	reTunDev   = regexp.MustCompile(`^Device filter: (\S+)`)
)

type tunChain struct {
	time int64
	evfd string
	last int      // last stage seen (2..5)
	d    [6]int64 // d[k] = delay printed on stage k (ns)
	hasD uint8    // bit k
	line int      // line of the stage-2 line
	used bool
}

type tunStage1 struct {
	time    int64
	id, seq uint16
	typ     int
	line    int
	src     string
}

// msToNS converts a printed millisecond value ("0.030") to ns.
func msToNS(s string) (int64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e9 {
		return 0, false
	}
	return int64(math.Round(v * 1e6)), true
}

func parseTunText(f *File, r io.Reader) error {
	f.Tool, f.Identity = "tun_tx_to_kvm_irq", "stage1+time-window"
	var (
		chains []tunChain
		s1     []tunStage1
		open   = map[string]int{} // eventfd → index of the chain still collecting stages
		ended  bool
	)
	err := lines(f, r, func(n int, line []byte) {
		m := reTunLine.FindSubmatch(line)
		if m == nil {
			if mm := reTunIP.FindSubmatch(line); mm != nil {
				if string(mm[1]) == "Source" {
					f.SrcIP = string(mm[2])
				} else {
					f.DstIP = string(mm[2])
				}
			} else if mm := reTunDev.FindSubmatch(line); mm != nil {
				f.Device = string(mm[1])
			} else if bytes.HasPrefix(line, []byte("Total events collected:")) ||
				bytes.Contains(line, []byte("TRACING STOPPED")) {
				ended = true
			}
			return
		}
		if f.Device == "" {
			f.Device = string(m[1])
		}
		stage := int(m[3][0] - '0')
		t, ok := parseTimestamp(string(m[4]))
		if !ok || stage < 1 || stage > 5 {
			f.warnf(n, "bad stage line")
			return
		}
		if stage == 1 {
			im := reTunICMP.FindSubmatch(line)
			if im == nil {
				f.warnf(n, "stage-1 line without ICMP identity")
				return
			}
			id, ok1 := atou16(im[4])
			seq, ok2 := atou16(im[5])
			typ, err := strconv.Atoi(string(im[3]))
			if !ok1 || !ok2 || err != nil {
				f.warnf(n, "bad ICMP identity on stage-1 line")
				return
			}
			s1 = append(s1, tunStage1{time: t, id: id, seq: seq, typ: typ, line: n, src: string(im[1])})
			return
		}
		dm := reTunDelay.FindSubmatch(line)
		if dm == nil {
			f.warnf(n, "stage %d line without Delay", stage)
			return
		}
		d, ok := msToNS(string(dm[1]))
		if !ok {
			f.warnf(n, "bad Delay %q", dm[1])
			return
		}
		evfd := ""
		if em := reTunEvfd.FindSubmatch(line); em != nil {
			evfd = string(em[1])
		}
		key := evfd
		if stage == 5 {
			// Stage 5 carries no eventfd: it belongs to the chain that
			// last reached stage 4.
			best := -1
			for _, i := range open {
				if chains[i].last == 4 && (best < 0 || chains[i].line > chains[best].line) {
					best = i
				}
			}
			if best < 0 {
				f.warnf(n, "stage 5 without a preceding stage 4")
				return
			}
			c := &chains[best]
			c.d[5], c.hasD, c.last = d, c.hasD|1<<5, 5
			delete(open, c.evfd)
			return
		}
		if stage == 2 {
			chains = append(chains, tunChain{time: t, evfd: evfd, last: 2, line: n})
			c := &chains[len(chains)-1]
			c.d[2], c.hasD = d, 1<<2
			open[key] = len(chains) - 1
			return
		}
		i, ok := open[key]
		if !ok || chains[i].last >= stage {
			f.warnf(n, "stage %d without an open chain for eventfd %s", stage, evfd)
			return
		}
		c := &chains[i]
		c.d[stage], c.hasD, c.last = d, c.hasD|1<<stage, stage
	})
	f.Truncated = !ended
	// Pair Stage-1 lines with chains: nearest unused chain whose time is
	// within [t1 − 1 ms, t1 + d2 + 2 ms] (both times are ms-truncated).
	sort.SliceStable(s1, func(a, b int) bool { return s1[a].time < s1[b].time })
	byTime := make([]int, len(chains))
	for i := range byTime {
		byTime[i] = i
	}
	sort.SliceStable(byTime, func(a, b int) bool { return chains[byTime[a]].time < chains[byTime[b]].time })
	reqs, reps := 0, 0
	unpaired := 0
	for _, s := range s1 {
		lo := s.time - int64(1e6)
		j := sort.Search(len(byTime), func(k int) bool { return chains[byTime[k]].time >= lo })
		best := -1
		var bestDist int64
		for ; j < len(byTime); j++ {
			c := &chains[byTime[j]]
			if c.time > s.time+c.d[2]+2e6 {
				break
			}
			if c.used {
				continue
			}
			dist := c.time - s.time
			if dist < 0 {
				dist = -dist
			}
			if best < 0 || dist < bestDist {
				best, bestDist = byTime[j], dist
			}
		}
		o := Obs{ID: s.id, Seq: s.seq, HasID: true, Time: s.time, Line: s.line, Note: "chain paired by time window"}
		if s.typ == 8 {
			o.Vantage = VhostRXRequest
			reqs++
		} else {
			o.Vantage = VhostRXReply
			reps++
		}
		if f.SrcIP == "" {
			f.SrcIP = s.src
		}
		if best >= 0 {
			c := &chains[best]
			c.used = true
			// d2 + d4 + d5 = t5 − t1 only when the chain reached stage 5.
			if c.hasD&(1<<2|1<<4|1<<5) == 1<<2|1<<4|1<<5 {
				o.Set(D3, c.d[2]+c.d[4]+c.d[5])
			} else {
				o.Note = "chain incomplete (no stage 5)"
			}
			o.Set(D0, c.d[2]) // t2 − t1
		} else {
			unpaired++
			o.Note = "no stage 2–5 chain within the time window"
		}
		f.Obs = append(f.Obs, o)
	}
	if unpaired > 0 {
		f.warnf(0, "%d stage-1 line(s) had no stage 2–5 chain within the time window", unpaired)
	}
	orphans := 0
	for i := range chains {
		if !chains[i].used {
			orphans++
		}
	}
	if orphans > 0 {
		f.warnf(0, "%d stage 2–5 chain(s) had no stage-1 line (no ICMP identity) and were ignored", orphans)
	}
	switch {
	case reqs > 0 && reps == 0:
		f.Role = "request"
	case reps > 0 && reqs == 0:
		f.Role = "reply"
	}
	return err
}
