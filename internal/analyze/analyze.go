// Package analyze turns the files of one measurement (a pingpath run
// directory or a directory of origin tool logs) into a per-ping breakdown of
// the round trip: it joins every vantage point's observations per ping
// (ICMP id + sequence, wrap-aware), derives every segment and residual per
// ping, applies plausibility gates, and only then summarises, so that all
// statistics and layer shares are taken over one and the same set of pings.
// It is pure: no network, no tracing, no command-line code.
package analyze

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse"
)

// Value indexes: the segments in report order, then the derived values.
const (
	SegA = iota
	SegB1
	SegB
	SegCJ
	SegD
	SegE
	SegF
	SegG
	SegH
	SegI1
	SegI
	SegK
	SegL
	SegM
	SegC
	SegJ
	NumSegs
)

// Derived values, after the segments.
const (
	ValRTT     = NumSegs + iota // sender VM total (ip_local_out → icmp_rcv)
	ValPingRTT                  // ping's own RTT
	ValInterS                   // sender VM Inter-Path
	ValTotalS                   // sender host total
	ValExtS                     // sender host external
	ValTotalR                   // receiver host total
	ValExtR                     // receiver host external
	ValTotalRV                  // receiver VM total (F+G+H)
	ValResidS                   // InterPath_s − Total_s − (B_1 + L where measured)
	ValResidR                   // Ext_r − Total_rv − (E + I_1 where measured)
	// The coarser segments of a VM the environment file declared untraced
	// (no tracer may run there): what the host tracers bound of its time.
	ValUntracedS // ping's RTT − Total_s − (B_1 + L where measured)
	ValUntracedR // Ext_r − (E + I_1 where measured)
	NumVals
)

// ValueNames names every value index (segments use the brief's letters).
var ValueNames = [NumVals]string{"A", "B_1", "B", "CJ", "D", "E", "F", "G", "H", "I_1", "I", "K", "L", "M", "C", "J",
	"RTT", "ping_RTT", "InterPath_s", "Total_s", "Ext_s", "Total_r", "Ext_r", "Total_rv",
	"virt_unmeasured_sender", "virt_unmeasured_receiver", "sender_vm_untraced", "receiver_vm_untraced"}

// SegmentDescriptions says what each segment is, for the reports.
var SegmentDescriptions = [NumVals]string{
	"sender VM stack TX (ip_local_out → xmit)",
	"sender host guest kick → vhost → tun (request leaves the VM)",
	"sender host vnet RX → bridge/OVS → phy TX",
	"physical network, request + reply (NIC + wire + switch, both hosts' NIC paths)",
	"receiver host phy RX → bridge/OVS → vnet TX",
	"receiver host tun_net_xmit → vhost → irqfd → KVM IRQ (t5 − t1)",
	"receiver VM stack RX (netif_receive_skb → icmp_rcv)",
	"receiver VM ICMP echo processing",
	"receiver VM stack TX (ip_local_out → xmit)",
	"receiver host guest kick → vhost → tun (reply leaves the VM)",
	"receiver host vnet RX → bridge/OVS → phy TX",
	"sender host phy RX → bridge/OVS → vnet TX",
	"sender host tun_net_xmit → vhost → irqfd → KVM IRQ (t5 − t1)",
	"sender VM stack RX (netif_receive_skb → icmp_rcv)",
	"physical network, request (shared clock only)",
	"physical network, reply (shared clock only)",
	"sender VM round trip (ip_local_out → icmp_rcv)",
	"ping's own RTT (userspace)",
	"sender VM Inter-Path", "sender host total", "sender host external", "receiver host total",
	"receiver host external", "receiver VM total",
	"sender-side virtualization not measured (guest entry/exit gaps)",
	"receiver-side virtualization not measured (guest entry/exit gaps)",
	"sender VM, untraced: ping's RTT − sender host total − B_1 − L (ping itself, stack TX and RX, guest entry/exit)",
	"receiver VM, untraced: receiver host vnet TX → vnet RX − E − I_1 (stack RX, echo, stack TX, guest entry/exit)",
}

// UntracedVMs reports which VMs the run's manifest declares untraced.
func (r *Result) UntracedVMs() (sender, receiver bool) {
	if r.Manifest == nil {
		return false, false
	}
	for _, n := range r.Manifest.Nodes {
		switch {
		case n.Untraced && n.Role == manifest.RoleSenderVM:
			sender = true
		case n.Untraced && n.Role == manifest.RoleReceiverVM:
			receiver = true
		}
	}
	return sender, receiver
}

