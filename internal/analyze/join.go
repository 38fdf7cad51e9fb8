package analyze

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

// Checkpoints along the path of one ping, in path order. A vantage point
// observes four of them; drop localisation reports the last one seen and
// the first one missed.
const (
	cpSVMReqStart = iota
	cpSVMReqXmit
	cpSHostReqIn
	cpSHostReqOut
	cpRHostReqIn
	cpRHostReqOut
	cpRVMReqRcv
	cpRVMICMP
	cpRVMRepOut
	cpRVMRepXmit
	cpRHostRepIn
	cpRHostRepOut
	cpSHostRepIn
	cpSHostRepOut
	cpSVMRepRcv
	cpSVMICMP
	numCheckpoints
)

// CheckpointNames name the checkpoints for reports.
var CheckpointNames = [numCheckpoints]string{
	"sender VM: request ip_local_out", "sender VM: request xmit",
	"sender host: request in (vnet)", "sender host: request out (phy)",
	"receiver host: request in (phy)", "receiver host: request out (vnet)",
	"receiver VM: request netif_receive_skb", "receiver VM: request icmp_rcv",
	"receiver VM: reply ip_local_out", "receiver VM: reply xmit",
	"receiver host: reply in (vnet)", "receiver host: reply out (phy)",
	"sender host: reply in (phy)", "sender host: reply out (vnet)",
	"sender VM: reply netif_receive_skb", "sender VM: reply icmp_rcv",
}

// gapSegments names what lies between checkpoint k and k+1.
var gapSegments = [numCheckpoints - 1]string{
	"A (sender VM stack TX)", "B_1 (sender guest kick → vhost → tun)", "B (sender host forwarding)",
	"C (physical network, request)", "D (receiver host forwarding)", "E (receiver tun → vhost → KVM IRQ → guest)",
	"F (receiver VM stack RX)", "G (receiver VM ICMP)", "H (receiver VM stack TX)",
	"I_1 (receiver guest kick → vhost → tun)", "I (receiver host forwarding)", "J (physical network, reply)",
	"K (sender host forwarding)", "L (sender tun → vhost → KVM IRQ → guest)", "M (sender VM stack RX)",
}

// vantageCheckpoints maps a core vantage's four stages to checkpoints.
var vantageCheckpoints = map[parse.Vantage][4]int{
	parse.VMTx:         {cpSVMReqStart, cpSVMReqXmit, cpSVMRepRcv, cpSVMICMP},
	parse.VMRx:         {cpRVMReqRcv, cpRVMICMP, cpRVMRepOut, cpRVMRepXmit},
	parse.HostSender:   {cpSHostReqIn, cpSHostReqOut, cpSHostRepIn, cpSHostRepOut},
	parse.HostReceiver: {cpRHostReqIn, cpRHostReqOut, cpRHostRepIn, cpRHostRepOut},
}

type obsRef struct {
	f *parse.File
	o *parse.Obs
}

type joiner struct {
	res      *Result
	files    []*parse.File
	byV      [parse.NumVantages][]obsRef
	present  [parse.NumVantages]bool
	ids      map[uint16]bool
	idRank   map[uint16]int
	index    map[uint16]*seqIndex
	refFirst map[uint16]int64
	dups     [parse.NumVantages]int
	pingFile *parse.File
	// hostFile remembers one file per host role (boot id, device).
	hostFile [parse.NumVantages]*parse.File
}

func newJoiner(res *Result, files []*parse.File) *joiner {
	return &joiner{res: res, files: files, index: map[uint16]*seqIndex{}, refFirst: map[uint16]int64{},
		idRank: map[uint16]int{}}
}

func (j *joiner) warnf(format string, args ...any) {
	j.res.Warnings = append(j.res.Warnings, fmt.Sprintf(format, args...))
}

func (j *joiner) notef(format string, args ...any) {
	j.res.Notes = append(j.res.Notes, fmt.Sprintf(format, args...))
}

