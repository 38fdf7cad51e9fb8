package analyze

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/parse"
)

// arrival is one observation reaching the controller.
type arrival struct {
	at     time.Duration
	stream int
	chunk  *parse.File
}

// A window fed a run's observations one by one, in a shuffled arrival
// order as the streams would deliver them, joins every ping exactly as the
// analysis of the whole run does: the same values, gates, completeness,
// losses and drop localisation, across a sequence wrap; it stays small,
// drops stragglers of joined pings, and Recent covers the last Keep.
func TestWindowJoinsLikeTheWholeRun(t *testing.T) {
	dir := t.TempDir()
	s := synthRun{pings: 200, firstSeq: 65450, id: 4242, sharedClk: true, lost: map[int]bool{5: true, 77: true}, swapHost: true}
	s.write(t, dir)
	whole, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}

	const every = 100 * time.Millisecond // one ping per 100 ms
	w := NewWindow(time.Second, 50, 1000)
	ents, _ := os.ReadDir(dir)
	rnd := rand.New(rand.NewSource(1))
	var feed []arrival
	for _, e := range ents {
		f, err := parse.ParseFile(context.Background(), filepath.Join(dir, e.Name()), parse.DefaultMaxFileBytes)
		if err != nil {
			t.Fatal(err)
		}
		st := w.Stream(e.Name(), f)
		if again := w.Stream(e.Name(), f); again != st {
			t.Fatalf("stream %s registered again: %d, first %d", e.Name(), again, st)
		}
		// A ping's observations arrive within 300 ms of the ping, each
		// stream in its own order.
		when := func(seq uint16) time.Duration {
			k := int(seq - s.firstSeq)
			return time.Duration(k)*every + time.Duration(rnd.Intn(300))*time.Millisecond
		}
		for _, o := range f.Obs {
			feed = append(feed, arrival{when(o.Seq), st, &parse.File{Obs: []parse.Obs{o}}})
		}
		for _, d := range f.Drops {
			feed = append(feed, arrival{when(d.Seq), st, &parse.File{Drops: []parse.DropObs{d}}})
		}
		for _, r := range f.Replies {
			feed = append(feed, arrival{when(r.Seq), st, &parse.File{Replies: []parse.PingReply{r}}})
		}
	}
	sort.SliceStable(feed, func(i, j int) bool { return feed[i].at < feed[j].at })

	t0 := time.Unix(1_764_200_000, 0)
	got := map[uint16]Ping{}
	var drops []Drop
	take := func(now time.Time) {
		res := w.Take(now)
		if res == nil {
			return
		}
		for _, p := range res.Pings {
			if _, dup := got[p.Seq]; dup {
				t.Errorf("seq %d joined twice", p.Seq)
			}
			got[p.Seq] = p
		}
		drops = append(drops, res.Drops...)
	}
	maxOpen := 0
	next := time.Duration(0)
	for _, a := range feed {
		for next <= a.at {
			take(t0.Add(next))
			next += every
		}
		w.Add(a.stream, a.chunk, t0.Add(a.at))
		maxOpen = max(maxOpen, w.Open())
	}
	// A straggler of a joined ping is late, not a ping of its own.
	end := t0.Add(next + time.Second)
	take(end)
	last := feed[len(feed)-1]
	w.Add(last.stream, last.chunk, end)
	if w.Late != 1 || w.Open() != 0 {
		t.Errorf("straggler: late %d, open %d; want 1 late and nothing open", w.Late, w.Open())
	}
	take(t0.Add(next + time.Hour))

	if maxOpen > 20 {
		t.Errorf("%d pings open at once at 10 pings/s with a 1 s settle time", maxOpen)
	}
	if len(got) != len(whole.Pings) {
		t.Fatalf("window joined %d pings, the whole run has %d", len(got), len(whole.Pings))
	}
	for _, want := range whole.Pings {
		p, ok := got[want.Seq]
		switch {
		case !ok:
			t.Errorf("seq %d not joined", want.Seq)
		case p.Val != want.Val || p.Has != want.Has || p.Excl != want.Excl || p.Complete != want.Complete || p.Lost != want.Lost || p.Seen != want.Seen:
			t.Errorf("seq %d: window has=%b excl=%b complete=%v lost=%v seen=%b, whole run has=%b excl=%b complete=%v lost=%v seen=%b",
				want.Seq, p.Has, p.Excl, p.Complete, p.Lost, p.Seen, want.Has, want.Excl, want.Complete, want.Lost, want.Seen)
		}
	}
	if len(drops) != len(whole.Drops) {
		t.Fatalf("window localised %d drops, the whole run %d", len(drops), len(whole.Drops))
	}
	sort.Slice(drops, func(i, j int) bool { return drops[i].Seq < drops[j].Seq })
	wd := append([]Drop(nil), whole.Drops...)
	sort.Slice(wd, func(i, j int) bool { return wd[i].Seq < wd[j].Seq })
	for i := range wd {
		if drops[i].Seq != wd[i].Seq || drops[i].Segment != wd[i].Segment || drops[i].Reason != wd[i].Reason || drops[i].Status != wd[i].Status {
			t.Errorf("drop %d: window %+v, whole run %+v", i, drops[i], wd[i])
		}
	}

	recent := w.Recent()
	if recent == nil || len(recent.Pings) != 50 || recent.Counts.Sent != 50 {
		t.Fatalf("Recent: %v", recent)
	}
	for _, p := range recent.Pings {
		if k := int(p.Seq - s.firstSeq); k < 150 {
			t.Errorf("Recent holds ping %d (seq %d), not one of the last 50", k, p.Seq)
		}
	}
}

// A ping ping sent and no vantage point saw (the sender VM tracer ran but
// missed it) is placed before the first checkpoint, not a crash.
func TestLostPingNoVantageSaw(t *testing.T) {
	dir := t.TempDir()
	s := synthRun{pings: 3, firstSeq: 1, id: 9}
	s.write(t, dir)
	// ping.log names a fourth request that no tracer saw.
	f, err := os.OpenFile(filepath.Join(dir, "ping.log"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.\n[1764200009.000000] no answer yet for icmp_seq=4\n")
	f.Close()
	res, err := Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, d := range res.Drops {
		if d.Seq == 4 {
			found = true
			if d.Status != "lost" || d.Segment != "before "+CheckpointNames[0] {
				t.Errorf("drop of seq 4: %+v", d)
			}
		}
	}
	if !found {
		t.Errorf("seq 4 not reported lost: %+v", res.Drops)
	}
}
