package host

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

func TestMain(m *testing.M) { labtest.Main(m) }

// labTracers starts the host tracer on both hosts of l, the way the
// orchestrator would: same --src-ip/--dst-ip on both, the lab's vnet and phy.
func labTracers(t *testing.T, l *lab.Lab) (src, dst string, sender, receiver *tracertest.Tracer) {
	t.Helper()
	svm, err := l.Node(lab.SenderVM)
	if err != nil {
		t.Fatal(err)
	}
	rvm, err := l.Node(lab.ReceiverVM)
	if err != nil {
		t.Fatal(err)
	}
	start := func(node string) *tracertest.Tracer {
		n, err := l.Node(node)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{SrcIP: svm.DataIP, DstIP: rvm.DataIP, VMInterfaces: []string{n.Vnet}, PhyInterfaces: []string{n.Phy}}
		return startTracerIn(t, node, func(fn func() error) error { return l.Do(node, fn) }, cfg)
	}
	// Receiver first, as the orchestrator does.
	receiver = start(lab.ReceiverHost)
	sender = start(lab.SenderHost)
	return svm.DataIP.String(), rvm.DataIP.String(), sender, receiver
}

var pingReply = regexp.MustCompile(`icmp_seq=(\d+) `)

// labPing runs the real ping binary on a VM and returns the answered seqs.
func labPing(t *testing.T, l *lab.Lab, node, dst string, count int) map[uint16]bool {
	t.Helper()
	testenv.RequireProgram(t, "ping")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := l.Exec(ctx, node, "ping", "-n", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "1", dst)
	got := map[uint16]bool{}
	for _, m := range pingReply.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[1])
		got[uint16(n)] = true
	}
	return got
}

// pingsBySeq indexes complete ping records (one ICMP id: the lab's ping).
func pingsBySeq(t *testing.T, name string, s *record.Stream) map[uint16]record.Ping {
	t.Helper()
	out := map[uint16]record.Ping{}
	for _, p := range s.Pings {
		if p.Extra["incomplete"] != "" {
			t.Errorf("%s: incomplete ping %+v", name, p)
			continue
		}
		if _, dup := out[p.Seq]; dup {
			t.Errorf("%s: two records for seq %d", name, p.Seq)
		}
		out[p.Seq] = p
	}
	return out
}

// TestTraceLab runs the tracer on the lab's two hosts (TAP-backed VM links,
// like QEMU's userspace backend): every ping gives one complete record per
// host with the right role, while pings in the other direction are ignored.
func TestTraceLab(t *testing.T) {
	l := labtest.Up(t, lab.Options{})
	src, dst, trS, trR := labTracers(t, l)
	bg := make(chan struct{})
	go func() { // background: the receiver VM pinging the sender VM
		defer close(bg)
		labPing(t, l, lab.ReceiverVM, src, 10)
	}()
	const n = 20
	answered := labPing(t, l, lab.SenderVM, dst, n)
	<-bg
	if len(answered) != n {
		t.Fatalf("ping answered %d of %d", len(answered), n)
	}
	trS.WaitRecords(t, tracertest.HasSeqsAnyID(seqRange(n)...))
	trR.WaitRecords(t, tracertest.HasSeqsAnyID(seqRange(n)...))
	sS, sR := trS.Stop(t), trR.Stop(t)
	ps, pr := pingsBySeq(t, "sender host", sS), pingsBySeq(t, "receiver host", sR)
	for seq := uint16(1); seq <= n; seq++ {
		a, okA := ps[seq]
		b, okB := pr[seq]
		if !okA || !okB {
			t.Errorf("seq %d: sender host record %v, receiver host record %v", seq, okA, okB)
			continue
		}
		if a.Role != record.RoleSender || b.Role != record.RoleReceiver {
			t.Errorf("seq %d: roles %s/%s", seq, a.Role, b.Role)
		}
		if a.Devices[record.StageReqIn] != lab.VnetInterface || b.Devices[record.StageReqIn] != lab.PhyInterface {
			t.Errorf("seq %d: req_in devices %s/%s", seq, a.Devices[record.StageReqIn], b.Devices[record.StageReqIn])
		}
		if a.Durations["external"] < b.Durations["total"] {
			t.Errorf("seq %d: Ext_s %d < Total_r %d", seq, a.Durations["external"], b.Durations["total"])
		}
	}
	if len(ps) != n || len(pr) != n || len(sS.Drops)+len(sR.Drops) != 0 {
		t.Errorf("records: sender %d receiver %d drops %d/%d, want %d %d 0 0", len(ps), len(pr), len(sS.Drops), len(sR.Drops), n, n)
	}
}