func (j *joiner) run() {
	res := j.res
	j.classify()
	j.chooseIDs()
	// Reference stream first: its order defines the sequence epochs.
	order := []parse.Vantage{parse.VMTx, parse.HostSender, parse.HostReceiver, parse.VMRx,
		parse.VhostTXRequest, parse.VhostRXRequest, parse.VhostTXReply, parse.VhostRXReply}
	for _, v := range order {
		j.attach(v)
	}
	j.matchByTime()
	j.attachPing()
	j.attachDrops()
	for v, n := range j.dups {
		if n > 0 {
			j.warnf("%s: %d duplicate observation(s) of the same ping ignored (first kept)", parse.Vantage(v), n)
		}
	}
	j.derive()
	applyGates(res)
	j.classifyPings()
	summarize(res)
	localizeDrops(res, j.present)
	for v := parse.Vantage(0); v < parse.NumVantages; v++ {
		if j.present[v] {
			res.Vantages = append(res.Vantages, v.String())
		}
	}
	res.Empty = len(res.Pings) == 0
	if res.Empty {
		if len(j.files) == 0 {
			j.notef("no tracer output or ping output was recognised in %s", res.Dir)
		} else {
			j.notef("empty run: the tracers ran but observed no ping (0 events in %d files)", len(j.files))
		}
	}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	if res.Notes == nil {
		res.Notes = []string{}
	}
	if res.Drops == nil {
		res.Drops = []Drop{}
	}
	if res.Excluded == nil {
		res.Excluded = []Exclusion{}
	}
}

