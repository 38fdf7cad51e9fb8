package parse

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/badfile"

	"github.com/pingpath/pingpath/internal/inputfile"
	"github.com/pingpath/pingpath/internal/parse/origin"
	"github.com/pingpath/pingpath/internal/record"
)

// pingLog is ping's output for n answered requests.
func pingLog(n int) string {
	var b strings.Builder
	b.WriteString("PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "[1764200%03d.123456] 64 bytes from 198.18.2.1: icmp_seq=%d ttl=64 time=0.2%02d ms\n", i, i, i)
	}
	fmt.Fprintf(&b, "\n--- 198.18.2.1 ping statistics ---\n%d packets transmitted, %d received, 0%% packet loss, time 1ms\n", n, n)
	return b.String()
}

// One over-long line inside ping's output is skipped with a warning and
// every reply after it is still read (it used to end reading there, and
// the unread replies became lost pings).
func TestOverlongLineResyncs(t *testing.T) {
	log := pingLog(20)
	lines := strings.SplitAfter(log, "\n")
	long := strings.Repeat("x", origin.MaxLine+10) + "\n"
	in := strings.Join(lines[:3], "") + long + strings.Join(lines[3:], "")
	f, err := Parse("ping.log", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Replies) != 20 || f.Sent != 20 || f.Truncated {
		t.Fatalf("%d replies, sent %d, truncated %v; want 20 read past the long line", len(f.Replies), f.Sent, f.Truncated)
	}
	if f.SkippedLines != 1 || len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "ping.log:4: line longer than") {
		t.Errorf("skipped %d, warnings %q", f.SkippedLines, f.Warnings)
	}
	// A line just below the limit is read, one spanning many buffers too.
	for _, n := range []int{64*1024 - 1, 64 * 1024, 3*64*1024 + 7, origin.MaxLine} {
		in := lines[0] + lines[1] + strings.Repeat("y", n) + "\n" + lines[2]
		f, _ := Parse("ping.log", strings.NewReader(in))
		if len(f.Replies) != 2 || f.SkippedLines != 0 || f.Lines != 4 {
			t.Errorf("line of %d bytes: %d replies, %d skipped, %d lines", n, len(f.Replies), f.SkippedLines, f.Lines)
		}
	}
}

// The same inside a record stream: the records after the long line count.
func TestOverlongRecordResyncs(t *testing.T) {
	var b bytes.Buffer
	w := record.NewWriter(&b)
	w.Write(&record.Header{Tool: record.ToolVM, Role: "tx", BootID: "b", StartMonoNS: 1, StartWallNS: 2})
	for i := 1; i <= 10; i++ {
		if i == 5 {
			b.WriteString(`{"type":"ping","note":"` + strings.Repeat("z", 2*origin.MaxLine) + `"}` + "\n")
		}
		w.Write(&record.Ping{ID: 7, Seq: uint16(i), Stages: map[string]uint64{"p1_start": 10, "p1_end": 20, "p2_start": 30, "p2_end": 40}})
	}
	w.Write(&record.Trailer{ExitReason: "signal"})
	f, err := Parse("s.jsonl", &b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Obs) != 10 || f.Truncated || f.SkippedLines != 1 {
		t.Fatalf("%d obs, truncated %v, skipped %d; want all 10 past the long line", len(f.Obs), f.Truncated, f.SkippedLines)
	}
}

