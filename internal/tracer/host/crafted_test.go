package host

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// TestTraceCraftedFrames sends hand-built frames through a real bridge
// (AF_PACKET injection into the veths on both sides of host A), for the
// encodings this kernel cannot produce with its own devices: in-band 802.1Q
// and 802.1ad tags, Geneve with options, VXLAN carrying a tagged inner frame.
// Each case is an echo request entering from the wire and its reply entering
// from the VM side, so host A is the receiver. Frames that must not match
// (other addresses inside the tunnel, another UDP port, a non-first
// fragment, an unknown Geneve payload) are sent too.
func TestTraceCraftedFrames(t *testing.T) {
	testenv.RequireRoot(t)
	tp := newTopo(t, topoOptions{})
	src, dst := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	// A long --timeout: under load the test may inject a reply later than
	// the default would wait for it.
	tr := startTracer(t, tp.hostA, Config{SrcIP: src, DstIP: dst, Timeout: 10 * time.Second})
	wire, vm := ifindex(t, tp.hostB.ns, tp.hostB.phy), ifindex(t, tp.vmA, "")

	const id = 900
	cases := []struct {
		seq   uint16
		encap string
		build func(req bool, seq uint16) []byte
	}{
		{1, "", func(req bool, seq uint16) []byte { return frame(nil, ipICMP(src, dst, req, id, seq, 0)) }},
		{2, "vlan", func(req bool, seq uint16) []byte { return frame([]uint16{0x8100}, ipICMP(src, dst, req, id, seq, 0)) }},
		{3, "vlan", func(req bool, seq uint16) []byte {
			return frame([]uint16{0x88a8, 0x8100}, ipICMP(src, dst, req, id, seq, 0))
		}},
		{4, "vlan+vxlan", func(req bool, seq uint16) []byte {
			return overlay(VXLANPort, nil, frame([]uint16{0x8100}, ipICMP(src, dst, req, id, seq, 0)))
		}},
		{5, "geneve", func(req bool, seq uint16) []byte {
			return overlay(GenevePort, make([]byte, 8), frame(nil, ipICMP(src, dst, req, id, seq, 0)))
		}},
	}
	other := netip.MustParseAddr("10.88.0.9")
	noise := [][]byte{
		overlay(VXLANPort, nil, frame(nil, ipICMP(other, dst, true, id, 50, 0))),
		overlay(4790, nil, frame(nil, ipICMP(src, dst, true, id, 51, 0))),
		frame(nil, ipICMP(src, dst, true, id, 52, 185)), // fragment offset ≠ 0
		overlayProto(0x0800, frame(nil, ipICMP(src, dst, true, id, 53, 0))),
	}
	// The noise first, then the cases: once the cases' records are written
	// the noise has been through the hooks too, and gave no record.
	for _, f := range noise {
		inject(t, tp.hostB.ns, wire, f)
	}
	for _, c := range cases {
		inject(t, tp.hostB.ns, wire, c.build(true, c.seq))
		inject(t, tp.vmA, vm, c.build(false, c.seq))
	}
	tr.WaitPings(t, len(cases), tracertest.RecordTimeout)
	s := tr.Stop(t)
	got := map[uint16]record.Ping{}
	for _, p := range s.Pings {
		got[p.Seq] = p
	}
	for _, c := range cases {
		p, ok := got[c.seq]
		if !ok {
			t.Errorf("seq %d (%s): no record", c.seq, c.encap)
			continue
		}
		if p.Role != record.RoleReceiver || len(p.Stages) != 4 || p.Extra["encap"] != c.encap {
			t.Errorf("seq %d: role %s stages %v extra %v, want receiver, 4 stages, encap %q", c.seq, p.Role, p.Stages, p.Extra, c.encap)
		}
		if p.Devices[record.StageReqIn] != tp.hostA.phy || p.Devices[record.StageReqOut] != tp.hostA.vnet {
			t.Errorf("seq %d: devices %v", c.seq, p.Devices)
		}
	}
	if len(s.Pings) != len(cases) || len(s.Drops) != 0 {
		t.Errorf("got %d pings %d drops, want %d/0: %+v %+v", len(s.Pings), len(s.Drops), len(cases), s.Pings, s.Drops)
	}
}

// ifindex returns the index of name in ns, or of the first veth when name
// is empty (a VM namespace has one).
func ifindex(t *testing.T, ns *nettest.Netns, name string) int {
	t.Helper()
	var idx int
	err := ns.Do(func() error {
		ifs, err := netInterfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			if (name == "" && i.Name != "lo") || i.Name == name {
				idx = i.Index
				return nil
			}
		}
		return fmt.Errorf("interface %q not found", name)
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// inject sends one raw frame out of ifindex in ns.
func inject(t *testing.T, ns *nettest.Netns, ifindex int, frame []byte) {
	t.Helper()
	injectFrame(t, ns, ifindex, frame, false)
}

// injectFrame sends one raw frame out of ifindex in ns; with ethOnly, only
// its Ethernet header goes into the skb's linear part (PACKET_VNET_HDR with
// hdr_len 14: packet_snd puts the rest of a frame larger than a page in
// page fragments).
func injectFrame(t *testing.T, ns *nettest.Netns, ifindex int, frame []byte, ethOnly bool) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("opening packet socket: %w", err)
		}
		defer unix.Close(fd)
		if ethOnly {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return fmt.Errorf("setting PACKET_VNET_HDR: %w", err)
			}
			// struct virtio_net_hdr: flags, gso_type, hdr_len (little
			// endian), gso_size, csum_start, csum_offset.
			frame = append([]byte{0, 0, 14, 0, 0, 0, 0, 0, 0, 0}, frame...)
		}
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6})
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	macWire = []byte{0x02, 0x00, 0x00, 0x00, 0x88, 0x01} // the remote VM, behind the wire
	macVM   = []byte{0x02, 0x00, 0x00, 0x00, 0x88, 0x02} // the local VM
)

