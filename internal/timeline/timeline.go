// Package timeline lays one analysed ping out in time, lane by lane: each
// vantage point's segments at their place along the path, the residuals
// (virtualization nobody traced) where they happen, and the outer intervals
// (a host's total, a VM's round trip) around them. The report's waterfall
// and swim lanes and the Perfetto export draw the same layout.
//
// Every segment is a difference of two timestamps of one machine, so the
// durations are exact; what a layout has to decide is where the gaps sit.
// The path identities say how long each gap is (the sender VM's Inter-Path
// minus the sender host's total is the time outside that host on the
// sender side, request and reply together); how it splits between the
// request and the reply is known only when the two machines share a clock
// (the lab), from the wall-mapped stage times. Otherwise it is split evenly
// and the slices say so (Kind Estimated). C and J the same way.
package timeline

import (
	"strings"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/parse"
)

// Lanes: one per vantage point, named by node and tracer.
const (
	LaneSenderVM       = "sender VM"
	LaneSenderVhostTX  = "sender host vhost-tx"
	LaneSenderHost     = "sender host"
	LaneSenderVhostRX  = "sender host vhost-rx"
	LaneReceiverHost   = "receiver host"
	LaneReceiverVhostR = "receiver host vhost-rx"
	LaneReceiverVM     = "receiver VM"
	LaneReceiverVhostT = "receiver host vhost-tx"
)

// Lanes lists the lanes in path order, for drawing.
var Lanes = []string{LaneSenderVM, LaneSenderVhostTX, LaneSenderHost, LaneSenderVhostRX,
	LaneReceiverHost, LaneReceiverVhostR, LaneReceiverVM, LaneReceiverVhostT}

// Node names the machine a lane's clock belongs to (manifest roles).
func Node(lane string) string {
	switch {
	case strings.HasPrefix(lane, "sender host"):
		return "sender-host"
	case strings.HasPrefix(lane, "receiver host"):
		return "receiver-host"
	case lane == LaneSenderVM:
		return "sender-vm"
	}
	return "receiver-vm"
}

// Slice kinds.
const (
	Measured   = "measured"   // a segment some tracer timed
	Outer      = "outer"      // an interval that contains other slices (RTT, a host's total, Inter-Path, External)
	Unmeasured = "unmeasured" // a residual: inside the path, outside every tracer
	Estimated  = "estimated"  // duration known, position or split assumed (clocks not shared)
)

// Slice is one interval of one ping on one lane. Start is ns since the
// ping's first stage on the sender VM (the echo request entering IP output).
type Slice struct {
	Lane  string `json:"lane"`
	Name  string `json:"name"`
	Start int64  `json:"start_ns"`
	Dur   int64  `json:"dur_ns"`
	Kind  string `json:"kind"`
	// Depth is 0 for an outer interval of its lane, 1 inside one, 2 inside that.
	Depth int `json:"depth"`
	// Value is the segment's signed value when Dur was clamped at 0 (a
	// negative residual); otherwise equal to Dur.
	Value int64 `json:"value_ns"`
}

// Clocks says which pairs of machines share a clock, from the boot ids the
// record streams carry.
type Clocks struct {
	SenderVMHost   bool // sender VM and sender host
	Hosts          bool // the two hosts
	ReceiverHostVM bool // receiver host and receiver VM
}

// ClocksOf reads which machines share a clock from the files of res.
func ClocksOf(res *analyze.Result) Clocks {
	boot := map[string]string{}
	for _, f := range res.Files {
		if f.BootID == "" {
			continue
		}
		for _, v := range strings.Split(f.Vantage, ", ") {
			boot[v] = f.BootID
		}
	}
	same := func(a, b parse.Vantage) bool {
		x, y := boot[a.String()], boot[b.String()]
		return x != "" && x == y
	}
	return Clocks{
		SenderVMHost:   same(parse.VMTx, parse.HostSender),
		Hosts:          same(parse.HostSender, parse.HostReceiver),
		ReceiverHostVM: same(parse.HostReceiver, parse.VMRx),
	}
}

// layout accumulates the slices of one ping.
type layout struct {
	p      *analyze.Ping
	clocks Clocks
	out    []Slice
}

func (l *layout) get(v int) (int64, bool) { return l.p.Get(v) }

func (l *layout) add(lane, name string, start, dur int64, kind string, depth int) {
	l.addWithin(lane, name, start, dur, kind, depth, dur)
}

