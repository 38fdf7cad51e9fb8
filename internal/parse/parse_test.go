package parse

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

const anchorDir = "origin/testdata/anchor-logs/measurement-20260206-160003"

func mustParse(t *testing.T, path string) *File {
	t.Helper()
	f, err := ParseFile(context.Background(), path, DefaultMaxFileBytes)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Every anchor file is recognised by content; commands.log is the workflow's list of them.
func TestDetectAnchors(t *testing.T) {
	want := map[string]Kind{
		"send-vm-icmp.log": KindVMText, "recv-vm-icmp.log": KindVMText,
		"send-host-icmp.log": KindHostText, "recv-host-icmp.log": KindHostText,
		"send-host-vhost-rx.log": KindTunText, "recv-host-vhost-rx.log": KindTunText,
		"send-host-kvm-tun.log": KindVhostTX, "recv-host-kvm-tun.log": KindVhostTX,
		"commands.log": KindCommands,
	}
	dirs, _ := filepath.Glob("origin/testdata/anchor-logs/measurement-*")
	if len(dirs) != 4 {
		t.Fatalf("anchor dirs: %v", dirs)
	}
	for _, d := range dirs {
		for name, k := range want {
			if f := mustParse(t, filepath.Join(d, name)); f.Kind != k {
				t.Errorf("%s/%s: kind %v, want %v", d, name, f.Kind, k)
			}
		}
	}
}

func TestVMText(t *testing.T) {
	f := mustParse(t, filepath.Join(anchorDir, "send-vm-icmp.log"))
	if f.Role != "tx" || len(f.Obs) != 22 || f.SrcIP != "192.168.77.83" || f.Truncated {
		t.Fatalf("role %q obs %d src %q truncated %v", f.Role, len(f.Obs), f.SrcIP, f.Truncated)
	}
	o := f.Obs[0]
	// "Session: ... (ID: 15811, Seq: 3)", "PID=3870855" overflows its column.
	if o.ID != 15811 || o.Seq != 3 || o.Vantage != VMTx {
		t.Fatalf("first obs %+v", o)
	}
	for k, want := range []int64{60191937, 848658, 104629, 61145224} {
		if got, _ := o.Get(k); got != want {
			t.Errorf("D%d = %d, want %d", k, got, want)
		}
	}
	// The identity of the printed values: Path1 + Inter + Path2 = Total.
	if o.Dur[0]+o.Dur[1]+o.Dur[2] != o.Dur[3] {
		t.Errorf("identity broken: %v", o.Dur)
	}
	rx := mustParse(t, filepath.Join(anchorDir, "recv-vm-icmp.log"))
	if rx.Role != "rx" || rx.Obs[0].Vantage != VMRx {
		t.Errorf("rx role %q", rx.Role)
	}
}

// The main-branch label set ("P1:S0 (ip_local_out)", "[0->1]", N/A hops)
// parses the same: only the totals are used.
func TestVMTextMainLabels(t *testing.T) {
	in := `=== Kernel ICMP RTT Tracer ===
Trace Direction: RX
Ping Session: 10.0.0.1 -> 10.0.0.2
================================================================================
=== ICMP RTT Trace: 2026-01-09 14:23:16.877 (RX (Remote -> Local)) ===
Session: 10.0.0.1 -> 10.0.0.2 (ID: 1234, Seq: 1)
Path 1 (Request: RX from 10.0.0.1)           : PID=0      COMM=swapper/1    IF=eth0       ICMP_Type=8
Path 1 Latencies (us):
  [0->1] P1:S0 (__netif_receive_skb)              -> P1:S1 (ip_rcv)                          :    N/A  us
  [1->2] P1:S1 (ip_rcv)                           -> P1:S2 (icmp_rcv)                        :    N/A  us
  Total Path 1:  24.300 us

Path 2 Latencies (us):
  [4->5] P2:S1 (ip_local_out)                     -> P2:S2 (dev_queue_xmit)                  :   7.300 us
  Total Path 2:   7.300 us

Total RTT (Path1 Start to Path2 End):  40.000 us
Inter-Path Latency (P1 end -> P2 start):   8.400 us
================================================================================

Detaching...
Exiting.
`
	f, err := Parse("main.log", strings.NewReader(in))
	if err != nil || f.Kind != KindVMText || len(f.Obs) != 1 {
		t.Fatalf("%v %v %d", err, f.Kind, len(f.Obs))
	}
	o := f.Obs[0]
	if o.Vantage != VMRx || o.Dur != [4]int64{24300, 8400, 7300, 40000} || o.Has != 0xf || len(f.Warnings) != 0 {
		t.Errorf("%+v warnings %v", o, f.Warnings)
	}
}

func TestHostText(t *testing.T) {
	f := mustParse(t, filepath.Join(anchorDir, "send-host-icmp.log"))
	if f.Role != "sender" || f.RxIface != "vnet35" || f.TxIface != "enp24s0f0np0" {
		t.Fatalf("role %q rx %q tx %q", f.Role, f.RxIface, f.TxIface)
	}
	if len(f.Drops) != 4 || f.Drops[0].ID != 15813 || f.Drops[0].Seq != 1 || f.Drops[0].LastSeen != "ReqTX" ||
		f.Drops[0].FirstMissed != "RepRX" || !strings.HasPrefix(f.Drops[0].Location, "EXTERNAL") {
		t.Errorf("drops %+v", f.Drops)
	}
	var o *Obs
	for i := range f.Obs {
		if f.Obs[i].ID == 15812 && f.Obs[i].Seq == 1 {
			o = &f.Obs[i]
		}
	}
	// "Latency(us): ReqInternal=80.8  External=398.7  RepInternal=54.9  Total=534.4"
	if o == nil || o.Dur != [4]int64{80800, 398700, 54900, 534400} || o.Seen != 0xf {
		t.Fatalf("15812/1: %+v", o)
	}
	r := mustParse(t, filepath.Join(anchorDir, "recv-host-icmp.log"))
	if r.Role != "receiver" || r.Obs[0].Vantage != HostReceiver {
		t.Errorf("receiver role %q", r.Role)
	}
}

func TestTunText(t *testing.T) {
	f := mustParse(t, filepath.Join(anchorDir, "recv-host-vhost-rx.log"))
	if f.Role != "request" || f.Device != "vnet130" {
		t.Fatalf("role %q device %q", f.Role, f.Device)
	}
	e := map[uint32]int64{}
	for _, o := range f.Obs {
		if v, ok := o.Get(D3); ok {
			e[uint32(o.ID)<<16|uint32(o.Seq)] = v
		}
	}
	// 15812/2: d2=0.030 d4=0.012 d5=0.003 → 45 µs; 15812/5 printed after
	// its own chain (d2=0.028 d4=0.013 d5=0.002) → 43 µs.
	if e[15812<<16|2] != 45000 || e[15812<<16|5] != 43000 {
		t.Errorf("E 15812/2 = %d, 15812/5 = %d", e[15812<<16|2], e[15812<<16|5])
	}
	s := mustParse(t, filepath.Join(anchorDir, "send-host-vhost-rx.log"))
	if s.Role != "reply" {
		t.Errorf("sender host tun role %q", s.Role)
	}
}

func TestVhostTX(t *testing.T) {
	f := mustParse(t, filepath.Join(anchorDir, "send-host-kvm-tun.log"))
	if len(f.Obs) != 18 || f.SrcIP != "192.168.77.83" || f.Device != "vnet35" {
		t.Fatalf("obs %d src %q dev %q", len(f.Obs), f.SrcIP, f.Device)
	}
	// "[16:00:28.459] tid=22554 queue=3 s0=12us s1=5us s2=18us total=35us"
	o := f.Obs[0]
	if o.Time != (16*3600+28)*1e9+459e6 || o.Dur != [4]int64{12000, 5000, 18000, 35000} {
		t.Errorf("first line %+v", o)
	}
	// "[16:00:32.545] ... s0=0us ... total=0us": no total.
	if f.Obs[3].Has&(1<<D3) != 0 {
		t.Errorf("total=0us line kept: %+v", f.Obs[3])
	}
}

func TestPingOutput(t *testing.T) {
	in := `PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.
[1764200000.123456] 64 bytes from 198.18.2.1: icmp_seq=1 ttl=64 time=0.231 ms
[1764200001.123456] no answer yet for icmp_seq=2
[1764200002.123456] 64 bytes from 198.18.2.1: icmp_seq=3 ttl=64 time=1.05 ms
[1764200002.223456] 64 bytes from 198.18.2.1: icmp_seq=3 ttl=64 time=1.15 ms (DUP!)
[1764200003.500000] 64 bytes from 198.18.2.1: icmp_seq=2 ttl=64 time=2500 ms

--- 198.18.2.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 2003ms
`
	f, err := Parse("ping.log", strings.NewReader(in))
	if err != nil || f.Kind != KindPing {
		t.Fatal(err, f.Kind)
	}
	if f.Sent != 3 || f.Received != 3 || len(f.Replies) != 3 {
		t.Fatalf("sent %d received %d replies %+v", f.Sent, f.Received, f.Replies)
	}
	if r := f.Replies[0]; r.Seq != 1 || r.RTTNS != 231000 || r.Time != 1764200000123456000 {
		t.Errorf("%+v", r)
	}
	// The late reply of seq 2 replaces its "no answer yet" entry.
	if r := f.Replies[1]; r.Seq != 2 || !r.Replied || r.RTTNS != 2500e6 {
		t.Errorf("%+v", r)
	}
}

func TestRecordStream(t *testing.T) {
	var b bytes.Buffer
	w := record.NewWriter(&b)
	w.Write(&record.Header{Tool: record.ToolHost, Role: "auto", BootID: "x", StartMonoNS: 1000, StartWallNS: 5000})
	w.Write(&record.Ping{ID: 7, Seq: 9, Role: "receiver", Stages: map[string]uint64{"req_in": 2000, "req_out": 2500, "rep_in": 4000, "rep_out": 4700},
		Devices: map[string]string{"req_in": `eth"0`}, Extra: map[string]string{"a": "{[}]"}})
	b.WriteString(`{"type":"ping","id":7,"seq":10,"role":"sender","stages":{"req_in":1,"req_out":3}}` + "\n")
	b.WriteString(`{"role":"sender","type":"ping","seq":11,"id":7,"stages":{"req\u005fin":10,"req_out":30}}` + "\n")
	b.WriteString("garbage line\n")
	w.Write(&record.Drop{ID: 7, Seq: 12, Role: "sender", LastSeen: "req_out", FirstMissed: "rep_in", Reason: "NO_SOCKET"})
	f, err := Parse("s.jsonl", &b)
	if err != nil || f.Kind != KindRecord {
		t.Fatal(err, f.Kind)
	}
	if len(f.Obs) != 3 || len(f.Drops) != 1 || !f.Truncated {
		t.Fatalf("obs %d drops %d truncated %v warnings %v", len(f.Obs), len(f.Drops), f.Truncated, f.Warnings)
	}
	o := f.Obs[0]
	if o.Vantage != HostReceiver || o.Dur != [4]int64{500, 1500, 700, 2700} || o.Time != 6000 || o.Stage[0] != 2000 {
		t.Errorf("%+v", o)
	}
	// The escaped key goes through encoding/json and gives the same result.
	if f.Obs[2].Seq != 11 || f.Obs[2].Vantage != HostSender || f.Obs[2].Dur[0] != 20 {
		t.Errorf("fallback record %+v", f.Obs[2])
	}
	if !strings.Contains(strings.Join(f.Warnings, "\n"), "s.jsonl:5:") {
		t.Errorf("garbage line not reported with file:line: %v", f.Warnings)
	}
	if _, err := Parse("x.jsonl", strings.NewReader(`{"type":"ping","schema":"pingpath.trace/v1"}`+"\n")); err == nil {
		t.Error("stream without header: no error")
	}
}

// A stage name the tool's record table does not have (a newer tracer) is a
// warning naming the stage, the first line and how many records carried it,
// on the fast path and on the encoding/json fallback alike; the record's
// known stages are kept.
func TestRecordUnknownStageWarns(t *testing.T) {
	var b bytes.Buffer
	w := record.NewWriter(&b)
	w.Write(&record.Header{Tool: record.ToolVM, Role: record.RoleTX, StartMonoNS: 1000, StartWallNS: 5000})
	w.Write(&record.Ping{ID: 1, Seq: 1, Stages: map[string]uint64{record.StageP1Start: 2000, "p1_qdisc": 2100, record.StageP1End: 2300}})
	b.WriteString(`{"type":"ping","id":1,"seq":2,"stages":{"p1_start":3000,"p1_qdisc":3050,"p1\u005fend":3400}}` + "\n")
	w.Write(&record.Trailer{})
	f, err := Parse("new.jsonl", &b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Obs) != 2 || f.Obs[0].Dur[D0] != 300 || f.Obs[1].Dur[D0] != 400 {
		t.Fatalf("known stages not kept: %+v", f.Obs)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], `new.jsonl:2: unknown vm stage "p1_qdisc" ignored in 2 record(s)`) {
		t.Errorf("warnings %q", f.Warnings)
	}
}

