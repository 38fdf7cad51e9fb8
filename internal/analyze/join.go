package analyze

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/pingpath/pingpath/internal/parse"
)

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
	// placed says, per file name, which vantage point the manifest or
	// commands.log puts it at.
	placed map[string]placement
	// unread are the files of the directory that were not parsed (refused
	// or skipped), already described.
	unread []FileInfo
	// conflicts are vantage points with observations from more than one
	// file: two runs in one directory.
	conflicts []conflict
}

// conflict is a vantage point several files claim.
type conflict struct {
	v     parse.Vantage
	files []string
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
	j.findConflicts()
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

// chooseIDs picks the ICMP ids of the run: the manifest's when known,
// else every id the sender VM saw, else every id the sender host saw (and
// so on), else every id the drop records name.
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
		if len(ids) == 0 {
			// Every ping was lost where no tracer saw it whole: only the
			// drop records name the id (origin logs' have none: 0).
			for _, d := range j.res.dropObs {
				if d.ID != 0 {
					ids[d.ID] = true
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

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
