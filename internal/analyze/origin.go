package analyze

import (
	"sort"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/parse/origin"
)

// What only the origin tools' logs need: host logs whose role the watched
// devices do not tell, and kvm_vhost_tun_latency lines, which carry no ICMP
// identity and are joined by time window. The logs themselves are read by
// internal/parse/origin.

// resolveHostRoles settles origin host logs whose interfaces did not tell
// the role: the sender host's total contains the receiver host's, so for
// common pings the file with the larger totals is the sender.
func (j *joiner) resolveHostRoles() {
	var unknown, known []*parse.File
	for _, f := range j.files {
		if f.Kind != parse.KindHostText {
			continue
		}
		if f.Role == "" {
			unknown = append(unknown, f)
		} else {
			known = append(known, f)
		}
	}
	setRole := func(f *parse.File, role string) {
		f.Role = role
		v := parse.HostSender
		if role == origin.RoleReceiver {
			v = parse.HostReceiver
		}
		for i := range f.Obs {
			f.Obs[i].Vantage = v
		}
		for i := range f.Drops {
			f.Drops[i].Vantage = v
		}
	}
	switch {
	case len(unknown) == 1 && len(known) == 1:
		other := origin.RoleSender
		if known[0].Role == origin.RoleSender {
			other = origin.RoleReceiver
		}
		setRole(unknown[0], other)
	case len(unknown) == 2:
		a, b := unknown[0], unknown[1]
		tot := func(f *parse.File) map[uint32]int64 {
			m := map[uint32]int64{}
			for _, o := range f.Obs {
				if v, ok := o.Get(parse.D3); ok {
					m[uint32(o.ID)<<16|uint32(o.Seq)] = v
				}
			}
			return m
		}
		ta, tb := tot(a), tot(b)
		votes := 0
		for k, v := range ta {
			if w, ok := tb[k]; ok {
				if v > w {
					votes++
				} else if v < w {
					votes--
				}
			}
		}
		if votes >= 0 {
			setRole(a, origin.RoleSender)
			setRole(b, origin.RoleReceiver)
		} else {
			setRole(a, origin.RoleReceiver)
			setRole(b, origin.RoleSender)
		}
		j.notef("host tool logs %s and %s: roles decided by comparing totals of common pings (the sender host's total contains the receiver's)", baseName(a.Path), baseName(b.Path))
	default:
		for _, f := range unknown {
			j.warnf("%s: cannot tell sender from receiver host (interfaces %q/%q); assumed sender", baseName(f.Path), f.RxIface, f.TxIface)
			setRole(f, origin.RoleSender)
		}
	}
}

// vhostWindow is the time window (ns) for pairing kvm_vhost lines with the
// host tool's observation of the same packet.
const vhostWindow = int64(50e6)

// matchByTime pairs identity-less observations (kvm_vhost_tun_latency) with
// pings: the request leaving the sender VM is the sender host's ReqRX, the
// reply leaving the receiver VM is the receiver host's RepRX; both tools
// print the host's wall clock (the kvm tool only the time of day).
func (j *joiner) matchByTime() {
	for _, v := range []parse.Vantage{parse.VhostTXRequest, parse.VhostTXReply} {
		var lone []obsRef
		for _, r := range j.byV[v] {
			if !r.o.HasID {
				lone = append(lone, r)
			}
		}
		if len(lone) == 0 {
			continue
		}
		host, stage := parse.HostSender, parse.StReqIn
		if v == parse.VhostTXReply {
			host, stage = parse.HostReceiver, parse.StRepIn
		}
		type cand struct {
			tod  int64
			ping int
		}
		var cands []cand
		// Host observations with a wall time per stage.
		u := j.newUnwrapper()
		for _, r := range j.byV[host] {
			o := r.o
			if !o.HasID || !j.ids[o.ID] || o.Seen&(1<<stage) == 0 || o.StageWall[stage] == 0 {
				continue
			}
			key := u.key(o.ID, o.Seq)
			i, ok := j.lookup(o.ID, key)
			if !ok {
				continue
			}
			cands = append(cands, cand{tod: ((o.StageWall[stage] % origin.DayNS) + origin.DayNS) % origin.DayNS, ping: i})
		}
		if len(cands) == 0 {
			j.warnf("%d %s line(s) could not be paired: no host tool observation with wall times on that host", len(lone), v)
			continue
		}
		sort.Slice(cands, func(a, b int) bool { return cands[a].tod < cands[b].tod })
		used := make([]bool, len(cands))
		paired := 0
		for _, r := range lone {
			t := r.o.Time
			k := sort.Search(len(cands), func(i int) bool { return cands[i].tod >= t-vhostWindow })
			best := -1
			var bestD int64
			for ; k < len(cands) && cands[k].tod <= t+vhostWindow; k++ {
				if used[k] {
					continue
				}
				d := cands[k].tod - t
				if d < 0 {
					d = -d
				}
				if best < 0 || d < bestD {
					best, bestD = k, d
				}
			}
			if best < 0 {
				continue
			}
			used[best] = true
			paired++
			p := &j.res.Pings[cands[best].ping]
			j.fill(p, v, r.o)
		}
		if paired < len(lone) {
			j.notef("%s: %d of %d line(s) had no host observation within ±%d ms and were left out", v, len(lone)-paired, len(lone), vhostWindow/1e6)
		}
	}
}

// resolveKVMTunDirection: a kvm_vhost_tun_latency log is the request's
// (B_1) when its flow starts at the sender VM (sessionSrc, the session's
// source), the reply's (I_1) otherwise.
func (j *joiner) resolveKVMTunDirection(sessionSrc string) {
	for _, f := range j.files {
		if f.Kind != parse.KindVhostTX {
			continue
		}
		v := parse.VhostTXRequest
		switch {
		case sessionSrc != "" && f.SrcIP != "" && f.SrcIP != sessionSrc:
			v = parse.VhostTXReply
		case sessionSrc == "" || f.SrcIP == "":
			j.warnf("%s: cannot tell request from reply (no session or flow IPs); assumed request (B_1)", baseName(f.Path))
		}
		f.Role = map[parse.Vantage]string{parse.VhostTXRequest: "request", parse.VhostTXReply: "reply"}[v]
		for i := range f.Obs {
			f.Obs[i].Vantage = v
		}
	}
}

// notePairing says how an origin log without ICMP identity on every line
// was joined.
func (j *joiner) notePairing(f *parse.File) {
	switch f.Identity {
	case "stage1+time-window":
		if len(f.Obs) > 0 {
			j.notef("%s (tun_tx_to_kvm_irq): only stage-1 lines carry ICMP id/seq; each stage 2–5 chain was paired with a stage-1 line by time window (monotonic ms, nearest unused chain within −1 ms … +d2+2 ms), not by identity. E/L = t5 − t1 = d2 + d4 + d5.", baseName(f.Path))
		}
	case "time-window":
		if len(f.Obs) > 0 {
			j.notef("%s (kvm_vhost_tun_latency): lines carry no ICMP identity; each line was paired with the host tool's observation of the same packet by wall time of day (nearest within ±%d ms).", baseName(f.Path), vhostWindow/1e6)
		}
	}
}