// Files that are no producer's output are accounted for by what they are:
// random bytes are binary, a FIFO or a symlink to a device is refused at
// once, a file larger than the bound is read up to it with a warning.
func TestFilesThatAreNotStreams(t *testing.T) {
	dir := t.TempDir()
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f, err := ParseFile(context.Background(), write("random.jsonl", junk), DefaultMaxFileBytes)
	if err != nil || f.Kind != KindUnknown || !f.Binary {
		t.Errorf("random bytes: %v kind %v binary %v", err, f.Kind, f.Binary)
	}
	// 50 MB on one line: no banner, one line skipped, memory bounded.
	big := bytes.Repeat([]byte("a"), 50<<20)
	f, err = ParseFile(context.Background(), write("one-line.log", big), DefaultMaxFileBytes)
	if err != nil || f.Kind != KindUnknown || f.SkippedLines != 1 {
		t.Errorf("50 MB line: %v kind %v skipped %d", err, f.Kind, f.SkippedLines)
	}
	fifo := badfile.FIFO(t, filepath.Join(dir, "sender-vm.vm.jsonl"))
	link := badfile.DeviceLink(t, filepath.Join(dir, "sender-host.host.jsonl"))
	for _, p := range []string{fifo, link} {
		done := make(chan error, 1)
		go func() { _, err := ParseFile(context.Background(), p, DefaultMaxFileBytes); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, inputfile.ErrNotRegular) {
				t.Errorf("%s: %v, want not a regular file", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ParseFile blocked", p)
		}
	}
	// Bounded size: a ping log read only up to the bound says so.
	p := write("ping.log", []byte(pingLog(1000)))
	f, err = ParseFile(context.Background(), p, 4096)
	if err != nil || f.Kind != KindPing || f.Partial == "" || len(f.Replies) == 0 || len(f.Replies) >= 1000 {
		t.Fatalf("bounded: %v kind %v partial %q, %d replies", err, f.Kind, f.Partial, len(f.Replies))
	}
	if !strings.Contains(strings.Join(f.Warnings, "\n"), "read only the first 4096 bytes of") {
		t.Errorf("warnings %q", f.Warnings)
	}
	// A cancelled context ends reading with its error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ParseFile(ctx, p, DefaultMaxFileBytes); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// A tool that failed leaves its own error line: with the tool's banner the
// file keeps its kind and carries the failure; without it, it is a tool's
// error output, with the script a traceback names.
func TestToolFailures(t *testing.T) {
	host := "=== ICMP Drop Detector ===\nSource IP: 192.168.77.83\nDestination IP: 192.168.76.244\n" +
		"RX Interface(s): vnet35(ifindex=62)\nTX Interface(s): enp24s0f0np0(ifindex=3)\n" +
		"Error loading BPF program: Failed to compile BPF module <text>\n"
	f, _ := Parse("send-host-icmp.log", strings.NewReader(host))
	if f.Kind != KindHostText || f.Role != "sender" || len(f.Failures) != 1 || f.Failures[0].Line != 6 ||
		!strings.HasPrefix(f.Failures[0].Text, "Error loading BPF program") {
		t.Errorf("host log with error: kind %v role %q failures %+v", f.Kind, f.Role, f.Failures)
	}
	bare := "In file included from /virtual/main.c:2:\n/virtual/main.c:40:5: error: use of undeclared identifier 'target_ifindexes'\n" +
		"Error loading BPF program: Failed to compile BPF module <text>\n"
	f, _ = Parse("host-send.log", strings.NewReader(bare))
	if f.Kind != KindToolError || len(f.Failures) != 1 || f.Failures[0].Line != 3 {
		t.Errorf("bare error: kind %v failures %+v", f.Kind, f.Failures)
	}
	tb := "Traceback (most recent call last):\n  File \"/tmp/tun_tx_to_kvm_irq.py\", line 512, in <module>\n    b = BPF(text=bpf_text)\n" +
		"  File \"/usr/lib/python3/dist-packages/bcc/__init__.py\", line 479, in __init__\n    raise Exception(\"Failed to compile BPF module %s\" % (src_file or \"<text>\"))\n" +
		"Exception: Failed to compile BPF module <text>\n"
	f, _ = Parse("x.log", strings.NewReader(tb))
	if f.Kind != KindToolError || f.Script != "tun_tx_to_kvm_irq.py" || len(f.Failures) != 1 ||
		f.Failures[0].Text != "Exception: Failed to compile BPF module <text>" || f.Failures[0].Line != 1 {
		t.Errorf("traceback: kind %v script %q failures %+v", f.Kind, f.Script, f.Failures)
	}
	// Plain text that is nobody's output stays unknown.
	f, _ = Parse("notes.txt", strings.NewReader("some notes\nabout the run\n"))
	if f.Kind != KindUnknown || f.Binary || len(f.Failures) != 0 {
		t.Errorf("notes: %v %v %+v", f.Kind, f.Binary, f.Failures)
	}
}

// commands.log of the origin workflow says which tool wrote which log.
func TestCommandsLog(t *testing.T) {
	f := mustParse(t, filepath.Join(anchorDir, "commands.log"))
	if f.Kind != KindCommands || f.Commands == nil || len(f.Commands.Tools) != 8 {
		t.Fatalf("kind %v, %+v", f.Kind, f.Commands)
	}
	byLog := map[string]origin.Command{}
	for _, c := range f.Commands.Tools {
		byLog[c.Log] = c
	}
	c := byLog["send-host-icmp.log"]
	if c.Format != origin.HostPath || c.Flags["--rx-iface"] != "vnet35" || c.Flags["--tx-iface"] != "enp24s0f0np0" {
		t.Errorf("send-host-icmp.log: %+v", c)
	}
	if _, ok := c.Flag("--verbose"); !ok {
		t.Errorf("--verbose not seen: %+v", c.Flags)
	}
	if c := byLog["recv-host-kvm-tun.log"]; c.Format != origin.KVMTun || c.FlowSrc() != "192.168.76.244" || c.Flags["--device"] != "vnet130" {
		t.Errorf("recv-host-kvm-tun.log: %+v", c)
	}
	if c := byLog["recv-vm-icmp.log"]; c.Format != origin.VMRTT || c.Flags["--direction"] != "rx" {
		t.Errorf("recv-vm-icmp.log: %+v", c)
	}
}