// TestTraceLabWireLoss loses packets on the lab's wire: every ping ping
// reports lost is a drop on the sender host saying the request left the
// physical NIC and no reply came; the receiver host saw either nothing
// (request lost) or the whole ping (reply lost).
func TestTraceLabWireLoss(t *testing.T) {
	l := labtest.Up(t, lab.Options{WireLoss: 40, WireSeed: 3})
	_, dst, trS, trR := labTracers(t, l)
	const n = 30
	answered := labPing(t, l, lab.SenderVM, dst, n)
	// The sender host writes each ping as complete or, after its timeout
	// (500 ms), as a drop; the receiver host the answered ones.
	trS.WaitRecords(t, tracertest.HasSeqsAnyID(seqRange(n)...))
	trR.WaitRecords(t, tracertest.HasSeqsAnyID(keys(answered)...))
	sS, sR := trS.Stop(t), trR.Stop(t)
	if len(answered) == n || len(answered) == 0 {
		t.Fatalf("40%% loss each way answered %d of %d: want some lost", len(answered), n)
	}
	ps, pr := pingsBySeq(t, "sender host", sS), pingsBySeq(t, "receiver host", sR)
	drops := map[uint16]record.Drop{}
	for _, d := range sS.Drops {
		drops[d.Seq] = d
	}
	for seq := uint16(1); seq <= n; seq++ {
		d, dropped := drops[seq]
		_, complete := ps[seq]
		switch {
		case answered[seq] && (!complete || dropped):
			t.Errorf("seq %d answered but sender host record complete=%v drop=%v", seq, complete, dropped)
		case !answered[seq] && !dropped:
			t.Errorf("seq %d lost but no drop on the sender host", seq)
		case !answered[seq]:
			if d.LastSeen != record.StageReqOut || d.FirstMissed != record.StageRepIn || d.Role != record.RoleSender || d.Reason != "" {
				t.Errorf("seq %d drop: %+v, want req_out → rep_in, no local reason", seq, d)
			}
			if _, ok := pr[seq]; !ok {
				for _, rd := range sR.Drops {
					if rd.Seq == seq {
						t.Errorf("seq %d: the receiver host reports a drop though the wire lost it: %+v", seq, rd)
					}
				}
			}
		}
	}
	t.Logf("answered %d of %d; sender host drops %d; receiver host saw %d complete", len(answered), n, len(drops), len(pr))
}

// TestTraceLabNftablesDrop drops echo requests with an nftables rule on the
// receiver host's bridge: the receiver host names the kernel's reason (the
// device is the skb's at the free: the bridge forward hook already set the
// output port).
func TestTraceLabNftablesDrop(t *testing.T) {
	nft := testenv.RequireProgram(t, "nft")
	l := labtest.Up(t, lab.Options{})
	_, dst, trS, trR := labTracers(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	table := fmt.Sprintf("pp_host_test_%d", time.Now().UnixNano()%1e6)
	for _, argv := range [][]string{
		{nft, "add", "table", "bridge", table},
		{nft, "add", "chain", "bridge", table, "c1", "{ type filter hook forward priority 0 ; }"},
		{nft, "add", "rule", "bridge", table, "c1", "icmp", "type", "echo-request", "drop"},
	} {
		if out, err := l.Exec(ctx, lab.ReceiverHost, argv...); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
	}
	answered := labPing(t, l, lab.SenderVM, dst, 3)
	trS.WaitRecords(t, tracertest.AtLeast(record.TypeDrop, 3))
	trR.WaitRecords(t, tracertest.AtLeast(record.TypeDrop, 3))
	sS, sR := trS.Stop(t), trR.Stop(t)
	if len(answered) != 0 {
		t.Fatalf("pings answered through the drop rule: %v", answered)
	}
	if len(sR.Drops) != 3 || len(sS.Drops) != 3 {
		t.Fatalf("drops: receiver host %d, sender host %d, want 3 and 3", len(sR.Drops), len(sS.Drops))
	}
	for _, d := range sR.Drops {
		if d.Role != record.RoleReceiver || d.LastSeen != record.StageReqIn || d.FirstMissed != record.StageReqOut ||
			d.Reason != "NETFILTER_DROP" || d.Location == "" || d.Device == "" {
			t.Errorf("receiver host drop: %+v, want req_in → req_out NETFILTER_DROP with location and device", d)
		}
		t.Logf("receiver host seq %d: %s at %s on %s", d.Seq, d.Reason, d.Location, d.Device)
	}
	for _, d := range sS.Drops {
		if d.LastSeen != record.StageReqOut || d.FirstMissed != record.StageRepIn {
			t.Errorf("sender host drop: %+v, want req_out → rep_in", d)
		}
	}
}

// seqRange is 1..n, ping(8)'s sequence numbers.
func seqRange(n int) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(i + 1)
	}
	return out
}

func keys(m map[uint16]bool) []uint16 {
	out := make([]uint16, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
