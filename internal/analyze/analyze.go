// Package analyze turns the files of one measurement (a pingpath run
// directory or a directory of origin tool logs) into a per-ping breakdown of
// the round trip: it joins every vantage point's observations per ping
// (ICMP id + sequence, wrap-aware), derives every segment and residual per
// ping, applies plausibility gates, and only then summarises, so that all
// statistics and layer shares are taken over one and the same set of pings.
// It is pure: no network, no tracing, no command-line code.
package analyze

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
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
	// Status is what became of the file: used, superseded, failed, no
	// observations, not recognised, refused or skipped (File* constants).
	Status string `json:"status"`
	// Note says more: the tool's own error line, why nothing was
	// observed, why the file was refused or skipped.
	Note string `json:"note,omitempty"`
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
	// Measured is false when no segment of the layer was measured (its
	// mean and share are then 0, not a measurement of 0).
	Measured bool `json:"measured"`
	// NotMeasured lists the layer's segments no tracer measured.
	NotMeasured []string `json:"not_measured,omitempty"`
	// NotCovered marks the part of the RTT that missing vantage points
	// left uncovered; its name says which ("not covered: sender host
	// failed").
	NotCovered bool `json:"not_covered,omitempty"`
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
	Source string `json:"source"`
	// Prefix is the file name prefix the run was read with ("" for the
	// whole directory).
	Prefix   string   `json:"prefix,omitempty"`
	IDs      []uint16 `json:"icmp_ids"`
	Vantages []string `json:"vantages"`
	// Coverage says, per vantage point, whether it was measured, failed
	// (with the tool's error line), ran but observed nothing, could not be
	// read, or did not run.
	Coverage  []Coverage `json:"coverage"`
	Counts    Counts     `json:"pings"`
	Empty     bool       `json:"empty"`
	SharedClk bool       `json:"shared_clock"`
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
	// LayerRTTExcludes names the values refused on every layer ping and
	// taken out of LayerRTTUS (empty unless LayersPartial).
	LayerRTTExcludes []string `json:"layer_rtt_excludes,omitempty"`
	// ResidualContents says what each residual holds ("guest entry/exit
	// not measured: InterPath_s − Total_s − B_1 − L"), or why it was not
	// computed.
	ResidualContents map[string]string `json:"residual_contents"`
	// Contrib is the mean of each value over LayerSet: these add up to the
	// layer RTT mean exactly.
	Contrib  map[string]float64 `json:"contrib_mean_us"`
	Excluded []Exclusion        `json:"excluded"`
	Tail     *Tail              `json:"tail,omitempty"`
	Drops    []Drop             `json:"drops"`
	Notes    []string           `json:"notes"`    // how identity was obtained, what is missing
	Warnings []string           `json:"warnings"` // file:line problems and flagged conditions
	// Cost is what the tracers cost each machine, as they measured it
	// (empty for origin logs and tracers that predate it).
	Cost     []NodeCost `json:"measurement_cost"`
	layerRTT []int64    // per LayerSet ping: the RTT the layers partition
	dropObs  []parse.DropObs
}

// Label names the run for reports: its directory, and the file prefix
// when it is one of several runs of the directory.
func (r *Result) Label() string {
	if r.Prefix == "" {
		return r.Dir
	}
	return fmt.Sprintf("%s (files %s*)", r.Dir, r.Prefix)
}

// Options choose what RunContext reads.
type Options struct {
	// Prefix reads only the files whose name starts with it: one run of a
	// directory that holds several (SplitRuns finds them).
	Prefix string
	// MaxFileBytes bounds how much of each file is read (0:
	// parse.DefaultMaxFileBytes); the rest of a longer file is left
	// unread with a warning.
	MaxFileBytes int64
}

// NoInputError is returned when a directory holds nothing to analyse: no
// tracer stream, origin tool log, tool error output, ping output or
// manifest.
type NoInputError struct {
	Dir, Prefix string
	Files       []FileInfo // what was there instead
}

