package parse

import (
	"sort"
	"time"

	"github.com/pingpath/pingpath/internal/parse/origin"

	"github.com/pingpath/pingpath/internal/record"
)

// layout is one stream's stage table (record.PathOf its tool) as the reader
// uses it: a stage's slot is its index on the path, and each span is a pair
// of slots. It also counts the stage names the table does not have, so that
// a stream from a newer tracer is reported rather than silently thinned.
type layout struct {
	path  *record.Path // nil for a tool this version does not know
	spans [][2]int     // slots of path.Spans[i].From, .To
	total [2]int
	// unknown counts records per unknown stage name, with the first line.
	unknown map[string]*unknownStage
}

type unknownStage struct{ first, last, records int }

func newLayout(tool string) *layout {
	l := &layout{path: record.PathOf(tool)}
	if l.path == nil {
		return l
	}
	for _, sp := range l.path.Spans {
		pair := [2]int{l.path.Index(sp.From), l.path.Index(sp.To)}
		l.spans = append(l.spans, pair)
		if sp.Name == record.DurTotal {
			l.total = pair
		}
	}
	return l
}

// slot returns the slot of a stage name in the input buffer; an unknown name
// is counted against line.
func (l *layout) slot(name []byte, line int) int {
	if l.path == nil {
		return -1 // the whole record is reported (unknown tool)
	}
	k := l.path.IndexBytes(name)
	if k < 0 {
		u := l.unknown[string(name)]
		if u == nil {
			if l.unknown == nil {
				l.unknown = map[string]*unknownStage{}
			}
			u = &unknownStage{first: line}
			l.unknown[string(name)] = u
		}
		// A record the fast path gives up on is read again by encoding/json:
		// count lines, not calls.
		if u.last != line {
			u.last = line
			u.records++
		}
	}
	return k
}

// report warns once per unknown stage name.
func (l *layout) report(f *File) {
	names := make([]string, 0, len(l.unknown))
	for n := range l.unknown {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u := l.unknown[n]
		f.warnf(u.first, "unknown %s stage %q ignored in %d record(s) (written by a newer tracer?)", l.path.Tool, n, u.records)
	}
}

func applyHeader(f *File, h *record.Header) {
	f.Tool, f.Role, f.Identity = h.Tool, h.Role, "exact"
	f.BootID, f.Hostname, f.Kernel, f.Version = h.BootID, h.Hostname, h.Kernel, h.Version
	f.StartMonoNS, f.StartWallNS = h.StartMonoNS, h.StartWallNS
	f.SrcIP, f.DstIP = h.SrcIP, h.DstIP
}

func applyTrailer(f *File, t *record.Trailer) {
	f.Counters = t.Counters
	f.Cost = t.Cost
	f.ExitReason = t.ExitReason
	f.EndWallNS = f.wall(t.EndMonoNS)
	if t.Error != "" {
		f.warnf(0, "tracer ended with error: %s", t.Error)
		f.Failures = append(f.Failures, origin.Failure{Text: "tracer ended with error: " + t.Error})
	}
	if n := t.Counters["ringbuf_lost"]; n > 0 {
		f.warnf(0, "tracer lost %d ring-buffer events", n)
	}
}

// addWarning keeps a tracer's warning with the file's: a tracer that
// detached itself (record.WarnMaxCPU) stopped observing at that time.
func addWarning(f *File, line int, w *record.Warning) {
	if w.Code != record.WarnMaxCPU {
		f.warnf(line, "tracer warning (%s): %s", w.Code, w.Message)
		return
	}
	if f.DetachedWallNS == 0 {
		f.DetachedWallNS = f.wall(w.AtNS)
	}
	f.warnf(line, "the %s tracer detached itself at %s: %s; pings after that lack its vantage point (a lost one among them is located without it)",
		f.Tool, time.Unix(0, f.DetachedWallNS).UTC().Format("15:04:05.000"), w.Message)
}

func addDrop(f *File, d *record.Drop) {
	v, ok := recordVantage(f, d.Role)
	if !ok {
		f.warnf(0, "drop id %d seq %d: unknown role %q", d.ID, d.Seq, d.Role)
		return
	}
	f.Drops = append(f.Drops, DropObs{Vantage: v, ID: d.ID, Seq: d.Seq, LastSeen: d.LastSeen,
		FirstMissed: d.FirstMissed, Location: d.Location, Reason: d.Reason, Device: d.Device,
		Time: f.wall(d.AtNS)})
}

// wall maps a monotonic timestamp of this stream to Unix ns.
func (f *File) wall(mono uint64) int64 {
	if mono == 0 {
		return 0
	}
	return f.StartWallNS + int64(mono-f.StartMonoNS)
}

// recordVantage maps the tool and the per-record (or header) role to a vantage.
func recordVantage(f *File, role string) (Vantage, bool) {
	if role == "" || role == "auto" {
		role = f.Role
	}
	if f.Tool == record.ToolVM {
		// Early vm streams named the roles like the host tool.
		switch role {
		case record.RoleSender:
			role = record.RoleTX
		case record.RoleReceiver:
			role = record.RoleRX
		}
	}
	for v, r := range vantageRecords {
		if r.path.Tool == f.Tool && r.role == role {
			return Vantage(v), true
		}
	}
	return 0, false
}

// recordObs turns one ping record's stages into an observation.
func recordObs(f *File, l *layout, id, seq uint16, role string, st *stages) (Obs, bool) {
	v, ok := recordVantage(f, role)
	if !ok {
		f.warnf(0, "ping id %d seq %d: unknown tool/role %q/%q", id, seq, f.Tool, role)
		return Obs{}, false
	}
	o := Obs{Vantage: v, ID: id, Seq: seq, HasID: true, TimeWall: true}
	first := func() uint64 {
		for k := 0; k < 8; k++ {
			if t, ok := st.get(k); ok {
				return t
			}
		}
		return 0
	}
	switch v {
	case HostSender, HostReceiver:
		for k := 0; k < NumStages; k++ {
			if t, ok := st.get(k); ok {
				o.SetStage(k, t)
				o.Seen |= 1 << k
			}
		}
		fallthrough
	case VMTx, VMRx:
		// D0..D3 are the tool's first four spans (path1, inter_path, path2,
		// total; req_internal, external, rep_internal, total).
		for k, pr := range l.spans[:NumDur] {
			if d, ok := st.diff(pr[0], pr[1]); ok {
				o.Set(k, d)
			}
		}
	case VhostRXRequest, VhostRXReply, VhostTXRequest, VhostTXReply:
		if d, ok := st.diff(l.total[0], l.total[1]); ok {
			o.Set(D3, d)
		}
		if v == VhostRXRequest || v == VhostRXReply {
			// tun → vhost (s1_s2), as the origin's t2 − t1.
			if d, ok := st.diff(l.spans[1][0], l.spans[1][1]); ok {
				o.Set(D0, d)
			}
		}
	}
	o.Time = f.wall(first())
	if o.Time == 0 {
		o.TimeWall = false
	}
	return o, true
}
