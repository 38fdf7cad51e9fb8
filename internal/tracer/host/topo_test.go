package host

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// The real-packet tests build the four-machine picture of the brief out of
// network namespaces, with netlink only (they also run in the kernel-matrix
// guest, which has no iproute2):
//
//	vmA ──veth── hostA [br: vnet, phy] ──wire veth── hostB [br: phy, vnet] ──veth── vmB
//
// With encap "vxlan" the bridges hold the vnet and a VXLAN device over an
// underlay address on the wire instead of the wire itself, so the physical
// devices carry VXLAN. With vlan != 0 the VMs talk over 802.1Q
// sub-interfaces, so tagged frames cross both hosts.

var (
	vmAAddr = netip.MustParsePrefix("10.77.0.1/24")
	vmBAddr = netip.MustParsePrefix("10.77.0.2/24")
	ulAAddr = netip.MustParsePrefix("192.168.77.1/24") // VXLAN underlay, hostA
	ulBAddr = netip.MustParsePrefix("192.168.77.2/24")
)

type topoOptions struct {
	encap string // "" or "vxlan"
	vlan  int
	// wireMTU, when set, is the MTU of the wire veth's ends: below the
	// VXLAN packets' size the hosts fragment them (the VXLAN device stays
	// at 1450 and sets no DF on the outer header).
	wireMTU int
}

type testHost struct {
	ns        *nettest.Netns
	vnet, phy string // the tracer's --vm-interface and --phy-interface
}

type topo struct {
	vmA, vmB     *nettest.Netns
	hostA, hostB testHost
	src, dst     netip.Addr
}

func newTopo(t testing.TB, o topoOptions) *topo {
	t.Helper()
	testenv.RequireRoot(t)
	tp := &topo{
		vmA: nettest.NewNetns(t, "vmA"), vmB: nettest.NewNetns(t, "vmB"),
		src: vmAAddr.Addr(), dst: vmBAddr.Addr(),
	}
	tp.hostA.ns, tp.hostB.ns = nettest.NewNetns(t, "hsA"), nettest.NewNetns(t, "hsB")
	vmAddrA, vmAddrB := vmAAddr, vmBAddr
	if o.vlan != 0 {
		vmAddrA, vmAddrB = netip.Prefix{}, netip.Prefix{}
	}
	a, vnetA := nettest.Veth(t, tp.vmA, vmAddrA, tp.hostA.ns, netip.Prefix{})
	b, vnetB := nettest.Veth(t, tp.vmB, vmAddrB, tp.hostB.ns, netip.Prefix{})
	tp.hostA.vnet, tp.hostB.vnet = vnetA.Name, vnetB.Name
	if o.vlan != 0 {
		addVLAN(t, a, vmAAddr, o.vlan)
		addVLAN(t, b, vmBAddr, o.vlan)
	}
	var ulA, ulB netip.Prefix
	if o.encap == "vxlan" {
		ulA, ulB = ulAAddr, ulBAddr
	}
	wA, wB := nettest.Veth(t, tp.hostA.ns, ulA, tp.hostB.ns, ulB)
	tp.hostA.phy, tp.hostB.phy = wA.Name, wB.Name
	if o.wireMTU != 0 {
		setMTU(t, wA, o.wireMTU)
		setMTU(t, wB, o.wireMTU)
	}
	bridge(t, tp.hostA.ns, vnetA, wA, o, ulA, ulB)
	bridge(t, tp.hostB.ns, vnetB, wB, o, ulB, ulA)
	return tp
}

