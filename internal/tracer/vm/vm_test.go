package vm_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/cli"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
	"github.com/pingpath/pingpath/internal/tracer/vm"
)

// The same addresses are used in every pair: each pair has its own
// namespaces, and the tracers must tell them apart by namespace.
const (
	srcIP = "10.77.0.1"
	dstIP = "10.77.0.2"
)

func newPair(t *testing.T) *nettest.Pair {
	t.Helper()
	requireRung(t)
	return nettest.NewPair(t, srcIP+"/24", dstIP+"/24")
}

// requireRung checks that the rung forced by PINGPATH_TEST_PROBE can work on
// this kernel for both roles (skip outside CI, fail in CI and the matrix).
func requireRung(t *testing.T) {
	t.Helper()
	p := testenv.Probe()
	if p == tracer.ProbeAuto {
		return
	}
	for _, role := range []string{record.RoleTX, record.RoleRX} {
		stages := vm.Stages(role)
		_, err := tracer.Select(stages, tracer.ProbeCapabilities(stages, ""), p)
		testenv.Require(t, err == nil, fmt.Sprintf("forced --probe %s for role %s: %v", p, role, err))
	}
}

func vmArgs(extra ...string) []string {
	return append([]string{"--src-ip", srcIP, "--dst-ip", dstIP, "--probe", testenv.Probe(), "--event-buffer", testenv.EventBuffer()}, extra...)
}

// checkProbes verifies the header's probes honour a forced rung.
func checkProbes(t *testing.T, h *record.Header, role string) {
	t.Helper()
	if h.Role != role || h.Tool != record.ToolVM || h.Clock != "CLOCK_MONOTONIC" {
		t.Errorf("header role=%q tool=%q clock=%q", h.Role, h.Tool, h.Clock)
	}
	if len(h.Probes) != 4 {
		t.Fatalf("header has %d probes, want 4", len(h.Probes))
	}
	forced := testenv.Probe()
	if forced == tracer.ProbeAuto {
		return
	}
	for _, st := range vm.Stages(role) {
		has := false
		for _, r := range st.Rungs {
			fam := string(r.Method)
			if r.Method == tracer.RawTracepoint {
				fam = tracer.ProbeTracepoint
			}
			has = has || fam == forced
		}
		for _, p := range h.Probes {
			if p.Stage != st.Name || !has {
				continue
			}
			m := p.Method
			if m == string(tracer.RawTracepoint) {
				m = tracer.ProbeTracepoint
			}
			if m != forced {
				t.Errorf("stage %s: method %s, but --probe %s was forced", p.Stage, p.Method, forced)
			}
		}
	}
}

// checkPings verifies exactly one record per sent seq with the pinger's id,
// ordered stages and path1 + inter_path + path2 = total.
func checkPings(t *testing.T, who string, s *record.Stream, id uint16, seqs []uint16) {
	t.Helper()
	checkPingRecords(t, who, s, id, seqs, true)
}

// checkPingRecords checks the records; with exact, every seq needs one.
func checkPingRecords(t *testing.T, who string, s *record.Stream, id uint16, seqs []uint16, exact bool) {
	t.Helper()
	want := map[uint16]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	got := map[uint16]int{}
	for _, p := range s.Pings {
		if p.ID != id {
			t.Errorf("%s: record for foreign ping id=%d seq=%d", who, p.ID, p.Seq)
			continue
		}
		if !want[p.Seq] {
			t.Errorf("%s: record for unsent seq %d", who, p.Seq)
		}
		got[p.Seq]++
		var prev uint64
		for _, st := range []string{record.StageP1Start, record.StageP1End, record.StageP2Start, record.StageP2End} {
			ts, ok := p.Stages[st]
			if !ok {
				continue
			}
			if ts < prev {
				t.Errorf("%s seq %d: stage %s at %d before the previous stage (%d): %v", who, p.Seq, st, ts, prev, p.Stages)
			}
			prev = ts
		}
		d := p.Durations
		if _, ok := d["total"]; exact && !ok {
			t.Errorf("%s seq %d: no total: %v", who, p.Seq, p.Stages)
		}
		if len(p.Stages) == 4 && d["path1"]+d["inter_path"]+d["path2"] != d["total"] {
			t.Errorf("%s seq %d: path1+inter_path+path2 = %d != total %d", who, p.Seq, d["path1"]+d["inter_path"]+d["path2"], d["total"])
		}
	}
	for _, q := range seqs {
		if got[q] > 1 || exact && got[q] != 1 {
			t.Errorf("%s: seq %d has %d records, want 1", who, q, got[q])
		}
	}
	if exact && s.Trailer.Counters["ringbuf_lost"] != 0 {
		t.Errorf("%s: ringbuf_lost = %d", who, s.Trailer.Counters["ringbuf_lost"])
	}
}

