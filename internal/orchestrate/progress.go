package orchestrate

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Progress receives what a run is doing, for the terminal.
type Progress interface {
	// NodeState reports a node's step ("connecting", "pushing", "starting",
	// "tracing", "stopping", "done", "lost", "failed", "detached") with
	// optional detail.
	NodeState(role, state, detail string)
	// Ping reports ping's progress on the sender VM.
	Ping(p PingStats)
	// Done is called once at the end.
	Done()
}

// PingStats is ping's progress so far.
type PingStats struct {
	Count    int // pings planned
	Sent     int
	Answered int
	Last     time.Duration
	Min, Max time.Duration
	Sum      time.Duration
}

// Avg is the mean RTT of the answered pings.
func (p PingStats) Avg() time.Duration {
	if p.Answered == 0 {
		return 0
	}
	return p.Sum / time.Duration(p.Answered)
}

type nopProgress struct{}

func (nopProgress) NodeState(string, string, string) {}
func (nopProgress) Ping(PingStats)                   {}
func (nopProgress) Done()                            {}

// Terminal renders progress on w: on a TTY a block of one line per node plus
// a ping line, redrawn in place; otherwise plain log lines, one per change
// (ping progress at most every 10% of the count). Color only on a TTY and
// when NO_COLOR is not set.
type Terminal struct {
	w     io.Writer
	tty   bool
	color bool

	mu       sync.Mutex
	states   map[string][2]string
	order    []string
	ping     PingStats
	drawn    int
	lastPing int
	start    time.Time
	// finished is set by Done: the block is final and is never redrawn, so
	// whatever is printed below it (the summary) is never overwritten.
	finished bool
}

// NewTerminal makes a Terminal writing to w.
func NewTerminal(w io.Writer, tty, color bool) *Terminal {
	return &Terminal{w: w, tty: tty, color: color && tty, states: map[string][2]string{}, start: time.Now()}
}

// NodeState implements Progress.
func (t *Terminal) NodeState(role, state, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	if _, ok := t.states[role]; !ok {
		t.order = append(t.order, role)
		sort.SliceStable(t.order, func(i, j int) bool { return roleRank(t.order[i]) < roleRank(t.order[j]) })
	}
	if old, ok := t.states[role]; ok && old == [2]string{state, detail} {
		return
	}
	t.states[role] = [2]string{state, detail}
	if t.tty {
		t.redraw()
		return
	}
	line := fmt.Sprintf("%6.1fs %-14s %s", time.Since(t.start).Seconds(), role, state)
	if detail != "" {
		line += ": " + detail
	}
	fmt.Fprintln(t.w, line)
}

// Ping implements Progress.
func (t *Terminal) Ping(p PingStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	t.ping = p
	if t.tty {
		t.redraw()
		return
	}
	step := max(p.Count/10, 1)
	if p.Sent >= t.lastPing+step || p.Sent == p.Count && t.lastPing != p.Count {
		t.lastPing = p.Sent
		fmt.Fprintf(t.w, "%6.1fs %-14s %s\n", time.Since(t.start).Seconds(), "ping", pingLine(p))
	}
}

// Done implements Progress: it draws the block a last time and freezes it.
// It may be called more than once (the caller calls it before printing
// below the block; Run calls it again on return); updates after it are
// dropped, since redrawing in place would move the cursor up over lines
// printed since.
func (t *Terminal) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	if t.tty {
		t.redraw()
	}
}

func pingLine(p PingStats) string {
	s := fmt.Sprintf("%d/%d sent, %d answered", p.Sent, p.Count, p.Answered)
	if p.Answered > 0 {
		s += fmt.Sprintf(", rtt last %s min %s avg %s max %s", us(p.Last), us(p.Min), us(p.Avg()), us(p.Max))
	}
	return s
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }

func (t *Terminal) redraw() {
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn)
	}
	lines := 0
	for _, r := range t.order {
		st := t.states[r]
		state := st[0]
		if t.color {
			state = colorize(state)
		}
		line := fmt.Sprintf("%-14s %s", r, state)
		if st[1] != "" {
			line += "  " + st[1]
		}
		fmt.Fprintf(&b, "\x1b[2K%s\n", line)
		lines++
	}
	if t.ping.Count > 0 {
		fmt.Fprintf(&b, "\x1b[2K%-14s %s\n", "ping", pingLine(t.ping))
		lines++
	}
	t.drawn = lines
	io.WriteString(t.w, b.String())
}

func colorize(state string) string {
	code := "0"
	switch state {
	case "tracing", "done", "ready", "connected":
		code = "32"
	case "failed", "lost":
		code = "31"
	case "stopping", "interrupted", "detached":
		code = "33"
	}
	return "\x1b[" + code + "m" + state + "\x1b[0m"
}

func roleRank(r string) int {
	for i, x := range []string{"sender-vm", "sender-host", "receiver-host", "receiver-vm"} {
		if x == r {
			return i
		}
	}
	return 9
}
