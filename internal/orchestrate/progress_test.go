package orchestrate

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTerminalPlain(t *testing.T) {
	var b bytes.Buffer
	tm := NewTerminal(&b, false, true)
	tm.NodeState("sender-vm", "connecting", "")
	tm.NodeState("sender-vm", "connecting", "") // repeated: not printed again
	tm.NodeState("receiver-vm", "tracing", "vm")
	for i := 1; i <= 20; i++ {
		tm.Ping(PingStats{Count: 20, Sent: i, Answered: i, Last: 300 * time.Microsecond, Min: 200 * time.Microsecond, Max: 400 * time.Microsecond, Sum: time.Duration(i) * 300 * time.Microsecond})
	}
	tm.Done()
	out := b.String()
	if strings.Contains(out, "\x1b") {
		t.Fatalf("escape codes in non-TTY output: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// 2 state lines + one ping line per 10% (2 of 20).
	if len(lines) != 12 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	if !strings.Contains(out, "receiver-vm    tracing: vm") || !strings.Contains(out, "20/20 sent, 20 answered, rtt last 300µs min 200µs avg 300µs max 400µs") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestTerminalTTY(t *testing.T) {
	for _, color := range []bool{true, false} {
		var b bytes.Buffer
		tm := NewTerminal(&b, true, color)
		tm.NodeState("sender-vm", "tracing", "")
		tm.NodeState("receiver-vm", "failed", "boom")
		tm.Ping(PingStats{Count: 5, Sent: 1})
		out := b.String()
		// Redrawn in place: cursor up over the previous block.
		if !strings.Contains(out, "\x1b[2A") || !strings.Contains(out, "\x1b[2K") {
			t.Fatalf("no in-place redraw: %q", out)
		}
		if hasColor := strings.Contains(out, "\x1b[31m"); hasColor != color {
			t.Fatalf("color=%v but output %q", color, out)
		}
		// Sender first, whatever the order of events.
		last := out[strings.LastIndex(out, "\x1b[2A"):]
		if strings.Index(last, "sender-vm") > strings.Index(last, "receiver-vm") {
			t.Fatalf("order: %q", last)
		}
	}
}

// After Done the block is final: later updates draw nothing, so lines
// printed below it (the summary) are never overwritten.
func TestTerminalDoneFreezes(t *testing.T) {
	var b bytes.Buffer
	tm := NewTerminal(&b, true, false)
	tm.NodeState("sender-vm", "tracing", "")
	tm.Done()
	n := b.Len()
	tm.Done()
	tm.NodeState("sender-vm", "done", "")
	tm.Ping(PingStats{Count: 5, Sent: 5})
	if b.Len() != n {
		t.Fatalf("drawn after Done: %q", b.String()[n:])
	}
}
