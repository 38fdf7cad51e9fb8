package vhost

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/lab/tapbackend"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// tapLink is the lab's tap VM link in miniature, built with netlink so that
// it also runs in the kernel-matrix guest: a "host" namespace with the vnet
// TAP device, a "vm" namespace with the guest's eth0 TAP device, and this
// test process relaying frames between the two descriptors like QEMU's user
// space virtio backend (tapbackend, shared with the lab). Packets toward
// the guest go tun_net_xmit(vnet) → backend read; packets from the guest
// go backend write(vnet fd) → tun_get_user → netif_receive_skb(vnet).
type tapLink struct {
	host, vm       *nettest.Netns
	vnet           string
	hostIP, vmIP   netip.Addr
	backend        *tapbackend.Backend
	hostTap, vmTap *os.File
}

func newTapLink(t testing.TB) *tapLink {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := os.Stat("/dev/net/tun")
	testenv.Require(t, err == nil, "needs /dev/net/tun")
	l := &tapLink{host: nettest.NewNetns(t, "vhh"), vm: nettest.NewNetns(t, "vhv"),
		vnet: nettest.UniqueName("vnet"), hostIP: netip.MustParseAddr("198.18.77.1"), vmIP: netip.MustParseAddr("198.18.77.2")}
	l.hostTap = l.makeTap(t, l.host, l.vnet, l.hostIP)
	l.vmTap = l.makeTap(t, l.vm, "eth0", l.vmIP)
	l.backend = &tapbackend.Backend{VM: int(l.vmTap.Fd()), Host: int(l.hostTap.Fd())}
	done := make(chan struct{})
	go func() {
		_ = l.backend.Run()
		close(done)
	}()
	t.Cleanup(func() {
		// Deleting the devices wakes the backend's blocked reads.
		for _, d := range []struct {
			ns   *nettest.Netns
			name string
		}{{l.host, l.vnet}, {l.vm, "eth0"}} {
			_ = d.ns.Do(func() error {
				lk, err := netlink.LinkByName(d.name)
				if err != nil {
					return err
				}
				return netlink.LinkDel(lk)
			})
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("tap backend did not stop")
		}
		l.hostTap.Close()
		l.vmTap.Close()
	})
	return l
}

func (l *tapLink) makeTap(t testing.TB, ns *nettest.Netns, name string, ip netip.Addr) *os.File {
	t.Helper()
	var f *os.File
	err := ns.Do(func() error {
		var err error
		if f, err = tapbackend.Create(name); err != nil {
			return err
		}
		lk, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		addr, err := netlink.ParseAddr(ip.String() + "/24")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(lk, addr); err != nil {
			return err
		}
		return netlink.LinkSetUp(lk)
	})
	if err != nil {
		t.Fatalf("creating tap %s in %s: %v", name, ns.Name, err)
	}
	return f
}

// startTracer runs tool on iface in namespace ns (as `ip netns exec NS
// pingpath trace ...` would) and waits for its ready line.
func startTracer(t testing.TB, ns *nettest.Netns, iface, tool, probe string, src, dst netip.Addr) *tracertest.Tracer {
	t.Helper()
	return tracertest.Start(t, ns.Name+" "+tool, ns.Do, func() (tracer.Tool, error) {
		return New(Config{Tool: tool, Interface: iface, SrcIP: src, DstIP: dst, BTF: testenv.BTF()})
	}, tracer.Options{Probe: probe})
}

func probeOf(h *record.Header, stage string) record.Probe {
	for _, p := range h.Probes {
		if p.Stage == stage {
			return p
		}
	}
	return record.Probe{Stage: stage, Reason: "not in header"}
}

func pingsBy(s *record.Stream, role string, id uint16) map[uint16]record.Ping {
	out := map[uint16]record.Ping{}
	for _, p := range s.Pings {
		if p.Role == role && p.ID == id {
			out[p.Seq] = p
		}
	}
	return out
}

func describe(s *record.Stream) string {
	return fmt.Sprintf("%d pings, %d drops, trailer %+v", len(s.Pings), len(s.Drops), s.Trailer)
}