// addWithin adds a slice drawn at most limit long. The middle interval of
// an outer one (Inter-Path, External, G) is drawn up to where the last part
// starts: in the origin tools' logs, rounded to 0.1 µs or 1 µs, the three
// parts can exceed their total by that much, and drawn slices must nest.
// Value keeps what was measured.
func (l *layout) addWithin(lane, name string, start, dur int64, kind string, depth int, limit int64) {
	s := Slice{Lane: lane, Name: name, Start: start, Dur: min(dur, limit), Kind: kind, Depth: depth, Value: dur}
	if s.Dur < 0 {
		s.Dur = 0
	}
	l.out = append(l.out, s)
}

// at is the wall time of a vantage point's first stage, when known.
func (l *layout) at(v parse.Vantage) (int64, bool) { return l.p.At[v], l.p.At[v] != 0 }

// Layout places one ping's values. Refused values (plausibility gates) are
// left out like unmeasured ones, so a chart never draws them. It returns
// nil when not even the sender VM's round trip is known.
func Layout(p *analyze.Ping, clocks Clocks) []Slice {
	l := &layout{p: p, clocks: clocks}
	rtt, okRTT := l.get(analyze.ValRTT)
	a, okA := l.get(analyze.SegA)
	inter, okInter := l.get(analyze.ValInterS)
	m, okM := l.get(analyze.SegM)
	if !okRTT || !okA || !okInter || !okM {
		return nil
	}
	l.add(LaneSenderVM, "RTT", 0, rtt, Outer, 0)
	l.add(LaneSenderVM, "A", 0, a, Measured, 1)
	l.addWithin(LaneSenderVM, "InterPath_s", a, inter, Outer, 1, rtt-a-m)
	l.add(LaneSenderVM, "M", a+inter, m, Measured, 1)
	l.senderHost(a, inter)
	return l.out
}

// split returns the request side of a gap of total length gap between two
// machines: from the wall times when their clocks are shared; otherwise
// the measured vhost segment of each side (reqIn, repIn; 0 when not
// measured) plus half of what is left, the residual split evenly.
func (l *layout) split(gap int64, shared bool, outerStart, innerStart int64, okTimes bool, reqSeg, repSeg int) (int64, bool) {
	if shared && okTimes {
		req := innerStart - outerStart
		if req >= 0 && req <= gap {
			return req, true
		}
	}
	reqIn, _ := l.get(reqSeg)
	repIn, _ := l.get(repSeg)
	rest := gap - reqIn - repIn
	return reqIn + rest/2, false
}

// senderHost lays out the sender host inside the sender VM's Inter-Path
// [start, start+inter), and everything further down the path inside it.
func (l *layout) senderHost(start, inter int64) {
	total, ok := l.get(analyze.ValTotalS)
	if !ok {
		l.add(LaneSenderVM, "sender side not traced", start, inter, Unmeasured, 2)
		return
	}
	vmAt, okVM := l.at(parse.VMTx)
	hostAt, okHost := l.at(parse.HostSender)
	a, _ := l.get(analyze.SegA)
	gap := inter - total
	req, exact := l.split(gap, l.clocks.SenderVMHost, vmAt+a, hostAt, okVM && okHost, analyze.SegB1, analyze.SegL)
	rep := gap - req
	hs := start + req // the sender host's req_in
	l.gap(LaneSenderVM, analyze.ValResidS, start, req, exact, LaneSenderVhostTX, "B_1", analyze.SegB1, true)
	l.gap(LaneSenderVM, analyze.ValResidS, hs+total, rep, exact, LaneSenderVhostRX, "L", analyze.SegL, false)

	l.host(LaneSenderHost, hs, total, hostSegs{"Total_s", "B", "Ext_s", "K", analyze.SegB, analyze.ValExtS, analyze.SegK}, l.receiverHost)
}

// hostSegs names a host's outer interval and the three parts of it: the
// request's way through the host, the time outside it, the reply's way.
type hostSegs struct {
	total, in, ext, out string
	inV, extV, outV     int
}

