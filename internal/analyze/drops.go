package analyze

import (
	"fmt"

	"github.com/pingpath/pingpath/internal/parse"
)

// attachDrops joins drop reports to their pings. A report adds what its
// vantage point did see (every stage up to last_seen) to the ping's
// checkpoints.
func (j *joiner) attachDrops() {
	res := j.res
	for k := range res.dropObs {
		d := &res.dropObs[k]
		if !j.ids[d.ID] {
			continue
		}
		i := j.findPing(d.ID, d.Seq)
		p := &res.Pings[i]
		p.DropReports = append(p.DropReports, k)
		p.Seen |= 1 << d.Vantage
		if cps, ok := vantageCheckpoints[d.Vantage]; ok {
			if last, ok := stageIndex(d.Vantage, d.LastSeen); ok {
				for s := 0; s <= last; s++ {
					p.Checkpoints |= 1 << cps[s]
				}
			}
		}
	}
}

// findPing returns the ping with this id and 16-bit sequence; among
// several epochs the latest, and a new ping when there is none.
func (j *joiner) findPing(id, seq uint16) int {
	best := -1
	first := j.refFirst[id]
	for e := first / 65536; ; e++ {
		i, ok := j.lookup(id, e*65536+int64(seq))
		if !ok {
			if e > first/65536+1 {
				break
			}
			continue
		}
		best = i
	}
	if best >= 0 {
		return best
	}
	u := j.newUnwrapper()
	i, _ := j.ping(id, u.key(id, seq))
	return i
}

// localizeDrops lists every lost ping with the last checkpoint that saw it
// and the first that did not, and every drop claim that another vantage
// point refutes (the origin host tool reports such false drops when its
// per-CPU event buffers are read out of order).
func localizeDrops(res *Result, present [parse.NumVantages]bool) {
	var presentCps uint32
	for _, v := range coreVantages {
		if present[v] {
			for _, cp := range vantageCheckpoints[v] {
				presentCps |= 1 << cp
			}
		}
	}
	final := finalCheckpoint(present)
	for i := range res.Pings {
		p := &res.Pings[i]
		if !p.Lost && len(p.DropReports) == 0 {
			continue
		}
		d := Drop{ID: p.ID, Seq: p.Seq}
		last := -1
		for cp := numCheckpoints - 1; cp >= 0; cp-- {
			if p.Checkpoints&(1<<cp) != 0 {
				last = cp
				break
			}
		}
		firstMissed := -1
		for cp := last + 1; cp < numCheckpoints; cp++ {
			if presentCps&(1<<cp) != 0 {
				firstMissed = cp
				break
			}
		}
		if last >= 0 {
			d.LastSeen = CheckpointNames[last]
		}
		if firstMissed >= 0 {
			d.FirstMissed = CheckpointNames[firstMissed]
			from := max(last, 0)
			switch {
			case firstMissed == 0:
				// The first checkpoint of the path did not see it either.
				d.Segment = "before " + CheckpointNames[0]
			case firstMissed-from == 1:
				d.Segment = gapSegments[from]
			default:
				d.Segment = gapSegments[from] + " … " + gapSegments[firstMissed-1]
			}
		}
		for _, k := range p.DropReports {
			o := &res.dropObs[k]
			claim := o.Vantage.String()
			if o.Location != "" {
				claim += ": " + o.Location
			}
			if o.LastSeen != "" || o.FirstMissed != "" {
				claim += fmt.Sprintf(" (last %s, missing %s)", o.LastSeen, o.FirstMissed)
			}
			d.ReportedBy = append(d.ReportedBy, claim)
			if o.Reason != "" && d.Reason == "" {
				d.Reason = o.Reason
				d.Location = o.Location
			}
		}
		switch {
		case p.Lost:
			d.Status = "lost"
		case final >= 0 && p.Checkpoints&(1<<final) != 0:
			d.Status = "false-drop"
			d.Note = "reported as dropped, but " + CheckpointNames[final] + " saw it later: the report is wrong (origin tool read its events out of order)"
			d.Segment, d.FirstMissed = "", ""
		default:
			d.Status = "incomplete"
			d.Note = "reported as dropped and not seen at the end of the path, but not confirmed lost (no ping output, or outside the sender VM tracer's span)"
		}
		res.Drops = append(res.Drops, d)
	}
}
