package orchestrate

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PingFile is ping's output inside the run directory.
const PingFile = "ping.log"

// pingArgs is the measured ping: -D timestamps every line, -O reports
// missing replies as they happen, -W 1 bounds the wait for the last one.
func pingArgs(dst string, count int, interval time.Duration) []string {
	return []string{"ping", "-D", "-n", "-O", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), "-W", "1", dst}
}

var (
	pingReplyRE  = regexp.MustCompile(`bytes from .*icmp_seq=(\d+).* time=([0-9.]+) ms`)
	pingNoAnsRE  = regexp.MustCompile(`no answer yet for icmp_seq=(\d+)`)
	pingSummayRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

// pingTracker turns ping's lines into PingStats.
type pingTracker struct {
	stats   PingStats
	summary bool
}

// line updates the stats; it reports whether they changed.
func (p *pingTracker) line(l string) bool {
	if m := pingReplyRE.FindStringSubmatch(l); m != nil {
		seq, _ := strconv.Atoi(m[1])
		v, _ := strconv.ParseFloat(m[2], 64)
		rtt := time.Duration(v * float64(time.Millisecond))
		s := &p.stats
		s.Sent = max(s.Sent, seq)
		s.Answered++
		s.Last, s.Sum = rtt, s.Sum+rtt
		if s.Min == 0 || rtt < s.Min {
			s.Min = rtt
		}
		s.Max = max(s.Max, rtt)
		return true
	}
	if m := pingNoAnsRE.FindStringSubmatch(l); m != nil {
		seq, _ := strconv.Atoi(m[1])
		p.stats.Sent = max(p.stats.Sent, seq)
		return true
	}
	if m := pingSummayRE.FindStringSubmatch(l); m != nil {
		p.stats.Sent, _ = strconv.Atoi(m[1])
		p.stats.Answered, _ = strconv.Atoi(m[2])
		p.summary = true
		return true
	}
	return false
}

// pingRun is ping on the sender VM, opened ahead of time behind a gate.
type pingRun struct {
	rt       *running
	count    int
	interval time.Duration
	mu       sync.Mutex
	tracker  pingTracker
}

// openPing opens ping's session on the sender VM now (the SSH and login
// shell cost is paid while the tracers start); ping itself runs on wait.
func openPing(ctx context.Context, dir string, n *node, dst string, count int, interval time.Duration, prog Progress) (*pingRun, error) {
	p := &pingRun{count: count, interval: interval, tracker: pingTracker{stats: PingStats{Count: count}}}
	spec := &tracerSpec{
		node: n, tool: "ping", args: pingArgs(dst, count, interval), file: PingFile, origin: true,
		ready: func(string) bool { return true },
		onLine: func(l string) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.tracker.line(l) {
				prog.Ping(p.tracker.stats)
			}
		},
	}
	rt, err := startTracer(ctx, dir, spec, true)
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
	limit := time.Duration(p.count)*p.interval + 15*time.Second
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