// classify decides each file's vantage(s), resolves the origin host tool's
// role when its interfaces do not tell, and prefers pingpath's own streams
// over origin logs for the same vantage.
func (j *joiner) classify() {
	res := j.res
	sessionSrc := ""
	var ours, origin bool
	for _, f := range j.files {
		if f.Kind == parse.KindRecord {
			ours = true
		} else if f.Kind != parse.KindPing {
			origin = true
		}
		if sessionSrc == "" && (f.Kind == parse.KindVMText || f.Kind == parse.KindHostText ||
			(f.Kind == parse.KindRecord && f.Tool == record.ToolVM)) {
			sessionSrc = f.SrcIP
		}
	}
	switch {
	case ours && origin:
		res.Source = "mixed"
	case ours:
		res.Source = "pingpath"
	case origin:
		res.Source = "origin"
	}
	j.resolveHostRoles()
	// kvm_vhost_tun_latency: request when its flow starts at the sender VM.
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
	// Which vantages have pingpath streams.
	var fromRecord [parse.NumVantages]bool
	for _, f := range j.files {
		if f.Kind == parse.KindRecord {
			for i := range f.Obs {
				fromRecord[f.Obs[i].Vantage] = true
			}
		}
	}
	var perV [parse.NumVantages]int
	for _, f := range j.files {
		for i := range f.Obs {
			perV[f.Obs[i].Vantage]++
		}
	}
	for v, n := range perV {
		j.byV[v] = make([]obsRef, 0, n)
	}
	for _, f := range j.files {
		info := FileInfo{Path: baseName(f.Path), Kind: f.Kind.String(), Tool: f.Tool, Role: f.Role,
			Identity: f.Identity, Obs: len(f.Obs), Drops: len(f.Drops), Truncated: f.Truncated,
			Hostname: f.Hostname, Kernel: f.Kernel, Version: f.Version, BootID: f.BootID}
		res.Warnings = append(res.Warnings, f.Warnings...)
		if f.Kind == parse.KindPing {
			info.Obs = len(f.Replies)
			if j.pingFile != nil {
				info.Ignored = "second ping output; the first one is used"
			} else {
				j.pingFile = f
				j.present[parse.PingOwn] = true
				info.Vantage = parse.PingOwn.String()
			}
			res.Files = append(res.Files, info)
			continue
		}
		vs := map[parse.Vantage]bool{}
		kept := f.Obs[:0]
		for i := range f.Obs {
			o := &f.Obs[i]
			if f.Kind != parse.KindRecord && fromRecord[o.Vantage] {
				continue
			}
			vs[o.Vantage] = true
			kept = append(kept, *o)
		}
		if len(kept) < len(f.Obs) {
			info.Ignored = "a pingpath record stream covers the same vantage point"
		}
		f.Obs = kept
		for i := range f.Obs {
			o := &f.Obs[i]
			j.byV[o.Vantage] = append(j.byV[o.Vantage], obsRef{f, o})
			j.present[o.Vantage] = true
		}
		for i := range f.Drops {
			d := f.Drops[i]
			vs[d.Vantage] = true
			j.present[d.Vantage] = true
			res.dropObs = append(res.dropObs, d)
		}
		if len(vs) == 0 {
			// An empty file still tells which vantage ran.
			if v, ok := fileVantage(f); ok {
				vs[v] = true
				j.present[v] = true
			}
		}
		var names []string
		for v := parse.Vantage(0); v < parse.NumVantages; v++ {
			if vs[v] {
				names = append(names, v.String())
				if v == parse.HostSender || v == parse.HostReceiver {
					if j.hostFile[v] == nil {
						j.hostFile[v] = f
					}
				}
			}
		}
		info.Vantage = strings.Join(names, ", ")
		j.noteUnmeasured(f)
		res.Files = append(res.Files, info)
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
}

// noteUnmeasured says why a vhost stream that saw packets gives no segment:
// its records lack an end stage (e.g. no vhost worker in the lab's user
// space backend; the header's probes say why).
func (j *joiner) noteUnmeasured(f *parse.File) {
	if f.Kind != parse.KindRecord || len(f.Obs) == 0 {
		return
	}
	for i := range f.Obs {
		if _, ok := vhostVal[f.Obs[i].Vantage]; !ok {
			return
		}
		if f.Obs[i].Has&(1<<parse.D3) != 0 {
			return
		}
	}
	path, _ := f.Obs[0].Vantage.Record()
	j.notef("%s: %d record(s), none with both end stages (%s and %s), so %s is not measured; the stream's header lists the unavailable probes and why",
		baseName(f.Path), len(f.Obs), path.First(), path.Last(), ValueNames[vhostVal[f.Obs[0].Vantage]])
}

// fileVantage guesses the vantage an empty file would have reported.
func fileVantage(f *parse.File) (parse.Vantage, bool) {
	switch f.Kind {
	case parse.KindVMText:
		if f.Role == "rx" {
			return parse.VMRx, true
		}
		return parse.VMTx, true
	case parse.KindHostText:
		if f.Role == "receiver" {
			return parse.HostReceiver, true
		}
		if f.Role == "sender" {
			return parse.HostSender, true
		}
	case parse.KindTunText:
		if f.Role == "reply" {
			return parse.VhostRXReply, true
		}
		return parse.VhostRXRequest, true
	case parse.KindVhostTX:
		if f.Role == "reply" {
			return parse.VhostTXReply, true
		}
		return parse.VhostTXRequest, true
	case parse.KindRecord:
		switch f.Tool + "/" + f.Role {
		case "vm/tx":
			return parse.VMTx, true
		case "vm/rx":
			return parse.VMRx, true
		case "host/sender":
			return parse.HostSender, true
		case "host/receiver":
			return parse.HostReceiver, true
		}
	}
	return 0, false
}

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
		if role == "receiver" {
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
		other := "sender"
		if known[0].Role == "sender" {
			other = "receiver"
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
			setRole(a, "sender")
			setRole(b, "receiver")
		} else {
			setRole(a, "receiver")
			setRole(b, "sender")
		}
		j.notef("host tool logs %s and %s: roles decided by comparing totals of common pings (the sender host's total contains the receiver's)", baseName(a.Path), baseName(b.Path))
	default:
		for _, f := range unknown {
			j.warnf("%s: cannot tell sender from receiver host (interfaces %q/%q); assumed sender", baseName(f.Path), f.RxIface, f.TxIface)
			setRole(f, "sender")
		}
	}
}