func seqsOf(res *nettest.PingResult, first uint16) []uint16 {
	var out []uint16
	for i := 0; i < res.Sent; i++ {
		out = append(out, first+uint16(i))
	}
	return out
}

// TestTraceRealPackets runs the tx tracer in the sender namespace and the rx
// tracer in the receiver namespace of one pair, and a third tracer in the
// sender namespace of a second pair with the same addresses, while both pairs
// ping (different ids) and a UDP flood runs in the second pair. Each tracer
// must report exactly its own pings. Honours PINGPATH_TEST_PROBE.
func TestTraceRealPackets(t *testing.T) {
	testenv.RequireRoot(t)
	mine, other := newPair(t), newPair(t)
	// Resolve the neighbour before the flood: packets to an unresolved
	// address wait in a small ARP queue that drops the oldest, so a flood
	// started first can push out the first ping.
	for _, p := range []*nettest.Pair{mine, other} {
		if _, err := p.A.Ping(context.Background(), nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 9999, FirstSeq: 1, Count: 1}); err != nil {
			t.Fatal(err)
		}
	}

	tracertest.WithoutBTF(t, mine.A.Do, func() (tracer.Tool, error) {
		return vm.New(vm.Config{SrcIP: netip.MustParseAddr(srcIP), DstIP: netip.MustParseAddr(dstIP), Direction: "auto"})
	})
	tx := startTracer(t, mine.A, vmArgs()...)
	rx := startTracer(t, mine.B, vmArgs("--interface", mine.LinkB.Name)...)
	otx := startTracer(t, other.A, vmArgs()...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flood := make(chan struct{})
	go func() { // unrelated traffic in the other pair
		defer close(flood)
		_, _ = other.A.UDPFlood(ctx, netip.MustParseAddrPort(dstIP+":9"), 0)
	}()
	const first = 65530 // crosses the seq wrap
	var otherRes *nettest.PingResult
	var otherErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		otherRes, otherErr = other.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 2222, FirstSeq: 1, Count: 20, Interval: 10 * time.Millisecond})
	}()
	res, err := mine.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 1111, FirstSeq: first, Count: 20, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if otherErr != nil {
		t.Fatal(otherErr)
	}
	if len(res.Lost) > 0 || len(otherRes.Lost) > 0 {
		t.Fatalf("pings lost: mine %v, other %v", res.Lost, otherRes.Lost)
	}
	// Stop once every tracer has written a record for each of its pings.
	waitSeqs(t, tx, 1111, seqsOf(res, first))
	waitSeqs(t, rx, 1111, seqsOf(res, first))
	waitSeqs(t, otx, 2222, seqsOf(otherRes, 1))
	cancel()
	<-flood

	txs, rxs, otxs := tx.Signal(os.Interrupt), rx.Signal(syscall.SIGTERM), otx.Signal(os.Interrupt)
	checkProbes(t, txs.Header, record.RoleTX)
	checkProbes(t, rxs.Header, record.RoleRX)
	if txs.Header.Netns != mine.A.Inode || rxs.Header.Netns != mine.B.Inode || otxs.Header.Netns != other.A.Inode {
		t.Errorf("header netns %d/%d/%d, want %d/%d/%d", txs.Header.Netns, rxs.Header.Netns, otxs.Header.Netns, mine.A.Inode, mine.B.Inode, other.A.Inode)
	}
	checkPings(t, "tx", txs, 1111, seqsOf(res, first))
	checkPings(t, "rx", rxs, 1111, seqsOf(res, first))
	checkPings(t, "other tx", otxs, 2222, seqsOf(otherRes, 1))
	for _, s := range []*record.Stream{txs, rxs, otxs} {
		if s.Trailer.ExitReason != tracer.ExitSignal {
			t.Errorf("exit reason %q, want signal", s.Trailer.ExitReason)
		}
		if s.Trailer.Counters["incomplete"] != 0 {
			t.Errorf("%s: %d incomplete flows", s.Header.Role, s.Trailer.Counters["incomplete"])
		}
	}
	// The rx tracer filtered on its interface; the device stages name it.
	for _, p := range rxs.Pings {
		if dev := p.Devices[record.StageP1Start]; dev != mine.LinkB.Name {
			t.Errorf("rx seq %d: p1_start device %q, want %s", p.Seq, dev, mine.LinkB.Name)
			break
		}
	}
	for _, p := range []*tracertest.Process{tx, rx, otx} {
		p.AssertGone()
	}
}

