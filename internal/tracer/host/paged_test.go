package host

import (
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
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
// tracer looks the direct map up while it starts, so the first round is
// normally whole; under load the lookup may outlast the start, so the
// frames are sent in rounds until one round is whole, and every crossing
// left unread must be explained by a warning. No record may name another
// ping (a parse of the stale bytes past the linear part gave one). On
// other architectures than x86-64 such frames are only counted, and
// warned of.
func testPagedHeaders(t *testing.T) {
	pt := newPagedTopo(t, nil)
	if runtime.GOARCH != "amd64" {
		// Only x86-64's direct map is known: such frames are counted,
		// never matched, never taken for another ping, and warned of.
		pt.sendRound(t, 1)
		s := pt.tr.Stop(t)
		if n := s.Trailer.Counters["paged_headers_unread"]; n == 0 || len(s.Pings) != 0 {
			t.Errorf("%s: paged_headers_unread %d and %d ping records, want some counted and none", runtime.GOARCH, n, len(s.Pings))
		}
		checkPagedWarning(t, pt.tr, s, "only x86-64's direct map is known")
		return
	}
	var whole []uint16
	round := 0
	for ; round < 12 && whole == nil; round++ {
		seqs := pt.sendRound(t, uint16(10*round+1))
		// A complete ping is written at once. Each round waits longer (a
		// TCG guest's tick can take seconds).
		wait := min(2*time.Second<<round, 16*time.Second)
		if tracertest.WaitRecords(t, func() []byte { return []byte(pt.tr.Output()) }, pingRecords(pagedID, seqs), wait) {
			whole = seqs
		}
	}
	s := pt.tr.Stop(t)
	unread := s.Trailer.Counters["paged_headers_unread"]
	t.Logf("round %d whole; trailer: paged_headers_unread %d", round, unread)
	if whole == nil {
		t.Fatalf("no round of paged frames was traced whole: pings %+v", s.Pings)
	}
	if unread > 0 {
		// The lookup outlasted the start (dmReadyWait): said so.
		checkPagedWarning(t, pt.tr, s, "lookup of the kernel's direct map")
	} else if len(s.Warnings) != 0 {
		t.Errorf("warnings %+v with every paged frame read", s.Warnings)
	}
	got := map[uint16]record.Ping{}
	for _, p := range s.Pings {
		if p.ID != pagedID {
			t.Errorf("a record of a ping never sent (stale bytes parsed?): %+v", p)
		}
		got[p.Seq] = p
	}
	for i, c := range pt.cases {
		p := got[whole[i]]
		if p.Role != record.RoleReceiver || len(p.Stages) != 4 || p.Extra["encap"] != c.encap ||
			p.Devices[record.StageReqIn] != pt.tp.hostA.phy || p.Devices[record.StageReqOut] != pt.tp.hostA.vnet {
			t.Errorf("seq %d (%q): %+v, want a receiver ping, 4 stages, in on %s, out on %s", whole[i], c.encap, p, pt.tp.hostA.phy, pt.tp.hostA.vnet)
		}
	}
}

// testPagedHeadersUnreadable (TestTraceRealPackets/paged-headers-unreadable)
// is testPagedHeaders on a machine whose direct map cannot be found (the
// lookup fails, as when /proc/kallsyms hides the addresses): the tracer
// says so while it runs, as soon as such a frame came, on stderr and in a
// warning record, and counts the frames in the trailer.
func testPagedHeadersUnreadable(t *testing.T) {
	const why = "finding the kernel's direct map: the test hides it"
	pt := newPagedTopo(t, func() (uint64, uint64, bool, error) { return 0, 0, false, errors.New(why) })
	pt.sendRound(t, 1)
	// The warning comes with a tick while the tracer runs, not at its end.
	deadline := time.Now().Add(tracertest.RecordTimeout)
	for !strings.Contains(pt.tr.Output(), `"type":"warning"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(pt.tr.Output(), `"type":"warning"`) {
		t.Errorf("no warning record %s after the paged frames", tracertest.RecordTimeout)
	}
	s := pt.tr.Stop(t)
	if n := s.Trailer.Counters["paged_headers_unread"]; n < uint64(2*len(pt.cases)) {
		t.Errorf("paged_headers_unread %d, want at least %d (every frame at ingress and egress)", n, 2*len(pt.cases))
	}
	for _, p := range s.Pings {
		if p.ID != pagedID || len(p.Stages) == len(record.Host.Stages) {
			t.Errorf("%+v: want no record of another ping and none whole", p)
		}
	}
	checkPagedWarning(t, pt.tr, s, why)
}

// checkPagedWarning wants exactly one paged-headers warning in s, naming
// the trailer counter and saying want, and its stderr line.
func checkPagedWarning(t *testing.T, tr *tracertest.Tracer, s *record.Stream, want string) {
	t.Helper()
	for _, w := range s.Warnings {
		t.Logf("warning %s: %s", w.Code, w.Message)
	}
	if len(s.Warnings) != 1 || s.Warnings[0].Code != record.WarnPagedHeaders ||
		!strings.Contains(s.Warnings[0].Message, want) || !strings.Contains(s.Warnings[0].Message, "paged_headers_unread") {
		t.Errorf("warnings %+v, want one %q warning saying %q", s.Warnings, record.WarnPagedHeaders, want)
	}
	if !tr.StderrContains("warning tool=host code=" + record.WarnPagedHeaders + ": ") {
		t.Errorf("no stderr line for the warning")
	}
}

// pagedID is the ICMP id of the paged frames.
const pagedID = 903

// pagedTopo is testPagedHeaders' topology, with the tracer on host A.
type pagedTopo struct {
	tp       *topo
	tr       *tracertest.Tracer
	wire, vm int
	cases    []pagedCase
}

type pagedCase struct {
	encap string
	build func(req bool, seq uint16) []byte
}

// newPagedTopo builds the topology with MTU 9000 and starts the tracer on
// host A, whose direct-map lookup is lookup when not nil.
func newPagedTopo(t *testing.T, lookup func() (uint64, uint64, bool, error)) *pagedTopo {
	tp := newTopo(t, topoOptions{})
	for _, l := range []struct {
		ns   *nettest.Netns
		name string
	}{{tp.hostA.ns, tp.hostA.vnet}, {tp.hostA.ns, tp.hostA.phy}, {tp.hostB.ns, tp.hostB.phy}, {tp.vmA, ""}} {
		setMTUOf(t, l.ns, l.name, 9000)
	}
	src, dst := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	cfg := Config{SrcIP: src, DstIP: dst, Timeout: 10 * time.Second,
		VMInterfaces: []string{tp.hostA.vnet}, PhyInterfaces: []string{tp.hostA.phy}}
	tr := tracertest.Start(t, tp.hostA.ns.Name, tp.hostA.ns.Do, func() (tracer.Tool, error) {
		tool, err := New(cfg)
		if err == nil && lookup != nil {
			tool.dmLookup = lookup
		}
		return tool, err
	}, tracer.Options{Probe: testenv.Probe()})
	// 6000 bytes of ICMP payload: more than a page, so the packet socket
	// puts what is not linear in page fragments.
	const payload = 6000
	return &pagedTopo{tp: tp, tr: tr, wire: ifindex(t, tp.hostB.ns, tp.hostB.phy), vm: ifindex(t, tp.vmA, ""), cases: []pagedCase{
		{"", func(req bool, seq uint16) []byte { return frame(nil, bigICMP(src, dst, req, pagedID, seq, payload)) }},
		{"vxlan", func(req bool, seq uint16) []byte {
			return overlay(VXLANPort, nil, frame(nil, bigICMP(src, dst, req, pagedID, seq, payload)))
		}},
		{"geneve", func(req bool, seq uint16) []byte {
			return overlay(GenevePort, make([]byte, 8), frame(nil, bigICMP(src, dst, req, pagedID, seq, payload)))
		}},
	}}
}

// sendRound sends every case's request from the wire and reply from the
// VM, the cases numbered from first; it returns their seqs.
func (pt *pagedTopo) sendRound(t *testing.T, first uint16) []uint16 {
	var seqs []uint16
	for i, c := range pt.cases {
		seq := first + uint16(i)
		seqs = append(seqs, seq)
		injectFrame(t, pt.tp.hostB.ns, pt.wire, c.build(true, seq), true)
		injectFrame(t, pt.tp.vmA, pt.vm, c.build(false, seq), true)
	}
	return seqs
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
