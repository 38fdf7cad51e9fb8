package vhost

import (
	"os"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/testkit/vhostnet/vhosttest"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// TestGuestVhostNetStages pushes pings through the real vhost-net data path
// (internal/vhostnet plays QEMU: it owns /dev/vhost-net, the virtqueues and
// the kick/call eventfds, with a tap in a namespace as backend) and expects
// the vhost stages in the records: vhost-tx sees the kick (the driver's
// eventfd write waking the vhost work), handle_tx, tun_sendmsg and
// netif_receive of each echo request; vhost-rx sees tun_net_xmit, vhost
// taking the reply (tun_recvmsg), and vhost signalling the call eventfd.
// There is no KVM irqfd behind that eventfd, so s4/s5 must be absent.
func TestGuestVhostNetStages(t *testing.T) {
	testenv.GuestOnly(t, "needs /dev/vhost-net and kprobes or fentry")
	testenv.RequireRoot(t)
	probe := testenv.Probe()
	p := vhosttest.NewPeer(t)
	// The guest pings the host: requests leave the guest (vhost-tx), replies
	// enter it (vhost-rx).
	rx := startTracer(t, p.NS, p.TapName, record.ToolVhostRX, probe, p.GuestAddr, p.TapAddr)
	tx := startTracer(t, p.NS, p.TapName, record.ToolVhostTX, probe, p.GuestAddr, p.TapAddr)
	const n = 5
	var seqs []uint16
	for seq := uint16(1); seq <= n; seq++ {
		if _, err := p.Ping(seq, []byte("pingpath vhost"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		time.Sleep(20 * time.Millisecond) // the scenario: one kick per packet, not a batch
	}
	id := uint16(os.Getpid()) // the echo identifier vhosttest.Peer uses
	rx.WaitRecords(t, tracertest.HasSeqs(id, seqs...))
	tx.WaitRecords(t, tracertest.HasSeqs(id, seqs...))
	rxs, txs := rx.Stop(t), tx.Stop(t)
	t.Logf("vhost-rx probes %+v", rxs.Header.Probes)
	t.Logf("vhost-tx probes %+v", txs.Header.Probes)

	checkModuleFentry(t, probe, rxs.Header, record.StageTunXmit, "tun")
	checkModuleFentry(t, probe, txs.Header, record.StageHandleTX, "vhost_net")

	txGot := pingsBy(txs, "request", id)
	if len(txGot) != n {
		t.Fatalf("vhost-tx: %d request records, want %d (%s)", len(txGot), n, describe(txs))
	}
	for seq, p := range txGot {
		for _, s := range record.VhostTX.Stages {
			if _, ok := p.Stages[s]; !ok {
				t.Errorf("vhost-tx seq %d lacks %s: %v (extra %v)", seq, s, p.Stages, p.Extra)
			}
		}
		if tot, ok := p.Durations["total"]; !ok || tot <= 0 || tot > int64(time.Second) {
			t.Errorf("vhost-tx seq %d total %v", seq, p.Durations)
		}
	}
	if t.Failed() {
		t.Logf("vhost-tx stream:\n%s", tx.Output())
	}
	rxGot := pingsBy(rxs, "reply", id)
	if len(rxGot) != n {
		t.Fatalf("vhost-rx: %d reply records, want %d (%s)", len(rxGot), n, describe(rxs))
	}
	for seq, p := range rxGot {
		for _, s := range []string{record.StageTunXmit, record.StageVhostRecv, record.StageVhostSignal} {
			if _, ok := p.Stages[s]; !ok {
				t.Errorf("vhost-rx seq %d lacks %s: %v (extra %v)", seq, s, p.Stages, p.Extra)
			}
		}
		for _, s := range []string{record.StageIrqfd, record.StageKVMIRQ} {
			if _, ok := p.Stages[s]; ok {
				t.Errorf("vhost-rx seq %d reports %s without KVM", seq, s)
			}
		}
		if p.Durations["s2_s3"] <= 0 || p.Extra["eventfd"] == "" {
			t.Errorf("vhost-rx seq %d durations %v extra %v", seq, p.Durations, p.Extra)
		}
	}
}

// checkModuleFentry: where fentry works (some stage uses it) and module has
// BTF (/sys/kernel/btf/<module>, e.g. tun and vhost_net as modules on 6.1),
// stage, a function of that module, is observed by fentry too.
func checkModuleFentry(t *testing.T, probe string, h *record.Header, stage, module string) {
	t.Helper()
	if probe != "auto" && probe != "fentry" {
		return
	}
	if _, err := os.Stat("/sys/kernel/btf/" + module); err != nil {
		t.Logf("%s: module %s has no BTF here (%v)", stage, module, err)
		return
	}
	fentry := false
	for _, p := range h.Probes {
		fentry = fentry || p.Method == "fentry"
	}
	if p := probeOf(h, stage); fentry && p.Method != "fentry" {
		t.Errorf("%s (module %s with BTF): %s %s (%s), want fentry", stage, module, p.Method, p.Target, p.Reason)
	}
}