// Pings to a pair nobody traces, and traffic of the traced pair that is not
// ICMP echo, produce no records.
func TestTraceIgnoresUnrelated(t *testing.T) {
	testenv.RequireRoot(t)
	mine, other := newPair(t), newPair(t)
	tx := startTracer(t, mine.A, vmArgs("--icmp-id", "3333")...)
	ctx := context.Background()
	if _, err := other.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 3333, Count: 5, Interval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n, err := mine.A.UDPFlood(ctx, netip.MustParseAddrPort(dstIP+":9"), 2000); err != nil || n != 2000 {
		t.Fatalf("udp flood: %d, %v", n, err)
	}
	// Same namespace, other id: filtered by --icmp-id.
	if _, err := mine.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 4444, Count: 5, Interval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	s := tx.Signal(os.Interrupt)
	if len(s.Pings) != 0 || len(s.Drops) != 0 || s.Trailer.Counters["events"] != 0 {
		t.Errorf("unrelated traffic produced %d pings, %d drops, %d events", len(s.Pings), len(s.Drops), s.Trailer.Counters["events"])
	}
}

// The tracer ends by itself, with a trailer naming why, after
// --max-duration, after --duration, and when stdin closes under
// --stop-on-stdin-eof; everything it loaded is gone afterwards.
func TestTraceLifecycle(t *testing.T) {
	testenv.RequireRoot(t)
	p := newPair(t)
	for _, c := range []struct {
		args     []string
		closeIn  bool
		minTime  time.Duration
		wantExit string
	}{
		{[]string{"--max-duration", "2s"}, false, 2 * time.Second, tracer.ExitMaxDuration},
		{[]string{"--duration", "500ms"}, false, 500 * time.Millisecond, tracer.ExitDuration},
		{[]string{"--stop-on-stdin-eof"}, true, 0, tracer.ExitStdinEOF},
	} {
		start := time.Now()
		tr := startTracer(t, p.A, vmArgs(c.args...)...)
		if c.closeIn {
			tr.Stdin().Close()
		}
		s := tr.Wait(20 * time.Second)
		if took := time.Since(start); took < c.minTime {
			t.Errorf("%v: exited after %v", c.args, took)
		}
		if s.Trailer.ExitReason != c.wantExit {
			t.Errorf("%v: exit reason %q, want %q", c.args, s.Trailer.ExitReason, c.wantExit)
		}
		tr.AssertGone()
	}
}

// Under --renew-on-stdin every line on stdin renews --max-duration: the
// tracer outlives it while the lines come and stops it after the last one
// (a controller that keeps tracers running, then is lost without closing
// stdin). --stats-interval writes the running counters meanwhile.
func TestTraceRenewOnStdinAndStats(t *testing.T) {
	testenv.RequireRoot(t)
	p := newPair(t)
	start := time.Now()
	tr := startTracer(t, p.A, vmArgs("--max-duration", "1s", "--renew-on-stdin", "--stats-interval", "200ms")...)
	renewFor := 2500 * time.Millisecond
	var lastLine time.Time
	for time.Since(start) < renewFor {
		if _, err := io.WriteString(tr.Stdin(), "\n"); err != nil {
			t.Fatal(err)
		}
		lastLine = time.Now()
		time.Sleep(300 * time.Millisecond)
	}
	s := tr.Wait(20 * time.Second)
	// The last line went out up to one sleep before renewFor: the stop is
	// due a second after it, not after renewFor.
	if took := time.Since(lastLine); took < time.Second || time.Since(start) < renewFor {
		t.Errorf("stopped %v after the last renewal (%v after start), want ≥ 1s after it", took, time.Since(start))
	}
	if s.Trailer == nil || s.Trailer.ExitReason != tracer.ExitMaxDuration {
		t.Fatalf("trailer %+v, want exit reason %q", s.Trailer, tracer.ExitMaxDuration)
	}
	if s.Stats == nil {
		t.Fatal("no stats record in 3.5 s with --stats-interval 200ms")
	}
	for _, k := range []string{"events", "ringbuf_lost", "cpu_user_ns", "cpu_system_ns", "bpf_ns", "bpf_runs"} {
		if _, ok := s.Stats.Counters[k]; !ok {
			t.Errorf("stats record lacks counter %q: %v", k, s.Stats.Counters)
		}
	}
	if s.Stats.AtNS == 0 || s.Stats.AtNS > s.Trailer.EndMonoNS {
		t.Errorf("stats at_ns %d, trailer end %d", s.Stats.AtNS, s.Trailer.EndMonoNS)
	}
	tr.AssertGone()
}

