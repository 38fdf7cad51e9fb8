package vhost

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testenv"
	"github.com/pingpath/pingpath/internal/vhostnet"
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
	ns := nettest.NewNetns(t, "vhg")
	tapName := nettest.UniqueName("vht")
	tapIP, guestIP := netip.MustParseAddr("10.214.0.1"), netip.MustParseAddr("10.214.0.2")
	guestMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x21, 0x43, 0x65}
	tap, err := vhostnet.OpenTap(ns.Handle(), tapName)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := vhostnet.Open(tap, vhostnet.Options{})
	if err != nil {
		tap.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	h, err := netlink.NewHandleAt(ns.Handle(), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lk, err := h.LinkByName(tapName)
	if err != nil {
		t.Fatal(err)
	}
	tapMAC := lk.Attrs().HardwareAddr
	if err := h.AddrAdd(lk, &netlink.Addr{IPNet: &net.IPNet{IP: tapIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lk); err != nil {
		t.Fatal(err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: lk.Attrs().Index, IP: guestIP.AsSlice(), HardwareAddr: guestMAC, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}

	// The guest pings the host: requests leave the guest (vhost-tx), replies
	// enter it (vhost-rx).
	rx := startTracer(t, ns, tapName, record.ToolVhostRX, probe, guestIP, tapIP)
	tx := startTracer(t, ns, tapName, record.ToolVhostTX, probe, guestIP, tapIP)
	id := uint16(os.Getpid())
	const n = 5
	for seq := uint16(1); seq <= n; seq++ {
		req := vhostnet.Echo{SrcMAC: guestMAC, DstMAC: tapMAC, Src: guestIP, Dst: tapIP, ID: id, Seq: seq, Payload: []byte("pingpath vhost")}
		if err := dev.Send(req.Frame()); err != nil {
			t.Fatal(err)
		}
		got := false
		for deadline := time.Now().Add(5 * time.Second); !got && time.Now().Before(deadline); {
			frames, err := dev.Receive(time.Until(deadline))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				e, ok := vhostnet.ParseEcho(f)
				got = got || (ok && e.Reply && e.ID == id && e.Seq == seq && bytes.Equal(e.Payload, req.Payload))
			}
		}
		if !got {
			t.Fatalf("no echo reply for seq %d", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	rxs, txs := rx.stop(t), tx.stop(t)
	t.Logf("vhost-rx probes %+v", rxs.Header.Probes)
	t.Logf("vhost-tx probes %+v", txs.Header.Probes)

	txGot := pingsBy(txs, "request", id)
	if len(txGot) != n {
		t.Fatalf("vhost-tx: %d request records, want %d (%s)", len(txGot), n, describe(txs))
	}
	for seq, p := range txGot {
		for _, s := range TXStages {
			if _, ok := p.Stages[s]; !ok {
				t.Errorf("vhost-tx seq %d lacks %s: %v (extra %v)", seq, s, p.Stages, p.Extra)
			}
		}
		if tot, ok := p.Durations["total"]; !ok || tot <= 0 || tot > int64(time.Second) {
			t.Errorf("vhost-tx seq %d total %v", seq, p.Durations)
		}
	}
	if t.Failed() {
		t.Logf("vhost-tx stream:\n%s", tx.out.String())
	}
	rxGot := pingsBy(rxs, "reply", id)
	if len(rxGot) != n {
		t.Fatalf("vhost-rx: %d reply records, want %d (%s)", len(rxGot), n, describe(rxs))
	}
	for seq, p := range rxGot {
		for _, s := range []string{StageTunXmit, StageVhostRecv, StageVhostSignal} {
			if _, ok := p.Stages[s]; !ok {
				t.Errorf("vhost-rx seq %d lacks %s: %v (extra %v)", seq, s, p.Stages, p.Extra)
			}
		}
		for _, s := range []string{StageIrqfd, StageKVMIRQ} {
			if _, ok := p.Stages[s]; ok {
				t.Errorf("vhost-rx seq %d reports %s without KVM", seq, s)
			}
		}
		if p.Durations["s2_s3"] <= 0 {
			t.Errorf("vhost-rx seq %d durations %v", seq, p.Durations)
		}
	}
}