// addVLAN puts addr on a VLAN sub-interface of l (in the VM namespace).
func addVLAN(t testing.TB, l *nettest.Link, addr netip.Prefix, vid int) {
	t.Helper()
	err := l.NS.Do(func() error {
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("vl%d", vid), ParentIndex: l.Index}, VlanId: vid}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("creating vlan: %w", err)
		}
		a, err := netlink.ParseAddr(addr.String())
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(v, a); err != nil {
			return err
		}
		return netlink.LinkSetUp(v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bridge joins vnet and the physical side in ns: the wire itself, or a VXLAN
// device over it.
func bridge(t testing.TB, ns *nettest.Netns, vnet, wire *nettest.Link, o topoOptions, local, remote netip.Prefix) {
	t.Helper()
	err := ns.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("creating bridge: %w", err)
		}
		members := []netlink.Link{}
		for _, name := range []string{vnet.Name} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			members = append(members, l)
		}
		switch o.encap {
		case "":
			l, err := netlink.LinkByName(wire.Name)
			if err != nil {
				return err
			}
			members = append(members, l)
		case "vxlan":
			vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0", MTU: 1450}, VxlanId: 42,
				VtepDevIndex: wire.Index, SrcAddr: net.IP(local.Addr().AsSlice()),
				Group: net.IP(remote.Addr().AsSlice()), Port: VXLANPort, Learning: true}
			if o.wireMTU != 0 {
				// Bound to its underlay device, the VXLAN device's MTU
				// is capped at the underlay's minus the overhead: it
				// would refuse the inner packets instead of the
				// kernel fragmenting the outer ones.
				vx.VtepDevIndex = 0
			}
			if err := netlink.LinkAdd(vx); err != nil {
				return fmt.Errorf("creating vxlan: %w", err)
			}
			members = append(members, vx)
		}
		for _, m := range members {
			if err := netlink.LinkSetMaster(m, br); err != nil {
				return fmt.Errorf("adding %s to bridge: %w", m.Attrs().Name, err)
			}
			if err := netlink.LinkSetUp(m); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// setMTU sets the MTU of l.
func setMTU(t testing.TB, l *nettest.Link, mtu int) {
	t.Helper()
	err := l.NS.Do(func() error {
		link, err := netlink.LinkByName(l.Name)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(link, mtu)
	})
	if err != nil {
		t.Fatalf("setting the MTU of %s: %v", l.Name, err)
	}
}

// setLink sets a link of ns up or down.
func setLink(t testing.TB, ns *nettest.Netns, name string, up bool) {
	t.Helper()
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(l)
		}
		return netlink.LinkSetDown(l)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// unbridge takes a link of ns out of its bridge (it stays up).
func unbridge(t testing.TB, ns *nettest.Netns, name string) {
	t.Helper()
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		return netlink.LinkSetNoMaster(l)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startTracer runs the host tracer in h's namespace (on a locked thread, as
// the real binary would run there) and waits for its ready line.
func startTracer(t testing.TB, h testHost, cfg Config) *tracertest.Tracer {
	t.Helper()
	return startTracerOpts(t, h, cfg, tracer.Options{})
}

// startTracerOpts is startTracer with tracer options (the probe rung is
// the test's).
func startTracerOpts(t testing.TB, h testHost, cfg Config, opts tracer.Options) *tracertest.Tracer {
	t.Helper()
	if len(cfg.VMInterfaces) == 0 {
		cfg.VMInterfaces = []string{h.vnet}
	}
	if len(cfg.PhyInterfaces) == 0 {
		cfg.PhyInterfaces = []string{h.phy}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	opts.Probe = testenv.Probe()
	return tracertest.Start(t, h.ns.Name, h.ns.Do, func() (tracer.Tool, error) { return New(cfg) }, opts)
}

// startTracerIn runs the host tracer through do, which runs a function on a
// thread inside the host's network namespace.
func startTracerIn(t testing.TB, where string, do func(func() error) error, cfg Config) *tracertest.Tracer {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	return tracertest.Start(t, where, do, func() (tracer.Tool, error) { return New(cfg) },
		tracer.Options{Probe: testenv.Probe()})
}

// pingAll pings dst from vm and fails unless every reply came back.
func pingAll(t testing.TB, vm *nettest.Netns, dst netip.Addr, id uint16, count int) {
	t.Helper()
	res := ping(t, vm, dst, id, count, time.Second)
	if len(res.Lost) != 0 {
		t.Fatalf("ping lost %v", res.Lost)
	}
}

func ping(t testing.TB, vm *nettest.Netns, dst netip.Addr, id uint16, count int, wait time.Duration) *nettest.PingResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := vm.Ping(ctx, nettest.PingOptions{Dst: dst, ID: id, FirstSeq: 1, Count: count, Interval: 20 * time.Millisecond, Wait: wait})
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	return res
}

func nettestPing(dst netip.Addr, id uint16, count int) nettest.PingOptions {
	return nettest.PingOptions{Dst: dst, ID: id, FirstSeq: 1, Count: count, Interval: 20 * time.Millisecond, Wait: 200 * time.Millisecond}
}

func netInterfaces() ([]net.Interface, error) { return net.Interfaces() }

// nettestEcho fills an echo request the way nettest's pinger does.
func nettestEcho(pkt []byte, id, seq uint16) { nettest.EchoRequest(pkt, id, seq) }