// The text view shows the origin's blocks.
func TestTraceTextFormat(t *testing.T) {
	testenv.RequireRoot(t)
	p := newPair(t)
	tr := startTracer(t, p.A, vmArgs("--format", "text")...)
	if _, err := p.A.Ping(context.Background(), nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 5555, FirstSeq: 9, Count: 2, Interval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	out := string(tr.WaitExit(15 * time.Second))
	for _, want := range []string{"=== ICMP RTT Trace:", "Session: 10.77.0.1 -> 10.77.0.2 (ID: 5555, Seq: 9)", "Total Path 1:",
		"Total RTT (Path1 Start to Path2 End):", "Inter-Path Latency (P1 end -> P2 start):", "Detaching...", "Exiting."} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

// Bad lifecycle flags are usage errors before anything is loaded.
func TestTraceUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--max-duration", "0"},
		{"--max-duration", "-1s"},
		{"--probe", "uprobe"},
		{"--format", "xml"},
		{"--direction", "sideways"},
		{"--timeout", "0s"},
	} {
		var out, errb strings.Builder
		full := append([]string{"trace", "vm", "--src-ip", srcIP, "--dst-ip", dstIP}, args...)
		if code := cli.Main(context.Background(), full, &out, &errb); code != cli.ExitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errb.String(), cli.ExitUsage)
		}
	}
}

// Frames built by hand and sent through an AF_PACKET socket reach the
// receiver's netif_receive_skb with a stale network header (untagged) or
// with VLAN tags still in the data (no VLAN device, no offload): the parser
// must find the ICMP echo header in all of them. The untagged request is
// answered (one ping record); the tagged ones die after netif_receive_skb
// (no VLAN device), so they end as incomplete flows seen at p1_start.
func TestTraceRawAndVLANFrames(t *testing.T) {
	testenv.RequireRoot(t)
	p := newPair(t)
	// A short flow timeout writes the tagged frames' incomplete flows while
	// the tracer runs, so the test can wait for them.
	rx := startTracer(t, p.B, vmArgs("--timeout", "1s")...)
	srcMAC, err := p.A.MAC(p.LinkA.Name)
	if err != nil {
		t.Fatal(err)
	}
	dstMAC, err := p.B.MAC(p.LinkB.Name)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(seq uint16, tags ...nettest.VLANTag) []byte {
		return nettest.EchoFrame{Dst: dstMAC, Src: srcMAC, VLANs: tags, SrcIP: netip.MustParseAddr(srcIP),
			DstIP: netip.MustParseAddr(dstIP), Type: 8, ID: 6001, Seq: seq, Payload: 32}.Bytes()
	}
	frames := [][]byte{
		frame(1),
		frame(2, nettest.VLANTag{TPID: nettest.TPID8021Q, VID: 100}),
		frame(3, nettest.VLANTag{TPID: nettest.TPID8021AD, VID: 200}, nettest.VLANTag{TPID: nettest.TPID8021Q, VID: 100}),
	}
	if err := p.A.SendFrames(p.LinkA.Name, frames...); err != nil {
		t.Fatal(err)
	}
	waitSeqs(t, rx, 6001, []uint16{1, 2, 3})
	s := rx.Signal(os.Interrupt)
	if len(s.Pings) != 1 || s.Pings[0].ID != 6001 || s.Pings[0].Seq != 1 {
		t.Errorf("pings = %+v, want the untagged seq 1", s.Pings)
	}
	seen := map[uint16]bool{}
	for _, d := range s.Drops {
		if d.ID == 6001 && d.LastSeen == record.StageP1Start {
			seen[d.Seq] = true
		}
	}
	if !seen[2] || !seen[3] {
		t.Errorf("tagged frames not seen at p1_start: drops = %+v", s.Drops)
	}
}