// chooseIDs picks the ICMP ids of the run: the manifest's when known,
// else every id the sender VM saw, else every id the sender host saw.
func (j *joiner) chooseIDs() {
	ids := map[uint16]bool{}
	if m := j.res.Manifest; m != nil && m.Ping.ICMPID > 0 {
		ids[uint16(m.Ping.ICMPID)] = true
	} else {
		for _, v := range []parse.Vantage{parse.VMTx, parse.HostSender, parse.HostReceiver, parse.VMRx} {
			for _, r := range j.byV[v] {
				if r.o.HasID {
					ids[r.o.ID] = true
				}
			}
			if len(ids) > 0 {
				break
			}
		}
		if len(ids) == 0 {
			for v := range j.byV {
				for _, r := range j.byV[v] {
					if r.o.HasID {
						ids[r.o.ID] = true
					}
				}
			}
		}
	}
	j.ids = ids
	other := 0
	for v := range j.byV {
		for _, r := range j.byV[v] {
			if r.o.HasID && !ids[r.o.ID] {
				other++
			}
		}
	}
	if other > 0 {
		j.notef("%d observation(s) with other ICMP ids (not this run's ping) were ignored", other)
	}
}

// seqUnwrapper turns 16-bit sequence numbers of one time-ordered stream
// into monotonically growing keys.
type seqUnwrapper struct {
	epoch   map[uint16]int64
	last    map[uint16]uint16
	refFrom map[uint16]int64
}

func (u *seqUnwrapper) key(id, seq uint16) int64 {
	e, ok := u.epoch[id]
	if !ok {
		if ref, ok := u.refFrom[id]; ok {
			// Start in the epoch that puts this sequence closest to the
			// reference stream's first ping.
			e = int64(math.Round(float64(ref-int64(seq)) / 65536))
			if e < 0 {
				e = 0
			}
		}
		u.epoch[id], u.last[id] = e, seq
		return e*65536 + int64(seq)
	}
	d := int(seq) - int(u.last[id])
	switch {
	case d < -32768:
		e++
		u.epoch[id] = e
	case d > 32768:
		// A straggler from before the last wrap.
		if e > 0 {
			return (e-1)*65536 + int64(seq)
		}
	}
	u.last[id] = seq
	return e*65536 + int64(seq)
}

func (j *joiner) newUnwrapper() *seqUnwrapper {
	return &seqUnwrapper{epoch: map[uint16]int64{}, last: map[uint16]uint16{}, refFrom: j.refFirst}
}

func (j *joiner) ping(id uint16, key int64) (int, bool) {
	ix := j.index[id]
	if ix == nil {
		ix = &seqIndex{}
		j.index[id] = ix
		j.idRank[id] = len(j.idRank)
	}
	if i, ok := ix.get(key); ok {
		return i, false
	}
	if j.res.Pings == nil {
		j.res.Pings = make([]Ping, 0, len(j.byV[parse.VMTx])+len(j.byV[parse.HostSender])/8+16)
	}
	j.res.Pings = append(j.res.Pings, Ping{ID: id, Seq: uint16(key), Key: key})
	i := len(j.res.Pings) - 1
	ix.put(key, i)
	if _, ok := j.refFirst[id]; !ok {
		j.refFirst[id] = key
	}
	return i, true
}

func (j *joiner) lookup(id uint16, key int64) (int, bool) {
	ix := j.index[id]
	if ix == nil {
		return 0, false
	}
	return ix.get(key)
}

