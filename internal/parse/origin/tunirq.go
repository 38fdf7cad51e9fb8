package origin

import (
	"bytes"
	"io"
	"regexp"
	"sort"
	"strconv"
)

// tun_tx_to_kvm_irq.py prints one line per stage. Only Stage-1 lines carry
// the ICMP identity; Stage 2–5 lines carry the eventfd and the delay to the
// previous stage, in ms with 1 µs resolution. Lines come out of per-CPU
// perf rings, so a packet's Stage 2–5 block can be printed before its
// Stage-1 line. Chains are therefore built from the Stage 2–5 lines
// (consecutive stages of one eventfd) and each Stage-1 line is paired with
// the nearest unused chain in time (Time= is monotonic ns rendered as a 1970
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

// TunLog is a tun_tx_to_kvm_irq.py log.
type TunLog struct {
	Device       string
	SrcIP, DstIP string
	Packets      []TunPacket // one per Stage-1 line, in time order
	Ended        bool
	// Scan is what reading the log saw: line count, skipped lines, the
	// tool's own error lines.
	Scan Scan
}

// TunPacket is one packet into the guest: its Stage-1 line and the Stage
// 2–5 chain paired with it by time window.
type TunPacket struct {
	Line     int
	ID, Seq  uint16
	Type     int   // ICMP type: 8 echo request, 0 echo reply
	Time     int64 // monotonic ns of the Stage-1 line (ms resolution)
	Src      string
	Total    Dur    // t5 − t1, when the chain reached stage 5
	FirstHop Dur    // t2 − t1 (tun → vhost), when a chain was paired
	Note     string // how the chain was paired, or why it is partial
}

type tunChain struct {
	time int64
	evfd string
	last int      // last stage seen (2..5)
	d    [6]int64 // d[k] = delay printed on stage k (ns)
	hasD uint8    // bit k
	line int      // line of the stage-2 line
	used bool
}

// ReadTun reads a tun_tx_to_kvm_irq.py log.
func ReadTun(r io.Reader, warn Warn) *TunLog {
	log := &TunLog{}
	var (
		chains []tunChain
		s1     []TunPacket
		open   = map[string]int{} // eventfd → index of the chain still collecting stages
	)
	log.Scan = Lines(r, warn, func(n int, line []byte) {
		m := reTunLine.FindSubmatch(line)
		if m == nil {
			if mm := reTunIP.FindSubmatch(line); mm != nil {
				if string(mm[1]) == "Source" {
					log.SrcIP = string(mm[2])
				} else {
					log.DstIP = string(mm[2])
				}
			} else if mm := reTunDev.FindSubmatch(line); mm != nil {
				log.Device = string(mm[1])
			} else if bytes.HasPrefix(line, []byte("Total events collected:")) ||
				bytes.Contains(line, []byte("TRACING STOPPED")) {
				log.Ended = true
			}
			return
		}
		if log.Device == "" {
			log.Device = string(m[1])
		}
		stage := int(m[3][0] - '0')
		t, ok := parseTimestamp(string(m[4]))
		if !ok || stage < 1 || stage > 5 {
			warn(n, "bad stage line")
			return
		}
		if stage == 1 {
			im := reTunICMP.FindSubmatch(line)
			if im == nil {
				warn(n, "stage-1 line without ICMP identity")
				return
			}
			id, ok1 := atou16(im[4])
			seq, ok2 := atou16(im[5])
			typ, err := strconv.Atoi(string(im[3]))
			if !ok1 || !ok2 || err != nil {
				warn(n, "bad ICMP identity on stage-1 line")
				return
			}
			s1 = append(s1, TunPacket{Time: t, ID: id, Seq: seq, Type: typ, Line: n, Src: string(im[1])})
			return
		}
		dm := reTunDelay.FindSubmatch(line)
		if dm == nil {
			warn(n, "stage %d line without Delay", stage)
			return
		}
		d, ok := msToNS(string(dm[1]))
		if !ok {
			warn(n, "bad Delay %q", dm[1])
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
				warn(n, "stage 5 without a preceding stage 4")
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
			warn(n, "stage %d without an open chain for eventfd %s", stage, evfd)
			return
		}
		c := &chains[i]
		c.d[stage], c.hasD, c.last = d, c.hasD|1<<stage, stage
	})
	log.Packets = pairChains(s1, chains, warn)
	return log
}

// pairChains pairs Stage-1 lines with chains: the nearest unused chain
// whose time is within [t1 − 1 ms, t1 + d2 + 2 ms] (both times are
// ms-truncated).
func pairChains(s1 []TunPacket, chains []tunChain, warn Warn) []TunPacket {
	sort.SliceStable(s1, func(a, b int) bool { return s1[a].Time < s1[b].Time })
	byTime := make([]int, len(chains))
	for i := range byTime {
		byTime[i] = i
	}
	sort.SliceStable(byTime, func(a, b int) bool { return chains[byTime[a]].time < chains[byTime[b]].time })
	unpaired := 0
	for k := range s1 {
		s := &s1[k]
		lo := s.Time - int64(1e6)
		j := sort.Search(len(byTime), func(k int) bool { return chains[byTime[k]].time >= lo })
		best := -1
		var bestDist int64
		for ; j < len(byTime); j++ {
			c := &chains[byTime[j]]
			if c.time > s.Time+c.d[2]+2e6 {
				break
			}
			if c.used {
				continue
			}
			dist := c.time - s.Time
			if dist < 0 {
				dist = -dist
			}
			if best < 0 || dist < bestDist {
				best, bestDist = byTime[j], dist
			}
		}
		s.Note = "chain paired by time window"
		if best < 0 {
			unpaired++
			s.Note = "no stage 2–5 chain within the time window"
			continue
		}
		c := &chains[best]
		c.used = true
		// d2 + d4 + d5 = t5 − t1 only when the chain reached stage 5.
		if c.hasD&(1<<2|1<<4|1<<5) == 1<<2|1<<4|1<<5 {
			s.Total = Dur{c.d[2] + c.d[4] + c.d[5], true}
		} else {
			s.Note = "chain incomplete (no stage 5)"
		}
		s.FirstHop = Dur{c.d[2], true}
	}
	if unpaired > 0 {
		warn(0, "%d stage-1 line(s) had no stage 2–5 chain within the time window", unpaired)
	}
	orphans := 0
	for i := range chains {
		if !chains[i].used {
			orphans++
		}
	}
	if orphans > 0 {
		warn(0, "%d stage 2–5 chain(s) had no stage-1 line (no ICMP identity) and were ignored", orphans)
	}
	return s1
}
