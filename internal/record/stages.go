package record

// The stage tables are the contract between the tracers, which stamp the
// stages, and parse/analyze, which turn them into segments: every stage name,
// its place on the packet's path, the durations derived from pairs of stages
// and the segment of the round trip each duration measures live here and
// nowhere else (docs/record-format.md describes the same tables for humans).

// vm tool stages (docs/record-format.md): the echo request's path through
// the guest (p1) and the echo reply's (p2).
const (
	StageP1Start = "p1_start"
	StageP1End   = "p1_end"
	StageP2Start = "p2_start"
	StageP2End   = "p2_end"
)

// host tool stages: the request and the reply entering and leaving the
// hypervisor host.
const (
	StageReqIn  = "req_in"
	StageReqOut = "req_out"
	StageRepIn  = "rep_in"
	StageRepOut = "rep_out"
)

// vhost-rx tool stages: a packet from the tun device to the interrupt
// injected into the guest.
const (
	StageTunXmit     = "s1_tun_xmit"
	StageVhostRecv   = "s2_vhost_recv"
	StageVhostSignal = "s3_vhost_signal"
	StageIrqfd       = "s4_irqfd"
	StageKVMIRQ      = "s5_kvm_irq"
)

// vhost-tx tool stages: the guest's kick to the packet entering the host
// stack.
const (
	StageKick         = "kick"
	StageHandleTX     = "handle_tx"
	StageTunSendmsg   = "tun_sendmsg"
	StageNetifReceive = "netif_receive"
)

// Roles: the header's role (vm) or each record's role (host, vhost-*).
const (
	RoleTX       = "tx"       // vm: this VM sends the echo requests
	RoleRX       = "rx"       // vm: this VM answers them
	RoleSender   = "sender"   // host: the request enters from the VM side
	RoleReceiver = "receiver" // host: the request enters from the physical side
	RoleRequest  = "request"  // vhost-*: an echo request
	RoleReply    = "reply"    // vhost-*: an echo reply
)

// Duration names (the keys of durations_ns). Every tool has DurTotal = last
// stage − first stage.
const (
	DurTotal       = "total"
	DurPath1       = "path1"
	DurInterPath   = "inter_path"
	DurPath2       = "path2"
	DurReqInternal = "req_internal"
	DurExternal    = "external"
	DurRepInternal = "rep_internal"
)

// Path is one tool's stage table.
type Path struct {
	Tool string
	// Stages in the order a packet passes them. The first and the last are
	// the path's end stages: DurTotal spans them, and a record is complete
	// once it reached the last stage the tracer can observe (LastOf).
	Stages []string
	// Roles the tool writes.
	Roles []string
	// Spans are the durations derived from pairs of stages, in the order
	// the tracers and the analysis list them.
	Spans []Span
}

// Span is a duration derived from two stages of one packet: To − From, known
// only when both were observed.
type Span struct {
	Name     string // key in durations_ns
	From, To string
	// Segment names, per role, the part of the round trip this span
	// measures: a segment letter of docs/analysis.md ("A", "B_1", ...) or a
	// derived value ("RTT", "Ext_s", ...). Absent for spans that are only a
	// detail inside a segment (the vhost tools' adjacent deltas).
	Segment map[string]string
}

