package orchestrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/record"
)

// pingOutput is what `ping -D -n -O -c 4` prints when the third reply is
// missing; ident adds ping -v's "ident=N".
func pingOutput(ident string) []string {
	return []string{
		"PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.",
		"[1764200001.000100] 64 bytes from 198.18.2.1: icmp_seq=1 " + ident + "ttl=64 time=0.310 ms",
		"[1764200001.100100] 64 bytes from 198.18.2.1: icmp_seq=2 " + ident + "ttl=64 time=0.290 ms",
		"[1764200001.300100] no answer yet for icmp_seq=3",
		"[1764200001.300200] 64 bytes from 198.18.2.1: icmp_seq=4 " + ident + "ttl=64 time=0.300 ms",
		"",
		"--- 198.18.2.1 ping statistics ---",
		"4 packets transmitted, 3 received, 25% packet loss, time 300ms",
	}
}

func TestPingTracker(t *testing.T) {
	var tr pingTracker
	for _, l := range pingOutput("") {
		tr.line(l)
	}
	s := tr.stats
	if s.Sent != 4 || s.Answered != 3 || !tr.summary || s.Min != 290*time.Microsecond || s.Max != 310*time.Microsecond || s.Last != 300*time.Microsecond {
		t.Errorf("stats %+v summary %v", s, tr.summary)
	}
	if len(tr.replied) != 3 || tr.replied[3] || tr.ident != 0 {
		t.Errorf("replied %v ident %d", tr.replied, tr.ident)
	}
}

// TestPingICMPID: ping's id comes from its own output when it prints it,
// else from the sender VM tracer's records that carry ping's sequence
// numbers (another ping on the VM has other ones).
func TestPingICMPID(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "vm.jsonl")
	f, err := os.Create(stream)
	if err != nil {
		t.Fatal(err)
	}
	w := record.NewWriter(f)
	w.Write(&record.Header{Tool: record.ToolVM, Role: "tx", Clock: "CLOCK_MONOTONIC"})
	for seq := uint16(1); seq <= 4; seq++ {
		if seq != 3 {
			w.Write(&record.Ping{ID: 4242, Seq: seq, Stages: map[string]uint64{"p1_start": 1}})
		}
		// Another ping on the VM, a few more records but other seqs.
		w.Write(&record.Ping{ID: 7, Seq: 100 + seq, Stages: map[string]uint64{"p1_start": 1}})
		w.Write(&record.Ping{ID: 7, Seq: 200 + seq, Stages: map[string]uint64{"p1_start": 1}})
	}
	w.Write(&record.Drop{ID: 4242, Seq: 3, Role: "tx", LastSeen: "p1_end"})
	w.Write(&record.Trailer{ExitReason: "signal"})
	f.Close()

	feed := func(lines []string) *pingRun {
		p := &pingRun{}
		for _, l := range lines {
			p.tracker.line(l)
		}
		return p
	}
	if id := feed(pingOutput("")).icmpID(stream); id != 4242 {
		t.Errorf("id from the records: %d, want 4242", id)
	}
	if id := feed(pingOutput("ident=4243 ")).icmpID(stream); id != 4243 {
		t.Errorf("id from ping -v's output: %d, want 4243", id)
	}
	if id := feed(pingOutput("")).icmpID(""); id != 0 {
		t.Errorf("id without records: %d, want 0", id)
	}
	// Every reply lost: the drop records name the id.
	lost := []string{"[1764200001.300100] no answer yet for icmp_seq=3", "3 packets transmitted, 0 received, 100% packet loss"}
	if id := feed(lost).icmpID(stream); id != 4242 {
		t.Errorf("id with every ping lost: %d, want 4242", id)
	}
}

// TestPingSize: --size reaches ping as -s before the destination, and a
// large ping's output (ICMP errors from the path, payload in the reply
// lines) is tracked as for the default size: an error line is no answer.
func TestPingSize(t *testing.T) {
	if got := strings.Join(pingArgs("198.18.2.1", 5, 400*time.Millisecond, 0), " "); strings.Contains(got, "-s") {
		t.Errorf("size 0: %s, want ping's default size", got)
	}
	got := pingArgs("198.18.2.1", 5, 400*time.Millisecond, 1472)
	if n := len(got); n < 3 || got[n-3] != "-s" || got[n-2] != "1472" || got[n-1] != "198.18.2.1" {
		t.Errorf("size 1472: %v", got)
	}
	// A KVM lab run with a Geneve overlay and -s 1472 (the tunnel's answer
	// to the first, then nothing: the replies did not fit either).
	var tr pingTracker
	for _, l := range []string{
		"PING 198.18.2.1 (198.18.2.1) 1472(1500) bytes of data.",
		"[1796554169.508559] From 198.18.2.1 icmp_seq=1 Frag needed and DF set (mtu = 1450)",
		"[1796554169.685504] no answer yet for icmp_seq=1",
		"[1796554170.108341] no answer yet for icmp_seq=2",
		"[1796554170.500000] 1480 bytes from 198.18.2.1: icmp_seq=3 ttl=64 time=12.5 ms",
		"",
		"--- 198.18.2.1 ping statistics ---",
		"3 packets transmitted, 1 received, +1 errors, 66.6667% packet loss, time 1881ms",
	} {
		tr.line(l)
	}
	if s := tr.stats; s.Sent != 3 || s.Answered != 1 || len(tr.replied) != 1 || !tr.replied[3] || s.Last != 12500*time.Microsecond {
		t.Errorf("stats %+v replied %v", s, tr.replied)
	}
}

// TestICMPIDStream: ping's id is read from the sender VM tracer's stream,
// and from the sender host tracer's when the VM is untraced (a run with
// the host tracers alone whose every ping was lost said "ICMP ids: [0]").
func TestICMPIDStream(t *testing.T) {
	nodeOf := func(role string) *node { return &node{spec: envfile.Node{Role: role}} }
	tracer := func(role, tool, file string, origin bool) *running {
		return &running{spec: &tracerSpec{node: nodeOf(role), tool: tool, file: file, origin: origin}}
	}
	r := &run{o: &RunOptions{OutDir: "/out"}}
	r.tracers = []*running{
		tracer(manifest.RoleReceiverHost, "host", "receiver-host.host.jsonl", false),
		tracer(manifest.RoleSenderHost, "icmp_drop_detector.py", "sender-host.origin.log", true),
		tracer(manifest.RoleSenderHost, "host", "sender-host.host.jsonl", false),
	}
	if got := r.icmpIDStream(); got != "/out/sender-host.host.jsonl" {
		t.Errorf("VM untraced: %q, want the sender host's stream", got)
	}
	r.tracers = append(r.tracers, tracer(manifest.RoleSenderVM, "vm", "sender-vm.vm.jsonl", false))
	if got := r.icmpIDStream(); got != "/out/sender-vm.vm.jsonl" {
		t.Errorf("VM traced: %q, want the sender VM's stream", got)
	}
	r.tracers = r.tracers[:2]
	if got := r.icmpIDStream(); got != "" {
		t.Errorf("no sender tracer of ours: %q, want none", got)
	}
}