// slowTool makes the reader fall behind so that the ring buffer overflows.
type slowTool struct{ *vm.Tracer }

func (s slowTool) Event(raw []byte) error {
	time.Sleep(200 * time.Microsecond)
	return s.Tracer.Event(raw)
}

// A ring buffer overflow is counted, not hidden: with a 4 KiB ring and a
// slow reader, the trailer reports ringbuf_lost and the pings that lost an
// event end as incomplete, never as wrong records. The same with the perf
// event array (4 KiB per CPU), whose losses count the same way. Runs the
// tracer in-process, once per event buffer (the forced one only, when
// PINGPATH_TEST_EVENT_BUFFER forces one).
func TestTraceRingBufferLossCounted(t *testing.T) {
	testenv.RequireRoot(t)
	buffers := []string{tracer.EventBufferRing, tracer.EventBufferPerf}
	if b := testenv.EventBuffer(); b != tracer.EventBufferAuto {
		buffers = []string{b}
	}
	for _, b := range buffers {
		t.Run(b, func(t *testing.T) { testBufferLossCounted(t, b) })
	}
}

func testBufferLossCounted(t *testing.T, buffer string) {
	if buffer == tracer.EventBufferRing {
		err := tracer.RingBufferSupport()
		testenv.Require(t, err == nil, fmt.Sprintf("ring buffer: %v", err))
	}
	p := newPair(t)
	out := filepath.Join(t.TempDir(), "out.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- p.A.Do(func() error {
			tr, err := vm.New(vm.Config{SrcIP: netip.MustParseAddr(srcIP), DstIP: netip.MustParseAddr(dstIP)})
			if err != nil {
				return err
			}
			return tracer.Run(ctx, slowTool{tr}, tracer.Options{Probe: testenv.Probe(), EventBuffer: buffer, Output: out, MaxDuration: time.Minute,
				RingBytes: 4096, Stderr: io.Discard, Stdin: strings.NewReader(""), OnReady: func(*tracer.Loaded) { close(ready) }})
		})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("tracer failed: %v", err)
	}
	const n = 2000
	res, err := p.A.Ping(ctx, nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 7777, Count: n})
	if err != nil {
		t.Fatal(err)
	}
	// The last ping's record says its events were read; it may never come
	// (its events lost), then the wait ends at its timeout.
	tracertest.WaitRecords(t, tracertest.FileOutput(out), tracertest.HasSeqs(7777, uint16(n-1)), 5*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := record.Read(f)
	if err != nil || s.Trailer == nil {
		t.Fatalf("reading output: %v", err)
	}
	c := s.Trailer.Counters
	if s.Header.EventBuffer != buffer {
		t.Errorf("header event_buffer %q, want %q", s.Header.EventBuffer, buffer)
	}
	if c["ringbuf_lost"] == 0 {
		t.Fatalf("no %s loss counted (events %d) — the test did not overflow the buffer", buffer, c["events"])
	}
	if got := uint64(len(s.Pings)) + c["incomplete"]; got > uint64(res.Sent) || c["pings"] != uint64(len(s.Pings)) {
		t.Errorf("pings %d + incomplete %d > sent %d", len(s.Pings), c["incomplete"], res.Sent)
	}
	// Every hook fired once per ping at least (tracepoint rung: exactly 3,
	// the send's start riding in dev_queue_xmit's event; 4 with ip_local_out);
	// each firing is either an event or a loss.
	if hits := c["events"] + c["ringbuf_lost"]; hits < 3*uint64(res.Sent) || hits > 6*uint64(res.Sent) {
		t.Errorf("events %d + lost %d = %d, want 3..6 per ping (%d pings)", c["events"], c["ringbuf_lost"], hits, res.Sent)
	}
	checkPingRecords(t, "lossy", s, 7777, seqsOf(res, 0), false)
	t.Logf("%s: sent %d: events %d, ringbuf_lost %d, pings %d, incomplete %d", buffer, res.Sent, c["events"], c["ringbuf_lost"], len(s.Pings), c["incomplete"])
}

