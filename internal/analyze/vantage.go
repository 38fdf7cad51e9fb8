package analyze

import (
	"fmt"
	"slices"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/parse/origin"
	"github.com/pingpath/pingpath/internal/record"
)

// What each vantage contributes is read from the record tables: a vantage is
// a tool in a role (parse.Vantage.Record), and each span of the tool's table
// names the segment it measures in that role (record.Span.Segment).

// Checkpoints along the path of one ping, in path order. A vantage point
// observes four of them; drop localisation reports the last one seen and
// the first one missed.
const (
	cpSVMReqStart = iota
	cpSVMReqXmit
	cpSHostReqIn
	cpSHostReqOut
	cpRHostReqIn
	cpRHostReqOut
	cpRVMReqRcv
	cpRVMICMP
	cpRVMRepOut
	cpRVMRepXmit
	cpRHostRepIn
	cpRHostRepOut
	cpSHostRepIn
	cpSHostRepOut
	cpSVMRepRcv
	cpSVMICMP
	numCheckpoints
)

// CheckpointNames name the checkpoints for reports.
var CheckpointNames = [numCheckpoints]string{
	"sender VM: request ip_local_out", "sender VM: request xmit",
	"sender host: request in (vnet)", "sender host: request out (phy)",
	"receiver host: request in (phy)", "receiver host: request out (vnet)",
	"receiver VM: request netif_receive_skb", "receiver VM: request icmp_rcv",
	"receiver VM: reply ip_local_out", "receiver VM: reply xmit",
	"receiver host: reply in (vnet)", "receiver host: reply out (phy)",
	"sender host: reply in (phy)", "sender host: reply out (vnet)",
	"sender VM: reply netif_receive_skb", "sender VM: reply icmp_rcv",
}

// gapSegments names what lies between checkpoint k and k+1.
var gapSegments = [numCheckpoints - 1]string{
	"A (sender VM stack TX)", "B_1 (sender guest kick → vhost → tun)", "B (sender host forwarding)",
	"C (physical network, request)", "D (receiver host forwarding)", "E (receiver tun → vhost → KVM IRQ → guest)",
	"F (receiver VM stack RX)", "G (receiver VM ICMP)", "H (receiver VM stack TX)",
	"I_1 (receiver guest kick → vhost → tun)", "I (receiver host forwarding)", "J (physical network, reply)",
	"K (sender host forwarding)", "L (sender tun → vhost → KVM IRQ → guest)", "M (sender VM stack RX)",
}

// vantageCheckpoints maps a core vantage's four stages to checkpoints.
var vantageCheckpoints = map[parse.Vantage][4]int{
	parse.VMTx:         {cpSVMReqStart, cpSVMReqXmit, cpSVMRepRcv, cpSVMICMP},
	parse.VMRx:         {cpRVMReqRcv, cpRVMICMP, cpRVMRepOut, cpRVMRepXmit},
	parse.HostSender:   {cpSHostReqIn, cpSHostReqOut, cpSHostRepIn, cpSHostRepOut},
	parse.HostReceiver: {cpRHostReqIn, cpRHostReqOut, cpRHostRepIn, cpRHostRepOut},
}

// coreVals lists, per core vantage, the value index of each of its four
// durations (parse.D0..D3, the tool's first four spans).
var coreVals = func() map[parse.Vantage][4]int {
	out := map[parse.Vantage][4]int{}
	for _, v := range []parse.Vantage{parse.VMTx, parse.VMRx, parse.HostSender, parse.HostReceiver} {
		path, role := v.Record()
		var vals [4]int
		for k := range vals {
			vals[k] = valueIndex(path.Spans[k].Segment[role])
		}
		out[v] = vals
	}
	return out
}()

// vhostVal is the segment a vhost vantage's total measures.
var vhostVal = func() map[parse.Vantage]int {
	out := map[parse.Vantage]int{}
	for _, v := range []parse.Vantage{parse.VhostRXRequest, parse.VhostRXReply, parse.VhostTXRequest, parse.VhostTXReply} {
		path, role := v.Record()
		total, _ := path.Span(record.DurTotal)
		out[v] = valueIndex(total.Segment[role])
	}
	return out
}()

// valueIndex returns the value index of a segment or value name; the record
// tables and ValueNames are both compiled in, so a name missing here is a
// programming error, caught by every test of this package.
func valueIndex(name string) int {
	i := slices.Index(ValueNames[:], name)
	if i < 0 {
		panic(fmt.Sprintf("analyze: record table names segment %q, which has no value index", name))
	}
	return i
}

// stageIndex returns the position (0..3) of a drop's last stage within its
// core vantage, in pingpath's naming (the vantage's record table) or the
// origin host tool's (ReqRX, ...).
func stageIndex(v parse.Vantage, name string) (int, bool) {
	if path, _ := v.Record(); path != nil {
		if i := path.Index(name); i >= 0 {
			return i, true
		}
	}
	if i := slices.Index(origin.HostStageNames[:], name); i >= 0 {
		return i, true
	}
	return 0, false
}