// attach adds every observation of one vantage to its ping.
func (j *joiner) attach(v parse.Vantage) {
	refs := j.byV[v]
	if len(refs) == 0 {
		return
	}
	// Time order (records of several CPUs' ring buffers can be written
	// out of order); observations without a time keep their file order.
	sorted := true
	for k := 1; k < len(refs) && sorted; k++ {
		sorted = refs[k-1].o.Time <= refs[k].o.Time
	}
	if !sorted {
		slices.SortStableFunc(refs, func(a, b obsRef) int {
			if a.o.Time == 0 || b.o.Time == 0 {
				return 0
			}
			return cmp.Compare(a.o.Time, b.o.Time)
		})
	}
	u := j.newUnwrapper()
	for _, r := range refs {
		o := r.o
		if !o.HasID || !j.ids[o.ID] {
			continue
		}
		key := u.key(o.ID, o.Seq)
		i, _ := j.ping(o.ID, key)
		p := &j.res.Pings[i]
		j.fill(p, v, o)
	}
}

func (j *joiner) fill(p *Ping, v parse.Vantage, o *parse.Obs) {
	if p.Seen&(1<<v) != 0 {
		j.dups[v]++
		return
	}
	p.Seen |= 1 << v
	if o.TimeWall && o.Time != 0 {
		p.At[v] = o.Time
		if p.Time == 0 || v == parse.VMTx {
			p.Time = o.Time
		}
	}
	if vals, ok := coreVals[v]; ok {
		for k := 0; k < parse.NumDur; k++ {
			if d, ok := o.Get(k); ok {
				p.set(vals[k], d)
			}
		}
		cps := vantageCheckpoints[v]
		switch v {
		case parse.VMTx, parse.VMRx:
			for k, pr := range [4][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 3}} {
				if o.Has&(1<<k) != 0 {
					p.Checkpoints |= 1<<cps[pr[0]] | 1<<cps[pr[1]]
				}
			}
		default:
			seen := o.Seen
			if o.Has&(1<<parse.D3) != 0 {
				seen = 0xf
			}
			for k := 0; k < 4; k++ {
				if seen&(1<<k) != 0 {
					p.Checkpoints |= 1 << cps[k]
				}
			}
			if v == parse.HostSender {
				p.sStage, p.sHas = o.Stage, o.HasStage
			} else {
				p.rStage, p.rHas = o.Stage, o.HasStage
			}
		}
		return
	}
	if s, ok := vhostVal[v]; ok {
		if d, ok := o.Get(parse.D3); ok {
			p.set(s, d)
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
			cands = append(cands, cand{tod: ((o.StageWall[stage] % parse.DayNS) + parse.DayNS) % parse.DayNS, ping: i})
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

// attachPing joins ping's own output by sequence number. ping does not
// print the ICMP id, so this needs exactly one id in the run.
func (j *joiner) attachPing() {
	f := j.pingFile
	if f == nil || len(f.Replies) == 0 && j.pingSent() == 0 {
		return
	}
	if len(j.ids) > 1 {
		j.warnf("%s: ping output not joined: the run has %d ICMP ids and ping does not print its id", baseName(f.Path), len(j.ids))
		return
	}
	var id uint16
	for k := range j.ids {
		id = k
	}
	if len(j.ids) == 0 {
		if m := j.res.Manifest; m != nil && m.Ping.ICMPID > 0 {
			id = uint16(m.Ping.ICMPID)
		}
		j.ids = map[uint16]bool{id: true}
	}
	u := j.newUnwrapper()
	for _, r := range f.Replies {
		key := u.key(id, r.Seq)
		i, _ := j.ping(id, key)
		p := &j.res.Pings[i]
		p.PingListed = true
		p.Seen |= 1 << parse.PingOwn
		if r.Replied {
			p.Replied = true
			p.set(ValPingRTT, r.RTTNS)
		}
		if p.Time == 0 && r.Time != 0 {
			p.Time = r.Time
		}
	}
	j.listUnanswered(id)
}

// pingSent is how many echo requests ping sent: its summary line, else the
// manifest's count of them (0 when unknown).
func (j *joiner) pingSent() int {
	if j.pingFile.Sent > 0 {
		return j.pingFile.Sent
	}
	if m := j.res.Manifest; m != nil {
		return m.Ping.Sent
	}
	return 0
}

// listUnanswered lists as ping's every sequence number it sent without a
// line for it: ping prints "no answer yet" for a missing reply only when it
// sends the next request, so the last ones of a run have no line, and
// without this they would be "incomplete" instead of lost. ping numbers
// its requests from its first line's sequence (1 for iputils) on, one per
// request, wrapping at 65536.
func (j *joiner) listUnanswered(id uint16) {
	f := j.pingFile
	sent := j.pingSent()
	if sent == 0 {
		return
	}
	first := uint16(1)
	if len(f.Replies) > 0 {
		first = f.Replies[0].Seq
	}
	u := j.newUnwrapper()
	added := 0
	for k := 0; k < sent; k++ {
		i, _ := j.ping(id, u.key(id, first+uint16(k)))
		p := &j.res.Pings[i]
		if !p.PingListed {
			p.PingListed = true
			p.Seen |= 1 << parse.PingOwn
			added++
		}
	}
	if added > 0 {
		j.notef("%s: %d request(s) of the %d ping sent had no line in its output (the last ones get no \"no answer yet\"): counted as lost", baseName(f.Path), added, sent)
	}
}

// derive computes the values that combine vantage points.
func (j *joiner) derive() {
	res := j.res
	sf, rf := j.hostFile[parse.HostSender], j.hostFile[parse.HostReceiver]
	shared := sf != nil && rf != nil && sf.Kind == parse.KindRecord && rf.Kind == parse.KindRecord &&
		sf.BootID != "" && sf.BootID == rf.BootID
	res.SharedClk = shared
	if shared {
		j.notef("both host streams share boot id %s (one CLOCK_MONOTONIC): C and J are computed separately", sf.BootID)
	}
	var cjMismatch int
	for i := range res.Pings {
		p := &res.Pings[i]
		if es, ok := p.raw(ValExtS); ok {
			if tr, ok := p.raw(ValTotalR); ok {
				p.set(SegCJ, es-tr)
			}
		}
		if shared && p.sHas&0b0110 == 0b0110 && p.rHas&0b1001 == 0b1001 {
			c := int64(p.rStage[parse.StReqIn] - p.sStage[parse.StReqOut])
			jj := int64(p.sStage[parse.StRepIn] - p.rStage[parse.StRepOut])
			p.set(SegC, c)
			p.set(SegJ, jj)
			if cj, ok := p.raw(SegCJ); ok && abs64(cj-(c+jj)) > 1000 {
				cjMismatch++
			}
		}
		// Residuals: what the sides' virtualization left unmeasured.
		p.residual(ValResidS, ValInterS, ValTotalS, SegB1, SegL)
		p.residual(ValResidR, ValExtR, ValTotalRV, SegE, SegI1)
	}
	if cjMismatch > 0 {
		j.warnf("%d ping(s): C + J differs from Ext_s − Total_r by more than 1 µs (mis-joined host records?)", cjMismatch)
	}
	// Order: ids in order of first appearance, then by unwrapped sequence.
	sort.SliceStable(res.Pings, func(a, b int) bool {
		pa, pb := &res.Pings[a], &res.Pings[b]
		if pa.ID != pb.ID {
			return j.idRank[pa.ID] < j.idRank[pb.ID]
		}
		return pa.Key < pb.Key
	})
	for id := range j.ids {
		res.IDs = append(res.IDs, id)
	}
	sort.Slice(res.IDs, func(a, b int) bool { return j.idRank[res.IDs[a]] < j.idRank[res.IDs[b]] })
}

// raw returns a value regardless of gates.
func (p *Ping) raw(i int) (int64, bool) { return p.Val[i], p.Has&(1<<i) != 0 }

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// residual sets dst to outer − inner − the parts that were measured, when
// outer and inner are known.
func (p *Ping) residual(dst, outer, inner int, parts ...int) {
	o, ok := p.raw(outer)
	if !ok {
		return
	}
	in, ok := p.raw(inner)
	if !ok {
		return
	}
	r := o - in
	for _, v := range parts {
		if x, ok := p.raw(v); ok {
			r -= x
		}
	}
	p.set(dst, r)
}