// The four tools' tables.
var (
	VM = &Path{
		Tool:   ToolVM,
		Stages: []string{StageP1Start, StageP1End, StageP2Start, StageP2End},
		Roles:  []string{RoleTX, RoleRX},
		Spans: []Span{
			{DurPath1, StageP1Start, StageP1End, map[string]string{RoleTX: "A", RoleRX: "F"}},
			{DurInterPath, StageP1End, StageP2Start, map[string]string{RoleTX: "InterPath_s", RoleRX: "G"}},
			{DurPath2, StageP2Start, StageP2End, map[string]string{RoleTX: "M", RoleRX: "H"}},
			{DurTotal, StageP1Start, StageP2End, map[string]string{RoleTX: "RTT", RoleRX: "Total_rv"}},
		},
	}
	Host = &Path{
		Tool:   ToolHost,
		Stages: []string{StageReqIn, StageReqOut, StageRepIn, StageRepOut},
		Roles:  []string{RoleSender, RoleReceiver},
		Spans: []Span{
			{DurReqInternal, StageReqIn, StageReqOut, map[string]string{RoleSender: "B", RoleReceiver: "D"}},
			{DurExternal, StageReqOut, StageRepIn, map[string]string{RoleSender: "Ext_s", RoleReceiver: "Ext_r"}},
			{DurRepInternal, StageRepIn, StageRepOut, map[string]string{RoleSender: "K", RoleReceiver: "I"}},
			{DurTotal, StageReqIn, StageRepOut, map[string]string{RoleSender: "Total_s", RoleReceiver: "Total_r"}},
		},
	}
	VhostRX = &Path{
		Tool:   ToolVhostRX,
		Stages: []string{StageTunXmit, StageVhostRecv, StageVhostSignal, StageIrqfd, StageKVMIRQ},
		Roles:  []string{RoleRequest, RoleReply},
		Spans: append([]Span{{DurTotal, StageTunXmit, StageKVMIRQ, map[string]string{RoleRequest: "E", RoleReply: "L"}}},
			adjacent([]string{StageTunXmit, StageVhostRecv, StageVhostSignal, StageIrqfd, StageKVMIRQ},
				func(s string) string { return s[:2] })...),
	}
	VhostTX = &Path{
		Tool:   ToolVhostTX,
		Stages: []string{StageKick, StageHandleTX, StageTunSendmsg, StageNetifReceive},
		Roles:  []string{RoleRequest, RoleReply},
		Spans: append([]Span{{DurTotal, StageKick, StageNetifReceive, map[string]string{RoleRequest: "B_1", RoleReply: "I_1"}}},
			adjacent([]string{StageKick, StageHandleTX, StageTunSendmsg, StageNetifReceive},
				func(s string) string { return s })...),
	}
)

// Paths lists every tool's table.
var Paths = []*Path{VM, Host, VhostRX, VhostTX}

// adjacent returns the deltas between neighbouring stages, named short(a)_short(b).
func adjacent(stages []string, short func(string) string) []Span {
	var out []Span
	for i := 0; i+1 < len(stages); i++ {
		out = append(out, Span{Name: short(stages[i]) + "_" + short(stages[i+1]), From: stages[i], To: stages[i+1]})
	}
	return out
}

// PathOf returns the table of tool, or nil for a tool this version does not know.
func PathOf(tool string) *Path {
	for _, p := range Paths {
		if p.Tool == tool {
			return p
		}
	}
	return nil
}

// Index returns the position of stage on the path, or -1 when the tool has no
// such stage. A linear scan: the paths have at most five stages, and the
// record parser calls it per stage of every record.
func (p *Path) Index(stage string) int {
	for i, s := range p.Stages {
		if s == stage {
			return i
		}
	}
	return -1
}

// IndexBytes is Index for a stage name still in the input buffer (no
// allocation).
func (p *Path) IndexBytes(stage []byte) int {
	for i, s := range p.Stages {
		if s == string(stage) {
			return i
		}
	}
	return -1
}

// First and Last are the path's end stages.
func (p *Path) First() string { return p.Stages[0] }

// Last is the final stage of the path.
func (p *Path) Last() string { return p.Stages[len(p.Stages)-1] }

// LastOf is the last stage in path order for which available is true: the
// stage that completes a record on a host that cannot observe the later
// ones. Empty when none is.
func (p *Path) LastOf(available func(stage string) bool) string {
	for i := len(p.Stages) - 1; i >= 0; i-- {
		if available(p.Stages[i]) {
			return p.Stages[i]
		}
	}
	return ""
}

// Span returns the span called name.
func (p *Path) Span(name string) (Span, bool) {
	for _, s := range p.Spans {
		if s.Name == name {
			return s, true
		}
	}
	return Span{}, false
}

// Durations computes every span whose two stages are in stages; nil when
// none is.
func (p *Path) Durations(stages map[string]uint64) map[string]int64 {
	var out map[string]int64
	for _, d := range p.Spans {
		a, okA := stages[d.From]
		b, okB := stages[d.To]
		if okA && okB {
			if out == nil {
				out = make(map[string]int64, len(p.Spans))
			}
			out[d.Name] = int64(b) - int64(a)
		}
	}
	return out
}