func (e *NoInputError) Error() string {
	what := fmt.Sprintf("%s holds", e.Dir)
	if e.Prefix != "" {
		what = fmt.Sprintf("%s holds, among the files starting with %q,", e.Dir, e.Prefix)
	}
	msg := what + " no pingpath record stream (*.jsonl with a pingpath.trace header), origin tool log (kernel_icmp_rtt, icmp_drop_detector/icmp_path_tracer, tun_tx_to_kvm_irq, kvm_vhost_tun_latency), ping output or manifest.json"
	if len(e.Files) == 0 {
		return msg + ": it is empty"
	}
	var seen []string
	for _, f := range e.Files {
		seen = append(seen, fmt.Sprintf("%s (%s)", f.Path, strings.TrimSuffix(f.Status+": "+f.Note, ": ")))
		if len(seen) == 5 && len(e.Files) > 5 {
			seen = append(seen, fmt.Sprintf("%d more", len(e.Files)-5))
			break
		}
	}
	return msg + "; found " + strings.Join(seen, ", ")
}

// MultiRunError is returned when files of several runs share a directory:
// more than one file observed the same vantage point.
type MultiRunError struct {
	Dir string
	// Claims lists each vantage point several files observed.
	Claims []string
	// Runs are the file name prefixes that split the directory into runs
	// (empty when the names do not).
	Runs []string
}

func (e *MultiRunError) Error() string {
	claims := e.Claims[0]
	if len(e.Claims) > 1 {
		claims += fmt.Sprintf(" (and %d more vantage points)", len(e.Claims)-1)
	}
	msg := fmt.Sprintf("%s holds more than one run: two files observed the %s", e.Dir, claims)
	if len(e.Runs) > 0 {
		var q []string
		for _, r := range e.Runs {
			q = append(q, strconv.Quote(r))
		}
		return msg + fmt.Sprintf(". The file names split it into %d runs (prefixes %s): analyse one with --prefix, or compare two with `pingpath compare %s`", len(e.Runs), strings.Join(q, ", "), e.Dir)
	}
	return msg + ". Move each run's files into a directory of its own"
}

// Run analyses the directory dir.
func Run(dir string) (*Result, error) { return RunContext(context.Background(), dir, Options{}) }

// RunContext analyses the directory dir (or the run of it opts.Prefix
// selects). Every file is accounted for in Result.Files. It returns a
// *NoInputError when nothing in dir is a measurement, a *MultiRunError
// when files of several runs claim the same vantage point, and ctx's error
// when ctx ends while reading.
func RunContext(ctx context.Context, dir string, opts Options) (*Result, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("reading run directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("reading run directory %s: not a directory", dir)
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = parse.DefaultMaxFileBytes
	}
	res := &Result{Dir: dir, Prefix: opts.Prefix}
	files, unread, err := readDir(ctx, res, dir, opts)
	if err != nil {
		return nil, err
	}
	j := analyzeFiles(res, files, unread)
	if res.Manifest == nil && !slices.ContainsFunc(files, isMeasurement) {
		return nil, &NoInputError{Dir: dir, Prefix: opts.Prefix, Files: res.Files}
	}
	if len(j.conflicts) > 0 {
		e := &MultiRunError{Dir: dir}
		for _, c := range j.conflicts {
			e.Claims = append(e.Claims, fmt.Sprintf("%s in %s", c.v, strings.Join(c.files, " and ")))
		}
		if opts.Prefix == "" {
			e.Runs = SplitRuns(fileNames(files), j.conflicts[0].files)
		}
		return nil, e
	}
	return res, nil
}

// isMeasurement reports whether a file is some producer's output.
func isMeasurement(f *parse.File) bool {
	return f.Kind != parse.KindUnknown && f.Kind != parse.KindCommands
}

func fileNames(files []*parse.File) []string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, baseName(f.Path))
	}
	return out
}