// Packets entering through a TAP device (network_header set at the VLAN tag
// when the frame is tagged) and a TUN device (an L3 device: network_header
// equals mac_header) are parsed: the untagged TAP request and the TUN request
// are answered and give complete records; tagged ones are seen at p1_start.
func TestTraceTapAndTun(t *testing.T) {
	testenv.RequireRoot(t)
	requireRung(t)
	peerMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	src, dst := netip.MustParseAddr(srcIP), netip.MustParseAddr(dstIP)

	tapNS := nettest.NewNetns(t, "pptap")
	tap := nettest.NewTap(t, tapNS, netip.MustParsePrefix(dstIP+"/24"), false)
	if err := tap.AddNeighbor(src, peerMAC); err != nil {
		t.Fatal(err)
	}
	rx := startTracer(t, tapNS, vmArgs("--timeout", "1s")...) // the tagged frames' flows expire while it runs
	frame := func(seq uint16, tags ...nettest.VLANTag) []byte {
		return nettest.EchoFrame{Dst: tap.MAC, Src: peerMAC, VLANs: tags, SrcIP: src, DstIP: dst,
			Type: 8, ID: 6002, Seq: seq, Payload: 32}.Bytes()
	}
	for _, f := range [][]byte{
		frame(1),
		frame(2, nettest.VLANTag{TPID: nettest.TPID8021Q, VID: 100}),
		frame(3, nettest.VLANTag{TPID: nettest.TPID8021AD, VID: 200}, nettest.VLANTag{TPID: nettest.TPID8021Q, VID: 100}),
	} {
		if _, err := tap.File.Write(f); err != nil {
			t.Fatal(err)
		}
	}

	tunNS := nettest.NewNetns(t, "pptun")
	tun := nettest.NewTap(t, tunNS, netip.MustParsePrefix(dstIP+"/24"), true)
	rxTun := startTracer(t, tunNS, vmArgs()...)
	pkt := nettest.EchoFrame{SrcIP: src, DstIP: dst, Type: 8, ID: 6003, Seq: 4, Payload: 32}.IPv4()
	if _, err := tun.File.Write(pkt); err != nil {
		t.Fatal(err)
	}
	waitSeqs(t, rx, 6002, []uint16{1, 2, 3})
	waitSeqs(t, rxTun, 6003, []uint16{4})

	s := rx.Signal(os.Interrupt)
	checkPingRecords(t, "tap", s, 6002, []uint16{1}, true)
	seen := map[uint16]bool{}
	for _, d := range s.Drops {
		if d.ID == 6002 && d.LastSeen == record.StageP1Start && d.Devices[record.StageP1Start] == tap.Name {
			seen[d.Seq] = true
		}
	}
	if !seen[2] || !seen[3] {
		t.Errorf("tagged frames on the TAP not seen at p1_start: drops = %+v", s.Drops)
	}
	checkPingRecords(t, "tun", rxTun.Signal(os.Interrupt), 6003, []uint16{4}, true)
}

// A pinger using sendmsg(2) is seen at p1_start too (tracepoint rung).
func TestTraceSendmsgPinger(t *testing.T) {
	testenv.RequireRoot(t)
	p := newPair(t)
	tx := startTracer(t, p.A, vmArgs()...)
	res, err := p.A.Ping(context.Background(), nettest.PingOptions{Dst: netip.MustParseAddr(dstIP), ID: 8080, FirstSeq: 1,
		Count: 5, Interval: 5 * time.Millisecond, Sendmsg: true})
	if err != nil {
		t.Fatal(err)
	}
	waitSeqs(t, tx, 8080, seqsOf(res, 1))
	s := tx.Signal(os.Interrupt)
	checkPings(t, "sendmsg", s, 8080, seqsOf(res, 1))
	for _, r := range s.Pings {
		if _, ok := r.Stages[record.StageP1Start]; !ok {
			t.Errorf("seq %d: no p1_start", r.Seq)
		}
	}
}
