package orchestrate

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

// PingFile is ping's output inside the run directory.
const PingFile = "ping.log"

// pingArgs is the measured ping: -D timestamps every line, -O reports
// missing replies as they happen, -W 1 bounds the wait for the last one;
// -s sets the payload when size is not 0 (ping's default is 56 bytes, an
// 84-byte IPv4 packet).
func pingArgs(dst string, count int, interval time.Duration, size int) []string {
	args := []string{"ping", "-D", "-n", "-O", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), "-W", "1"}
	if size != 0 {
		args = append(args, "-s", strconv.Itoa(size))
	}
	return append(args, dst)
}

// MaxPingSize is the largest ICMP payload of an IPv4 echo request (65535
// minus the IP and ICMP headers).
const MaxPingSize = 65507

// pingTracker turns ping's lines into PingStats.
type pingTracker struct {
	stats   PingStats
	summary bool
	// ident is the ICMP id ping printed (0 unless its replies name it);
	// replied is the set of sequence numbers that got a reply, to find
	// ping's id among the sender VM tracer's records otherwise.
	ident   int
	replied map[uint16]bool
}

// line updates the stats; it reports whether they changed.
func (p *pingTracker) line(l string) bool {
	pl := parse.ReadPingLine([]byte(l))
	s := &p.stats
	switch pl.Kind {
	case parse.PingReplied:
		rtt := time.Duration(pl.Reply.RTTNS)
		s.Sent = max(s.Sent, int(pl.Reply.Seq))
		s.Answered++
		s.Last, s.Sum = rtt, s.Sum+rtt
		if s.Min == 0 || rtt < s.Min {
			s.Min = rtt
		}
		s.Max = max(s.Max, rtt)
		if p.replied == nil {
			p.replied = map[uint16]bool{}
		}
		p.replied[pl.Reply.Seq] = true
		if pl.Ident > 0 {
			p.ident = pl.Ident
		}
	case parse.PingNoAnswer:
		s.Sent = max(s.Sent, int(pl.Reply.Seq))
	case parse.PingSummary:
		s.Sent, s.Answered = pl.Sent, pl.Received
		p.summary = true
	default:
		return false
	}
	return true
}

// pingRun is ping on the sender VM, opened ahead of time behind a gate.
type pingRun struct {
	rt       *running
	count    int
	interval time.Duration
	// slack is how much longer than count × interval ping may take.
	slack   time.Duration
	mu      sync.Mutex
	tracker pingTracker
}

// openPing opens ping's session on the sender VM now (the SSH and login
// shell cost is paid while the tracers start); ping itself runs on wait.
func openPing(ctx context.Context, out *output, n *node, dst string, count, size int, interval, slack time.Duration, prog Progress) (*pingRun, error) {
	p := &pingRun{count: count, interval: interval, slack: slack, tracker: pingTracker{stats: PingStats{Count: count}}}
	spec := &tracerSpec{
		node: n, tool: "ping", args: pingArgs(dst, count, interval, size), file: PingFile, origin: true,
		ready: func(string) bool { return true },
		onLine: func(l string) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.tracker.line(l) {
				prog.Ping(p.tracker.stats)
			}
		},
	}
	rt, err := startTracer(ctx, out, spec, true)
	if err != nil {
		return nil, err
	}
	p.rt = rt
	return p, nil
}

// run releases ping and waits for it, streaming its output to PingFile and
// progress to prog. Cancelling ctx interrupts ping (SIGINT, so it still
// prints its summary).
func (p *pingRun) run(ctx context.Context) (PingStats, error) {
	rt, n := p.rt, p.rt.spec.node
	if err := rt.release(); err != nil {
		return p.stats(), fmt.Errorf("starting ping on %s: %w", n.role(), err)
	}
	limit := time.Duration(p.count)*p.interval + p.slack
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var stopErr error
	grace := stopTimeouts{Graceful: 2 * time.Second, Term: time.Second}
	select {
	case <-rt.exited:
	case <-ctx.Done():
		rt.stop(context.WithoutCancel(ctx), grace)
		stopErr = ctx.Err()
	case <-timer.C:
		rt.stop(context.WithoutCancel(ctx), grace)
		stopErr = fmt.Errorf("ping on %s did not finish within %s", n.role(), limit)
	}
	<-rt.exited
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case stopErr != nil:
		return p.tracker.stats, stopErr
	case rt.err != nil:
		return p.tracker.stats, fmt.Errorf("ping on %s: %s", n.role(), rt.exitText())
	case rt.code > 1 || !p.tracker.summary && rt.code != 0:
		// ping exits 1 when replies were missing: that is data, not failure.
		return p.tracker.stats, fmt.Errorf("ping on %s failed (exit %d): %s", n.role(), rt.code, strings.TrimSpace(rt.last()))
	}
	return p.tracker.stats, nil
}

func (p *pingRun) stats() PingStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracker.stats
}

// cancel ends a ping that never ran (its gate sees EOF).
func (p *pingRun) cancel() {
	if p != nil {
		_ = p.rt.proc.CloseStdin()
	}
}

// icmpID is ping's ICMP id: the one ping printed, else the id of the
// records of the sender's tracer (stream file, "" when none: the sender
// VM's, or the sender host's when the VM is untraced) that carry the most
// of ping's sequence numbers. 0 when neither tells: a tie, or no records.
func (p *pingRun) icmpID(stream string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &p.tracker
	if t.ident > 0 {
		return t.ident
	}
	if stream == "" {
		return 0
	}
	f, err := os.Open(stream)
	if err != nil {
		return 0
	}
	defer f.Close()
	ours := func(seq uint16) bool { return t.replied[seq] }
	if len(t.replied) == 0 {
		// Every ping was lost: the tracer's drop records still carry the id.
		ours = func(seq uint16) bool { return seq >= 1 && int(seq) <= t.stats.Sent }
	}
	score := map[uint16]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var r struct {
			Type string `json:"type"`
			ID   uint16 `json:"id"`
			Seq  uint16 `json:"seq"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Type != record.TypePing && r.Type != record.TypeDrop {
			continue
		}
		if ours(r.Seq) {
			score[r.ID]++
		}
	}
	best, bestN, tie := 0, 0, false
	for id, n := range score {
		switch {
		case n > bestN:
			best, bestN, tie = int(id), n, false
		case n == bestN:
			tie = true
		}
	}
	if tie {
		return 0
	}
	return best
}