// ReportSegments are the segment keys of report.json, in order.
var ReportSegments = []int{SegA, SegB1, SegB, SegCJ, SegD, SegE, SegF, SegG, SegH, SegI1, SegI, SegK, SegL, SegM}

// Ping is one ping, joined across every vantage point.
type Ping struct {
	ID  uint16 `json:"id"`
	Seq uint16 `json:"seq"`
	// Key is the unwrapped sequence number (seq + 65536·wraps).
	Key int64 `json:"key"`
	// Time is the wall time (Unix ns) of the earliest observation with a
	// wall clock, 0 when unknown.
	Time int64 `json:"time_ns,omitempty"`
	// At is, per vantage point, the wall time (Unix ns) of the first stage
	// it saw of this ping (0: not seen, or no wall clock). Differences
	// across vantage points mean something only on a shared clock
	// (Result.SharedClk); the timeline uses them to place the residuals.
	At [parse.NumVantages]int64 `json:"-"`
	// Val holds ns values; bit i of Has says whether Val[i] is known and
	// bit i of Excl whether a plausibility gate excluded it.
	Val  [NumVals]int64 `json:"-"`
	Has  uint64         `json:"-"`
	Excl uint64         `json:"-"`
	// Seen is a bit set of parse.Vantage; Checkpoints a bit set of path
	// checkpoints (see Checkpoints).
	Seen        uint16 `json:"-"`
	Checkpoints uint32 `json:"-"`
	Replied     bool   `json:"-"` // ping printed a reply
	PingListed  bool   `json:"-"` // ping printed this seq at all
	DropReports []int  `json:"-"` // indexes into the run's drop observations
	Complete    bool   `json:"-"`
	Lost        bool   `json:"-"`
	// Host stage timestamps (record streams) for C and J on a shared clock.
	sStage, rStage [parse.NumStages]uint64
	sHas, rHas     uint8
}

// Get returns a value and whether it is known and not excluded.
func (p *Ping) Get(i int) (int64, bool) {
	return p.Val[i], p.Has&(1<<i) != 0 && p.Excl&(1<<i) == 0
}

func (p *Ping) set(i int, v int64) { p.Val[i] = v; p.Has |= 1 << i }