// host lays out a host's lane from start: its Total, the request's and
// the reply's segments at either end, and the time outside it, inside
// which beyond lays out what lies further down the path.
func (l *layout) host(lane string, start, total int64, s hostSegs, beyond func(start, dur int64)) {
	l.add(lane, s.total, start, total, Outer, 0)
	in, okIn := l.get(s.inV)
	ext, okExt := l.get(s.extV)
	out, okOut := l.get(s.outV)
	if okIn {
		l.add(lane, s.in, start, in, Measured, 1)
	}
	if okOut {
		l.add(lane, s.out, start+total-out, out, Measured, 1)
	}
	if okIn && okExt {
		room := total - in - kOr0(out, okOut)
		l.addWithin(lane, s.ext, start+in, ext, Outer, 1, room)
		beyond(start+in, min(ext, room))
	}
}

// gap draws one side's gap between a VM and its host: the vhost segment
// that lies in it (B_1 ends where the host's B begins; L starts where K
// ends) and the residual for the rest, on the lane of the enclosing
// interval. vhostAtEnd puts the vhost segment at the end of the gap.
func (l *layout) gap(lane string, resid int, start, dur int64, exact bool, vhostLane, vhostName string, vhostSeg int, vhostAtEnd bool) {
	kind := Unmeasured
	if !exact {
		kind = Estimated
	}
	// A residual the plausibility gates refused is not drawn.
	_, accepted := l.get(resid)
	name := analyze.ValueNames[resid]
	v, ok := l.get(vhostSeg)
	if !ok {
		if accepted {
			l.add(lane, name, start, dur, kind, 2)
		}
		return
	}
	rs := start
	if vhostAtEnd {
		l.add(vhostLane, vhostName, start+dur-v, v, Measured, 0)
	} else {
		l.add(vhostLane, vhostName, start, v, Measured, 0)
		rs = start + v
	}
	if accepted {
		l.add(lane, name, rs, dur-v, kind, 2)
	}
}

// receiverHost lays out the physical network and the receiver host inside
// the sender host's External [start, start+ext).
func (l *layout) receiverHost(start, ext int64) {
	total, ok := l.get(analyze.ValTotalR)
	if !ok {
		l.add(LaneSenderHost, "receiver side not traced", start, ext, Unmeasured, 2)
		return
	}
	c, okC := l.get(analyze.SegC)
	j, okJ := l.get(analyze.SegJ)
	kind := Measured
	if !okC || !okJ || c+j+total != ext {
		c, j = (ext-total)/2, ext-total-(ext-total)/2
		kind = Estimated
	}
	l.add(LaneSenderHost, "C", start, c, kind, 2)
	l.add(LaneSenderHost, "J", start+ext-j, j, kind, 2)
	rs := start + c // the receiver host's req_in
	l.host(LaneReceiverHost, rs, total, hostSegs{"Total_r", "D", "Ext_r", "I", analyze.SegD, analyze.ValExtR, analyze.SegI}, l.receiverVM)
}

// receiverVM lays out the receiver VM inside the receiver host's External.
func (l *layout) receiverVM(start, ext int64) {
	total, ok := l.get(analyze.ValTotalRV)
	if !ok {
		l.add(LaneReceiverHost, "receiver VM not traced", start, ext, Unmeasured, 2)
		return
	}
	hostAt, okHost := l.at(parse.HostReceiver)
	vmAt, okVM := l.at(parse.VMRx)
	d, _ := l.get(analyze.SegD)
	gap := ext - total
	req, exact := l.split(gap, l.clocks.ReceiverHostVM, hostAt+d, vmAt, okHost && okVM, analyze.SegE, analyze.SegI1)
	vs := start + req
	l.gap(LaneReceiverHost, analyze.ValResidR, start, req, exact, LaneReceiverVhostR, "E", analyze.SegE, false)
	l.gap(LaneReceiverHost, analyze.ValResidR, vs+total, gap-req, exact, LaneReceiverVhostT, "I_1", analyze.SegI1, true)
	l.add(LaneReceiverVM, "Total_rv", vs, total, Outer, 0)
	f, okF := l.get(analyze.SegF)
	g, okG := l.get(analyze.SegG)
	h, okH := l.get(analyze.SegH)
	if okF {
		l.add(LaneReceiverVM, "F", vs, f, Measured, 1)
	}
	if okF && okG {
		l.addWithin(LaneReceiverVM, "G", vs+f, g, Measured, 1, total-f-kOr0(h, okH))
	}
	if okH {
		l.add(LaneReceiverVM, "H", vs+total-h, h, Measured, 1)
	}
}

// kOr0 is a value when known, else 0.
func kOr0(v int64, ok bool) int64 {
	if ok {
		return v
	}
	return 0
}
