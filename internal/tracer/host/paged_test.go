package host

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// testPagedHeaders (TestTraceRealPackets/paged-headers, so that the kernel
// matrix runs it) sends frames larger than a page whose headers are not in
// the skb's linear part: a packet socket with PACKET_VNET_HDR and hdr_len
// 14 builds such a frame with only its Ethernet header linear and the rest
// in page fragments, as virtio-net does with a large frame (it copies the
// Ethernet header only) and drivers pulling eth_get_headlen() bytes do with
// a tunnel packet (outer headers only). Plain ICMP, VXLAN and Geneve, the
// requests entering from the wire and the replies from the VM, so host A
// is the receiver and sees every frame at ingress and at egress. The
// tracer looks the direct map up only once it met such a frame, so the
// frames are sent in rounds until one round is whole; no record may name
// another ping (a parse of the stale bytes past the linear part gave one).
// On other architectures than x86-64 such frames are only counted.
func testPagedHeaders(t *testing.T) {
	tp := newTopo(t, topoOptions{})
	for _, l := range []struct {
		ns   *nettest.Netns
		name string
	}{{tp.hostA.ns, tp.hostA.vnet}, {tp.hostA.ns, tp.hostA.phy}, {tp.hostB.ns, tp.hostB.phy}, {tp.vmA, ""}} {
		setMTUOf(t, l.ns, l.name, 9000)
	}
	src, dst := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	tr := startTracer(t, tp.hostA, Config{SrcIP: src, DstIP: dst, Timeout: 10 * time.Second})
	wire, vm := ifindex(t, tp.hostB.ns, tp.hostB.phy), ifindex(t, tp.vmA, "")
	// 6000 bytes of ICMP payload: more than a page, so the packet socket
	// puts what is not linear in page fragments.
	const id, payload = 903, 6000
	cases := []struct {
		encap string
		build func(req bool, seq uint16) []byte
	}{
		{"", func(req bool, seq uint16) []byte { return frame(nil, bigICMP(src, dst, req, id, seq, payload)) }},
		{"vxlan", func(req bool, seq uint16) []byte {
			return overlay(VXLANPort, nil, frame(nil, bigICMP(src, dst, req, id, seq, payload)))
		}},
		{"geneve", func(req bool, seq uint16) []byte {
			return overlay(GenevePort, make([]byte, 8), frame(nil, bigICMP(src, dst, req, id, seq, payload)))
		}},
	}
	if runtime.GOARCH != "amd64" {
		// Only x86-64's direct map is known: such frames are counted,
		// never matched, and never taken for another ping.
		for i, c := range cases {
			injectFrame(t, tp.hostB.ns, wire, c.build(true, uint16(i+1)), true)
			injectFrame(t, tp.vmA, vm, c.build(false, uint16(i+1)), true)
		}
		s := tr.Stop(t)
		if n := s.Trailer.Counters["paged_headers_unread"]; n == 0 || len(s.Pings) != 0 {
			t.Errorf("%s: paged_headers_unread %d and %d ping records, want some counted and none", runtime.GOARCH, n, len(s.Pings))
		}
		return
	}
	var whole []uint16
	for round := 0; round < 12 && whole == nil; round++ {
		var seqs []uint16
		for i, c := range cases {
			seq := uint16(10*round + i + 1)
			seqs = append(seqs, seq)
			injectFrame(t, tp.hostB.ns, wire, c.build(true, seq), true)
			injectFrame(t, tp.vmA, vm, c.build(false, seq), true)
		}
		// A complete ping is written at once; the first round's is not.
		// Each round waits longer (a TCG guest's tick can take seconds).
		wait := min(2*time.Second<<round, 16*time.Second)
		if tracertest.WaitRecords(t, func() []byte { return []byte(tr.Output()) }, pingRecords(id, seqs), wait) {
			whole = seqs
		}
	}
	s := tr.Stop(t)
	t.Logf("trailer: paged_headers_unread %d", s.Trailer.Counters["paged_headers_unread"])
	if whole == nil {
		t.Fatalf("no round of paged frames was traced whole: pings %+v", s.Pings)
	}
	got := map[uint16]record.Ping{}
	for _, p := range s.Pings {
		if p.ID != id {
			t.Errorf("a record of a ping never sent (stale bytes parsed?): %+v", p)
		}
		got[p.Seq] = p
	}
	for i, c := range cases {
		p := got[whole[i]]
		if p.Role != record.RoleReceiver || len(p.Stages) != 4 || p.Extra["encap"] != c.encap ||
			p.Devices[record.StageReqIn] != tp.hostA.phy || p.Devices[record.StageReqOut] != tp.hostA.vnet {
			t.Errorf("seq %d (%q): %+v, want a receiver ping, 4 stages, in on %s, out on %s", whole[i], c.encap, p, tp.hostA.phy, tp.hostA.vnet)
		}
	}
}

// pingRecords is a WaitRecords condition: a ping record of id for every seq.
func pingRecords(id uint16, seqs []uint16) func([]tracertest.Key) bool {
	return func(keys []tracertest.Key) bool {
		n := 0
		for _, s := range seqs {
			for _, k := range keys {
				if k.Type == record.TypePing && k.ID == id && k.Seq == s {
					n++
					break
				}
			}
		}
		return n == len(seqs)
	}
}

// bigICMP is ipICMP with n bytes of payload.
func bigICMP(src, dst netip.Addr, req bool, id, seq uint16, n int) []byte {
	icmp := make([]byte, 8+n)
	nettestEcho(icmp, id, seq)
	if !req {
		icmp[0], icmp[2], icmp[3] = 0, 0, 0
		c := csum(icmp)
		icmp[2], icmp[3] = byte(c>>8), byte(c)
		src, dst = dst, src
	}
	return ipv4(src, dst, 1, 0, icmp)
}

// setMTUOf sets the MTU of name in ns (the namespace's one veth when name
// is empty).
func setMTUOf(t *testing.T, ns *nettest.Netns, name string, mtu int) {
	t.Helper()
	idx := 0
	if name == "" {
		idx = ifindex(t, ns, "")
	}
	err := ns.Do(func() error {
		var l netlink.Link
		var err error
		if idx != 0 {
			l, err = netlink.LinkByIndex(idx)
		} else {
			l, err = netlink.LinkByName(name)
		}
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, mtu)
	})
	if err != nil {
		t.Fatalf("setting the MTU of %q in %s: %v", name, ns.Name, err)
	}
}