// Truncated and corrupt origin logs: warnings with file:line, the rest kept.
func TestTruncatedOrigin(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(anchorDir, "send-vm-icmp.log"))
	if err != nil {
		t.Fatal(err)
	}
	cut := b[:len(b)*2/3]
	cut = append(cut, []byte("\n  Total Path 1: x.yz us\n")...)
	f, err := Parse("cut.log", bytes.NewReader(cut))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Truncated || len(f.Obs) < 10 || len(f.Warnings) == 0 || !strings.HasPrefix(f.Warnings[0], "cut.log:") {
		t.Errorf("truncated %v obs %d warnings %v", f.Truncated, len(f.Obs), f.Warnings)
	}
}

func TestReadPingLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want PingLine
	}{
		{"[1795739989.562827] 64 bytes from 127.0.0.1: icmp_seq=1 ident=7621 ttl=64 time=0.030 ms",
			PingLine{Kind: PingReplied, Ident: 7621, Reply: PingReply{Seq: 1, RTTNS: 30_000, Replied: true, Time: 1795739989_562827000}}},
		{"64 bytes from 10.0.0.2: icmp_seq=70000 ttl=64 time=1.5 ms",
			PingLine{Kind: PingReplied, Reply: PingReply{Seq: 70000 % 65536, RTTNS: 1_500_000, Replied: true}}},
		{"[1764200001.300100] no answer yet for icmp_seq=3", PingLine{Kind: PingNoAnswer, Reply: PingReply{Seq: 3, Time: 1764200001_300100000}}},
		{"4 packets transmitted, 3 received, 25% packet loss, time 300ms", PingLine{Kind: PingSummary, Sent: 4, Received: 3}},
		{"64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.4 ms (DUP!)", PingLine{}},
		{"64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=x.y ms", PingLine{}},
		{"PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.", PingLine{}},
	} {
		if got := ReadPingLine([]byte(c.line)); got != c.want {
			t.Errorf("%q: %+v, want %+v", c.line, got, c.want)
		}
	}
}