// readDir reads the manifest and parses every other regular file of dir;
// what it does not parse (directories, its own reports, files it refuses)
// is described in unread.
func readDir(ctx context.Context, res *Result, dir string, opts Options) (files []*parse.File, unread []FileInfo, err error) {
	if m, err := manifest.Read(dir); err == nil {
		res.Manifest = m
		unread = append(unread, FileInfo{Path: manifest.FileName, Kind: "run manifest", Status: FileSkipped, Note: "read separately (nodes, tracers, ping)"})
	} else if !errors.Is(err, fs.ErrNotExist) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v (continuing without it)", manifest.FileName, err))
		unread = append(unread, FileInfo{Path: manifest.FileName, Kind: "run manifest", Status: FileRefused, Note: err.Error()})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading run directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == manifest.FileName:
			continue
		case opts.Prefix != "" && !strings.HasPrefix(name, opts.Prefix):
			continue // another run's
		case e.IsDir():
			unread = append(unread, FileInfo{Path: name, Kind: "directory", Status: FileSkipped, Note: "a directory (not searched)"})
			continue
		case isOwnOutput(name):
			unread = append(unread, FileInfo{Path: name, Kind: "pingpath output", Status: FileSkipped, Note: "written by pingpath analyze, compare or export"})
			continue
		}
		f, err := parse.ParseFile(ctx, filepath.Join(dir, name), opts.MaxFileBytes)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("reading run directory %s: %w", dir, ctx.Err())
		}
		if f == nil {
			note := strings.TrimPrefix(err.Error(), "opening "+filepath.Join(dir, name)+": ")
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: not read: %s", name, note))
			unread = append(unread, FileInfo{Path: name, Kind: "not read", Status: FileRefused, Note: note})
			continue
		}
		if err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		}
		files = append(files, f)
	}
	return files, unread, nil
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
func Analyze(res *Result, files []*parse.File) { analyzeFiles(res, files, nil) }

func analyzeFiles(res *Result, files []*parse.File, unread []FileInfo) *joiner {
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	j := newJoiner(res, files)
	j.unread = unread
	j.run()
	pings := res.Counts.Sent
	if pings == 0 {
		pings = res.Counts.Matched
	}
	res.Cost = nodeCosts(res.Manifest, files, pings)
	return j
}

// SplitRuns finds the file name prefixes that split a directory holding
// several runs, from the names of files that observed the same vantage
// point (claim): the origin workflow's comparison step names its log sets
// "env-a-sfsvm-send.log", "env-b-sfsvm-send.log". The names' longest common
// suffix that starts at a separator (-, _ or .) is cut off; what is left,
// with the separator, is each run's prefix ("env-a-", "env-b-"). It
// returns nil when the names do not split that way.
func SplitRuns(names, claim []string) []string {
	if len(claim) < 2 {
		return nil
	}
	suffix := claim[0]
	for _, n := range claim[1:] {
		k := 0
		for k < len(suffix) && k < len(n) && suffix[len(suffix)-1-k] == n[len(n)-1-k] {
			k++
		}
		suffix = suffix[len(suffix)-k:]
	}
	// The suffix must start at a separator that stays with the prefix.
	cut := strings.IndexAny(suffix, "-_.")
	if cut < 0 {
		return nil
	}
	suffix = suffix[cut+1:]
	var runs []string
	for _, n := range claim {
		p := n[:len(n)-len(suffix)]
		if p == "" || slices.Contains(runs, p) {
			return nil
		}
		runs = append(runs, p)
	}
	slices.Sort(runs)
	for i := 1; i < len(runs); i++ {
		if strings.HasPrefix(runs[i], runs[i-1]) {
			return nil // one run's prefix starts another's: ambiguous
		}
	}
	// Every other file must belong to one run or to none (shared notes).
	for _, n := range names {
		k := 0
		for _, r := range runs {
			if strings.HasPrefix(n, r) {
				k++
			}
		}
		if k > 1 {
			return nil
		}
	}
	return runs
}
