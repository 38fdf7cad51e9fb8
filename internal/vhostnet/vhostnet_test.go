package vhostnet

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/testenv"
)

// TestGuestVhostNetPing pushes ICMP echo requests from our rings through
// vhost-net into a tap inside a namespace, whose kernel answers; the replies
// travel tap → vhost → our RX ring. Kprobe counters prove the kernel paths
// the vhost tracers watch really ran.
func TestGuestVhostNetPing(t *testing.T) {
	testenv.GuestOnly(t, "needs /dev/vhost-net and kprobes")
	testenv.RequireRoot(t)

	counters := attachCounters(t, map[string][]string{
		"tun_net_xmit": {"tun_net_xmit"},
		"handle_rx":    {"handle_rx"},
		"vhost_signal": {"vhost_signal"},
		// eventfd_signal became an inline wrapper of eventfd_signal_mask in 6.8.
		"eventfd_signal": {"eventfd_signal", "eventfd_signal_mask"},
		"handle_tx":      {"handle_tx"},
		"tun_sendmsg":    {"tun_sendmsg"},
	})

	p := NewPeer(t)
	const pings = 3
	for seq := uint16(1); seq <= pings; seq++ {
		reply, err := p.Ping(seq, []byte("pingpath vhostnet"), 5*time.Second)
		if err != nil {
			t.Fatalf("ping seq %d: %v", seq, err)
		}
		if reply.Src != p.TapAddr || reply.Dst != p.GuestAddr || !bytes.Equal(reply.DstMAC, p.GuestMAC) {
			t.Errorf("seq %d: reply %s→%s to %s, want %s→%s to %s", seq, reply.Src, reply.Dst, reply.DstMAC, p.TapAddr, p.GuestAddr, p.GuestMAC)
		}
	}
	if err := p.Dev.WaitSent(2 * time.Second); err != nil {
		t.Error(err)
	}
	for name, c := range counters {
		n := c.count(t)
		t.Logf("%s (%s): %d calls", name, c.symbol, n)
		if n == 0 {
			t.Errorf("%s (%s) never ran: the vhost path was not exercised", name, c.symbol)
		}
	}
}

// Peer is a test fixture: a namespace holding a tap (TapAddr) that is the
// backend of a vhost-net Device playing a guest NIC (GuestMAC, GuestAddr).
// The namespace has a permanent neighbour entry for the guest, so no ARP is
// needed before the first reply.
type Peer struct {
	NS        *nettest.Netns
	TapName   string
	Dev       *Device
	TapAddr   netip.Addr
	GuestAddr netip.Addr
	GuestMAC  net.HardwareAddr
	TapMAC    net.HardwareAddr
	id        uint16
}

// NewPeer builds the fixture and removes it at cleanup.
func NewPeer(t testing.TB) *Peer {
	t.Helper()
	ns := nettest.NewNetns(t, "vhn")
	p := &Peer{
		NS:        ns,
		TapName:   nettest.UniqueName("vht"),
		TapAddr:   netip.MustParseAddr("10.213.0.1"),
		GuestAddr: netip.MustParseAddr("10.213.0.2"),
		GuestMAC:  net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		id:        uint16(os.Getpid()),
	}
	tap, err := OpenTap(ns.Handle(), p.TapName)
	if err != nil {
		t.Fatal(err)
	}
	p.Dev, err = Open(tap, Options{})
	if err != nil {
		tap.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Dev.Close() })
	// Only NETLINK_ROUTE: the guest kernels have xfrm_user as a module that is
	// not loaded, and NewHandleAt asks for every family by default.
	h, err := netlink.NewHandleAt(ns.Handle(), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(p.TapName)
	if err != nil {
		t.Fatalf("finding tap %s: %v", p.TapName, err)
	}
	p.TapMAC = l.Attrs().HardwareAddr
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.TapAddr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("adding %s to %s: %v", addr, p.TapName, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("setting %s up: %v", p.TapName, err)
	}
	neigh := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: p.GuestAddr.AsSlice(), HardwareAddr: p.GuestMAC, State: netlink.NUD_PERMANENT}
	if err := h.NeighAdd(neigh); err != nil {
		t.Fatalf("adding neighbour %s: %v", p.GuestAddr, err)
	}
	return p
}

// Ping sends one echo request from the guest side and waits for its reply,
// skipping other frames (IPv6 neighbour discovery and the like).
func (p *Peer) Ping(seq uint16, payload []byte, timeout time.Duration) (Echo, error) {
	req := Echo{SrcMAC: p.GuestMAC, DstMAC: p.TapMAC, Src: p.GuestAddr, Dst: p.TapAddr, ID: p.id, Seq: seq, Payload: payload}
	if err := p.Dev.Send(req.Frame()); err != nil {
		return Echo{}, err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		frames, err := p.Dev.Receive(time.Until(deadline))
		if err != nil {
			return Echo{}, err
		}
		for _, f := range frames {
			if e, ok := ParseEcho(f); ok && e.Reply && e.ID == p.id && e.Seq == seq {
				if !bytes.Equal(e.Payload, payload) {
					return e, fmt.Errorf("reply payload %q, want %q", e.Payload, payload)
				}
				return e, nil
			}
		}
	}
	return Echo{}, fmt.Errorf("no echo reply id %d seq %d within %s", p.id, seq, timeout)
}

// counter is a kprobe that counts calls of one kernel function.
type counter struct {
	symbol string
	m      *ebpf.Map
}

func (c *counter) count(t *testing.T) uint64 {
	var v uint64
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		t.Fatalf("reading the %s counter: %v", c.symbol, err)
	}
	return v
}

// attachCounters attaches a counting kprobe per name, on the first of its
// candidate symbols the running kernel has.
func attachCounters(t *testing.T, candidates map[string][]string) map[string]*counter {
	t.Helper()
	syms, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	have := func(sym string) bool {
		return strings.Contains(string(syms), " "+sym+"\n") || strings.Contains(string(syms), " "+sym+"\t")
	}
	out := map[string]*counter{}
	for name, cands := range candidates {
		sym := ""
		for _, c := range cands {
			if have(c) {
				sym = c
				break
			}
		}
		if sym == "" {
			t.Fatalf("kernel has none of %v", cands)
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err != nil {
			t.Fatalf("creating the %s counter map: %v", sym, err)
		}
		t.Cleanup(func() { m.Close() })
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "vhn_count", Type: ebpf.Kprobe, License: "GPL",
			Instructions: asm.Instructions{
				asm.StoreImm(asm.RFP, -4, 0, asm.Word),
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -4),
				asm.FnMapLookupElem.Call(),
				asm.JEq.Imm(asm.R0, 0, "out"),
				asm.Mov.Imm(asm.R1, 1),
				asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
				asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
				asm.Return(),
			},
		})
		if err != nil {
			t.Fatalf("loading the %s counter: %v", sym, err)
		}
		t.Cleanup(func() { prog.Close() })
		l, err := link.Kprobe(sym, prog, nil)
		if err != nil {
			t.Fatalf("attaching kprobe %s: %v", sym, err)
		}
		t.Cleanup(func() { l.Close() })
		out[name] = &counter{symbol: sym, m: m}
	}
	return out
}