// FileInfo describes one input file as the analysis used it.
type FileInfo struct {
	Path      string `json:"path"`
	Kind      string `json:"kind"`
	Tool      string `json:"tool,omitempty"`
	Role      string `json:"role,omitempty"`
	Vantage   string `json:"vantage,omitempty"`
	Identity  string `json:"identity,omitempty"`
	Obs       int    `json:"observations"`
	Drops     int    `json:"drops"`
	Truncated bool   `json:"truncated,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Version   string `json:"version,omitempty"`
	BootID    string `json:"boot_id,omitempty"`
	Ignored   string `json:"ignored,omitempty"` // why the file's observations were not used
}

// Counts are the ping totals of report.json.
type Counts struct {
	Sent     int `json:"sent"`
	Matched  int `json:"matched"`
	Complete int `json:"complete"`
	Lost     int `json:"lost"`
}

// Layer is one layer's mean and share of the RTT over the layer ping set.
type Layer struct {
	Name     string   `json:"name"`
	Segments []string `json:"segments"`
	MeanUS   float64  `json:"mean_us"`
	Share    float64  `json:"share"` // fraction of the mean RTT (0..1; may be negative)
	Flag     string   `json:"flag,omitempty"`
}

// Exclusion is one value a plausibility gate refused.
type Exclusion struct {
	ID      uint16  `json:"id"`
	Seq     uint16  `json:"seq"`
	Segment string  `json:"segment"`
	ValueUS float64 `json:"value_us"`
	Reason  string  `json:"reason"`
}

// Growth is one segment's growth in the slow tail against the median.
type Growth struct {
	Segment    string  `json:"segment"`
	TailMeanUS float64 `json:"tail_mean_us"`
	MedianUS   float64 `json:"median_us"`
	GrowthUS   float64 `json:"growth_us"`
	Share      float64 `json:"share"` // of the RTT growth
}

// Tail attributes the slowest pings' extra time to segments.
type Tail struct {
	ThresholdUS float64  `json:"threshold_us"` // p90 of RTT
	Pings       int      `json:"pings"`
	TailRTTUS   float64  `json:"tail_rtt_mean_us"`
	MedianRTTUS float64  `json:"median_rtt_us"`
	Growth      []Growth `json:"segments"`
}

// Drop is one lost ping, or one drop claim another vantage point refutes.
type Drop struct {
	ID          uint16   `json:"id"`
	Seq         uint16   `json:"seq"`
	Status      string   `json:"status"` // "lost", "false-drop", "incomplete"
	LastSeen    string   `json:"last_seen,omitempty"`
	FirstMissed string   `json:"first_missed,omitempty"`
	Segment     string   `json:"segment,omitempty"` // where it died: the segment between the two
	Reason      string   `json:"reason,omitempty"`  // kernel drop reason when known
	Location    string   `json:"location,omitempty"`
	ReportedBy  []string `json:"reported_by,omitempty"`
	Note        string   `json:"note,omitempty"`
}

// Result is the whole analysis of one directory.
type Result struct {
	Dir      string             `json:"dir"`
	Manifest *manifest.Manifest `json:"-"`
	Files    []FileInfo         `json:"files"`
	// Source is "pingpath", "origin", "mixed" or "" (nothing recognised).
	Source    string   `json:"source"`
	IDs       []uint16 `json:"icmp_ids"`
	Vantages  []string `json:"vantages"`
	Counts    Counts   `json:"pings"`
	Empty     bool     `json:"empty"`
	SharedClk bool     `json:"shared_clock"`
	// Pings in order (per ICMP id in order of first appearance, then by
	// unwrapped sequence).
	Pings []Ping `json:"-"`
	// StatSet indexes the pings that statistics are taken over; LayerSet
	// those the layers and tail are computed over.
	StatSet  []int `json:"-"`
	LayerSet []int `json:"-"`
	// Stats per value index (segments, RTT, residuals ...).
	Stats      [NumVals]Stats `json:"-"`
	Layers     []Layer        `json:"layers"`
	LayerRTTUS float64        `json:"layer_rtt_mean_us"`
	// LayersPartial is true when the layers had to be taken over pings
	// with refused values (taken out of the RTT as well).
	LayersPartial bool `json:"layers_partial"`
	// Contrib is the mean of each value over LayerSet: these add up to the
	// layer RTT mean exactly.
	Contrib  map[string]float64 `json:"contrib_mean_us"`
	Excluded []Exclusion        `json:"excluded"`
	Tail     *Tail              `json:"tail,omitempty"`
	Drops    []Drop             `json:"drops"`
	Notes    []string           `json:"notes"`    // how identity was obtained, what is missing
	Warnings []string           `json:"warnings"` // file:line problems and flagged conditions
	layerRTT []int64            // per LayerSet ping: the RTT the layers partition
	dropObs  []parse.DropObs
}

// Run analyses the directory dir.
func Run(dir string) (*Result, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("reading run directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("reading run directory %s: not a directory", dir)
	}
	res := &Result{Dir: dir}
	skip := map[string]bool{}
	if m, err := manifest.Read(dir); err == nil {
		res.Manifest = m
		for _, n := range m.Nodes {
			for _, t := range n.Tracers {
				if t.Stderr != "" {
					skip[filepath.Clean(t.Stderr)] = true
				}
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v (continuing without it)", manifest.FileName, err))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading run directory: %w", err)
	}
	var files []*parse.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == manifest.FileName || skip[name] || strings.HasSuffix(name, ".stderr.log") ||
			isOwnOutput(name) {
			continue
		}
		f, err := parse.ParseFile(filepath.Join(dir, name))
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
			if f == nil {
				continue
			}
		}
		if f.Kind == parse.KindUnknown {
			continue
		}
		files = append(files, f)
	}
	Analyze(res, files)
	return res, nil
}

// isOwnOutput recognises the files analyze and compare write, so that a
// second run over the same directory does not read them back.
func isOwnOutput(name string) bool {
	switch name {
	case "report.md", "report.html", "report.json", "compare.md", "compare.html", "compare.json", "trace.json", "pings.csv":
		return true
	}
	return false
}

// Analyze joins and summarises already parsed files into res.
func Analyze(res *Result, files []*parse.File) {
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	j := newJoiner(res, files)
	j.run()
}
