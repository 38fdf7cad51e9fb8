package analyze

import (
	"fmt"
	"slices"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

// What each vantage contributes is read from the record tables: a vantage is
// a tool in a role (parse.Vantage.Record), and each span of the tool's table
// names the segment it measures in that role (record.Span.Segment).

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
	if i := slices.Index(parse.HostStageNames[:], name); i >= 0 {
		return i, true
	}
	return 0, false
}