// frame builds an Ethernet frame around an IPv4 packet with the given tag
// protocols (outermost first). Requests go wire → VM, replies VM → wire.
func frame(tags []uint16, ip []byte) []byte {
	if ip[19] == 0x02 { // destination 10.88.0.2: a request, towards the VM
		return frameMAC(macVM, macWire, tags, ip)
	}
	return frameMAC(macWire, macVM, tags, ip)
}

func frameMAC(dst, src []byte, tags []uint16, ip []byte) []byte {
	b := append(append([]byte{}, dst...), src...)
	for i, tpid := range tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	return append(b, ip...)
}

// ipICMP builds an IPv4 echo request (src→dst) or reply (dst→src).
func ipICMP(src, dst netip.Addr, req bool, id, seq uint16, fragOff uint16) []byte {
	icmp := make([]byte, 8+32)
	nettestEcho(icmp, id, seq)
	if !req {
		icmp[0] = 0
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], csum(icmp))
		src, dst = dst, src
	}
	return ipv4(src, dst, 1, fragOff, icmp)
}

func ipv4(src, dst netip.Addr, proto byte, fragOff uint16, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[6:], fragOff)
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return append(h, payload...)
}

// overlay wraps an inner Ethernet frame in outer Ethernet/IPv4/UDP and a
// VXLAN header (port 4789 and others) or a Geneve header with opts.
func overlay(port uint16, genevOpts []byte, inner []byte) []byte {
	var tun []byte
	if port == GenevePort {
		tun = []byte{byte(len(genevOpts) / 4), 0, 0x65, 0x58, 0, 0, 42, 0}
		tun = append(tun, genevOpts...)
	} else {
		tun = []byte{0x08, 0, 0, 0, 0, 0, 42, 0}
	}
	return udpFrame(port, append(tun, inner...), inner)
}

// overlayProto is a Geneve packet whose payload protocol is not Ethernet.
func overlayProto(proto uint16, inner []byte) []byte {
	tun := []byte{0, 0, byte(proto >> 8), byte(proto), 0, 0, 42, 0}
	return udpFrame(GenevePort, append(tun, inner...), inner)
}

func udpFrame(port uint16, payload, inner []byte) []byte {
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	ip := ipv4(netip.MustParseAddr("192.168.88.1"), netip.MustParseAddr("192.168.88.2"), 17, 0, append(udp, payload...))
	// The outer frame goes the way the inner one goes.
	b := append([]byte{}, inner[:12]...)
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	return append(b, ip...)
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestTraceReplyOnOtherPhy gives host A a second physical port (a bond
// slave, say) and returns the reply through it: the sender host's ping is
// complete, with rep_in on the second port. The request, flooded by the
// bridge to both ports, is counted once.
func TestTraceReplyOnOtherPhy(t *testing.T) {
	testenv.RequireRoot(t)
	tp := newTopo(t, topoOptions{})
	sw := nettest.NewNetns(t, "sw")
	p2, p2peer := nettest.Veth(t, tp.hostA.ns, netip.Prefix{}, sw, netip.Prefix{})
	err := tp.hostA.ns.Do(func() error {
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		l, err := netlink.LinkByName(p2.Name)
		if err != nil {
			return err
		}
		return netlink.LinkSetMaster(l, br)
	})
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	tr := startTracer(t, tp.hostA, Config{SrcIP: src, DstIP: dst, PhyInterfaces: []string{tp.hostA.phy, p2.Name}, Timeout: 10 * time.Second})
	macSender := []byte{0x02, 0, 0, 0, 0x89, 1}
	macUnknown := []byte{0x02, 0, 0, 0, 0x89, 2}
	vm := ifindex(t, tp.vmA, "")
	inject(t, tp.vmA, vm, frameMAC(macUnknown, macSender, nil, ipICMP(src, dst, true, 901, 1, 0)))
	time.Sleep(20 * time.Millisecond) // the scenario: the request is flooded before the reply comes
	inject(t, sw, p2peer.Index, frameMAC(macSender, macUnknown, nil, ipICMP(src, dst, false, 901, 1, 0)))
	tr.WaitPings(t, 1, 10*time.Second)
	s := tr.Stop(t)
	if len(s.Pings) != 1 || len(s.Drops) != 0 {
		t.Fatalf("got %d pings %d drops, want 1/0: %+v", len(s.Pings), len(s.Drops), s.Pings)
	}
	p := s.Pings[0]
	if p.Role != record.RoleSender || len(p.Stages) != 4 || p.Devices[record.StageRepIn] != p2.Name || p.Devices[record.StageReqIn] != tp.hostA.vnet {
		t.Errorf("ping %+v", p)
	}
	if s.Trailer.Counters["duplicate_stages"] != 1 {
		t.Errorf("duplicate_stages = %d, want 1 (request flooded to both ports)", s.Trailer.Counters["duplicate_stages"])
	}
}
