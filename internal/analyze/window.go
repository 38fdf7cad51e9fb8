package analyze

import (
	"time"

	"github.com/pingpath/pingpath/internal/parse"
)

// Window joins pings continuously, for a controller that keeps the tracers
// running (pingpath watch): every stream's observations are added as they
// arrive, and a ping whose first observation is Settle old is joined — once,
// over exactly its own observations, by the same join, derivation, gates and
// classification as a whole run (Analyze). Memory is bounded: a joined ping
// leaves the window; only the last Keep stay, for Recent.
//
// Observations are grouped by ICMP sequence number. Within Settle (seconds)
// a sequence number names one ping of the pair's ping (one wraps after 65536
// pings); observations of other ICMP ids that share it are joined in the
// same batch and kept apart by the join, as in a whole run. An observation
// that arrives for a sequence number already joined less than Settle ago is
// late: it is dropped and counted (Late) rather than joined as a ping of its
// own. Not safe for concurrent use.
type Window struct {
	// Settle is how long after its first observation arrived a ping is
	// joined: longer than the tracers take to report a ping in full
	// (their timeouts for drops, their reorder windows and flushes).
	Settle time.Duration
	// Keep is how many joined pings Recent covers (the rolling report).
	Keep int
	// MaxOpen bounds the pings waiting to settle: beyond it the oldest are
	// joined early (a flood of foreign sequence numbers cannot grow the
	// window).
	MaxOpen int

	streams []*parse.File // each stream's metadata (no observations)
	keys    map[string]int
	// seen is, per stream, the vantage points its observations had: a
	// stream with nothing in a batch still says that its vantage point
	// ran (for drop localisation), as it does over a whole run.
	seen    []parse.Vantage
	open    map[uint16]*pingObs
	arrival []uint16 // open sequence numbers, oldest first
	joined  map[uint16]time.Time
	recent  []*pingObs // ring of the last Keep joined pings
	next    int        // where the ring writes next
	// Late counts observations dropped because their ping was joined.
	Late int
}

// pingObs is every observation of one sequence number, per stream.
type pingObs struct {
	seq   uint16
	first time.Time
	obs   map[int][]parse.Obs
	drops map[int][]parse.DropObs
	reply map[int][]parse.PingReply
}

// NewWindow returns an empty window.
func NewWindow(settle time.Duration, keep, maxOpen int) *Window {
	return &Window{Settle: settle, Keep: keep, MaxOpen: maxOpen, open: map[uint16]*pingObs{}, joined: map[uint16]time.Time{}}
}

// Stream registers a stream by a key and its metadata (a parsed header:
// kind, tool, role, boot id, addresses, path) and returns its number for
// Add. A stream started again (a restarted tracer) under the same key
// keeps its number, with the new metadata.
func (w *Window) Stream(key string, meta *parse.File) int {
	m := *meta
	m.Obs, m.Drops, m.Replies, m.Warnings, m.Counters = nil, nil, nil, nil, nil
	// A batch is not the whole of ping's run: its summary does not apply.
	m.Sent, m.Received = 0, 0
	if i, ok := w.keys[key]; ok {
		w.streams[i] = &m
		return i
	}
	if w.keys == nil {
		w.keys = map[string]int{}
	}
	w.keys[key] = len(w.streams)
	w.streams = append(w.streams, &m)
	w.seen = append(w.seen, -1)
	return len(w.streams) - 1
}

// Add adds the observations of chunk (a parsed piece of stream s) that
// arrived at now.
func (w *Window) Add(s int, chunk *parse.File, now time.Time) {
	for _, o := range chunk.Obs {
		w.seen[s] = o.Vantage
		if p := w.ping(o.Seq, now); p != nil {
			p.obs[s] = append(p.obs[s], o)
		}
	}
	for _, d := range chunk.Drops {
		if p := w.ping(d.Seq, now); p != nil {
			p.drops[s] = append(p.drops[s], d)
		}
	}
	for _, r := range chunk.Replies {
		if p := w.ping(r.Seq, now); p != nil {
			p.reply[s] = append(p.reply[s], r)
		}
	}
}

// ping returns the open ping of seq, opening it at now; nil when seq was
// joined less than Settle ago (a late observation).
func (w *Window) ping(seq uint16, now time.Time) *pingObs {
	if p := w.open[seq]; p != nil {
		return p
	}
	if at, ok := w.joined[seq]; ok && now.Sub(at) < w.Settle {
		w.Late++
		return nil
	}
	p := &pingObs{seq: seq, first: now, obs: map[int][]parse.Obs{}, drops: map[int][]parse.DropObs{}, reply: map[int][]parse.PingReply{}}
	w.open[seq] = p
	w.arrival = append(w.arrival, seq)
	return p
}

// Open is the number of pings waiting to settle.
func (w *Window) Open() int { return len(w.open) }

// Take joins the pings settled at now (and the oldest beyond MaxOpen) and
// returns their analysis; nil when none is settled.
func (w *Window) Take(now time.Time) *Result {
	var batch []*pingObs
	for len(w.arrival) > 0 {
		p := w.open[w.arrival[0]]
		if now.Sub(p.first) < w.Settle && len(w.open) <= w.MaxOpen {
			break
		}
		w.arrival = w.arrival[1:]
		delete(w.open, p.seq)
		w.joined[p.seq] = now
		batch = append(batch, p)
	}
	for seq, at := range w.joined {
		if now.Sub(at) >= w.Settle {
			delete(w.joined, seq)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	for _, p := range batch {
		if w.Keep <= 0 {
			break
		}
		if len(w.recent) < w.Keep {
			w.recent = append(w.recent, p)
		} else {
			w.recent[w.next] = p
		}
		w.next = (w.next + 1) % w.Keep
	}
	return w.join(batch)
}

// Recent joins the last Keep joined pings again, for a rolling report;
// nil when none was joined yet.
func (w *Window) Recent() *Result {
	if len(w.recent) == 0 {
		return nil
	}
	// Oldest first, as they were joined.
	ordered := append(append([]*pingObs(nil), w.recent[w.next%len(w.recent):]...), w.recent[:w.next%len(w.recent)]...)
	return w.join(ordered)
}

// join analyses pings as one run: one file per stream holding exactly
// these pings' observations (an empty one still tells that the stream's
// vantage point ran).
func (w *Window) join(pings []*pingObs) *Result {
	files := make([]*parse.File, len(w.streams))
	for s, meta := range w.streams {
		f := *meta
		for _, p := range pings {
			f.Obs = append(f.Obs, p.obs[s]...)
			f.Drops = append(f.Drops, p.drops[s]...)
			f.Replies = append(f.Replies, p.reply[s]...)
		}
		if len(f.Obs) == 0 && len(f.Drops) == 0 && f.Kind == parse.KindRecord && w.seen[s] >= 0 {
			// Nothing of this stream in these pings: its role (a host
			// tracer's is per ping) is the one it showed before.
			if path, role := w.seen[s].Record(); path != nil && path.Tool == f.Tool {
				f.Role = role
			}
		}
		files[s] = &f
	}
	res := &Result{}
	Analyze(res, files)
	return res
}
