// Package host is the host path tracer (`pingpath trace host`): on a
// hypervisor host it timestamps one ping's echo request entering and leaving
// the host and its echo reply entering and leaving again, between the VM's
// vnet device and the physical NIC(s), through whatever bridge or OVS joins
// them. A ping that does not complete becomes a drop record naming the last
// point seen and, when this host's kernel freed the packet, the kernel's drop
// reason and where it happened. Replaces the origin's icmp_drop_detector.py.
package host

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/dropreason"
	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// ReorderWindow is how long events are held before they are applied in
// timestamp order. Ring buffer records of different CPUs can arrive out of
// time order; the runner also reads them in batches between ticks.
const ReorderWindow = 250 * time.Millisecond

// Config is what `pingpath trace host` is told.
type Config struct {
	SrcIP, DstIP netip.Addr // the ping's initiator (sender VM) and target (receiver VM)
	// MorePairs are further VM pairs on this host (--pair): one tracer
	// serves them all, each record naming its pair (record.Ping.Pair).
	MorePairs     []tracer.AddrPair
	VMInterfaces  []string // the VM's vnet/tap device(s) on this host
	PhyInterfaces []string // physical NIC(s) or bond slaves (replies may return on any)
	Timeout       time.Duration
	Role          string // auto|sender|receiver
}

// Tool implements tracer.Tool for the host tracer.
type Tool struct {
	cfg   Config
	netns uint64
	sides map[uint32]Side
	ifidx []uint32
	// ifindexOf maps each configured interface name to its index, nameOf
	// back.
	ifindexOf map[string]uint32
	nameOf    map[uint32]string
	corr      *Correlator
	text      textStats
	// kspec is the kernel BTF the runner loaded (--btf or the kernel's
	// own): the kfree_skb tracepoint's arguments and the drop reason
	// names are read from it.
	kspec *btf.Spec
	dm    *directMap // nil until UseCollection
	// dmFound is the direct-map lookup, started with the first Spec;
	// dmLookup the lookup itself (x86DirectMap of this machine; a test
	// makes it fail).
	dmFound   <-chan dmResult
	dmStarted time.Time
	dmLookup  func() (pageOffset, vmemmap uint64, vars bool, err error)
	// finished: Finish was called (the last Warnings call follows).
	finished bool
}

var _ tracer.Tool = (*Tool)(nil)
var _ tracer.TextView = (*Tool)(nil)
var _ tracer.CollectionUser = (*Tool)(nil)
var _ tracer.WarningSource = (*Tool)(nil)

// New validates cfg and resolves the interfaces in the calling thread's
// network namespace, which is the one traced.
func New(cfg Config) (*Tool, error) {
	if !cfg.SrcIP.Is4() || !cfg.DstIP.Is4() {
		return nil, tracer.Usage("--src-ip %s --dst-ip %s: both must be IPv4 addresses", cfg.SrcIP, cfg.DstIP)
	}
	if cfg.SrcIP == cfg.DstIP {
		return nil, tracer.Usage("--src-ip and --dst-ip are both %s", cfg.SrcIP)
	}
	if err := checkPairs(cfg); err != nil {
		return nil, err
	}
	switch cfg.Role {
	case "":
		cfg.Role = "auto"
	case "auto", record.RoleSender, record.RoleReceiver:
	default:
		return nil, tracer.Usage("--role %q: want auto, sender or receiver", cfg.Role)
	}
	if cfg.Timeout <= 0 {
		return nil, tracer.Usage("--timeout %s: must be positive", cfg.Timeout)
	}
	if len(cfg.VMInterfaces) == 0 || len(cfg.PhyInterfaces) == 0 {
		return nil, tracer.Usage("both --vm-interface and --phy-interface are required")
	}
	t := &Tool{cfg: cfg, sides: map[uint32]Side{}, ifindexOf: map[string]uint32{}, nameOf: map[uint32]string{},
		dmLookup: func() (uint64, uint64, bool, error) { return x86DirectMap(runtime.GOARCH, kallsyms.Data) }}
	for _, l := range []struct {
		flag  string
		names []string
		side  Side
	}{{"--vm-interface", cfg.VMInterfaces, SideVM}, {"--phy-interface", cfg.PhyInterfaces, SidePhy}} {
		for _, name := range l.names {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return nil, tracer.Usage("%s %s: no such interface in this network namespace: %w", l.flag, name, err)
			}
			idx := uint32(ifc.Index)
			if _, dup := t.sides[idx]; dup {
				return nil, tracer.Usage("%s %s: interface given twice", l.flag, name)
			}
			t.sides[idx] = l.side
			t.ifindexOf[name] = idx
			t.nameOf[idx] = name
			t.ifidx = append(t.ifidx, idx)
		}
	}
	if len(t.ifidx) > tracer.MaxInterfaces {
		return nil, tracer.Usage("%d interfaces given: at most %d can be traced", len(t.ifidx), tracer.MaxInterfaces)
	}
	var err error
	if t.netns, err = kernel.NetnsInode(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkPairs refuses further pairs that are not IPv4, repeat another pair,
// or are too many for the in-kernel filter. A fixed --role cannot hold for
// several pairs: the host is the sender of one and may be the receiver of
// another.
func checkPairs(cfg Config) error {
	if len(cfg.MorePairs) == 0 {
		return nil
	}
	if len(cfg.MorePairs)+1 > tracer.MaxPairs {
		return fmt.Errorf("%d pairs given: at most %d can be traced", len(cfg.MorePairs)+1, tracer.MaxPairs)
	}
	if cfg.Role != "auto" && cfg.Role != "" {
		return fmt.Errorf("--role %s: with --pair the role is found per ping (leave --role auto)", cfg.Role)
	}
	seen := map[tracer.AddrPair]bool{{Src: cfg.SrcIP, Dst: cfg.DstIP}: true}
	for _, p := range cfg.MorePairs {
		switch {
		case !p.Src.Is4() || !p.Dst.Is4():
			return fmt.Errorf("--pair %s,%s: both must be IPv4 addresses", p.Src, p.Dst)
		case p.Src == p.Dst:
			return fmt.Errorf("--pair %s,%s: the same address twice", p.Src, p.Dst)
		case seen[p]:
			return fmt.Errorf("--pair %s,%s: given twice", p.Src, p.Dst)
		}
		seen[p] = true
	}
	return nil
}

// Name implements tracer.Tool.
func (t *Tool) Name() string { return record.ToolHost }

// Stages implements tracer.Tool: the ladders of the three BPF hooks.
func (t *Tool) Stages() []tracer.Stage { return hookStages() }

// Filter implements tracer.Tool.
func (t *Tool) Filter() tracer.Filter {
	return tracer.Filter{SrcIP: t.cfg.SrcIP, DstIP: t.cfg.DstIP, Netns: t.netns, Ifindexes: t.ifidx, MorePairs: t.cfg.MorePairs}
}

// Spec implements tracer.Tool. It also starts the direct-map lookup, which
// then runs while the runner loads the object (directMap).
func (t *Tool) Spec([]tracer.Choice) (*ebpf.CollectionSpec, error) {
	if t.dmFound == nil {
		t.dmFound, t.dmStarted = lookupDirectMap(t.dmLookup)
	}
	spec, err := loadHost()
	if err != nil {
		return nil, err
	}
	kspec, err := t.kernelSpec()
	if err != nil {
		return nil, err
	}
	layout, err := readLayout(kspec)
	if err != nil {
		return nil, err
	}
	if err := layout.configure(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// UseKernelBTF implements tracer.KernelBTFUser.
func (t *Tool) UseKernelBTF(kb *kernel.BTF) { t.kspec = kb.Spec() }

// kernelSpec is the kernel BTF the runner gave (UseKernelBTF), else the
// running kernel's.
func (t *Tool) kernelSpec() (*btf.Spec, error) {
	if t.kspec != nil {
		return t.kspec, nil
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("loading kernel btf: %w", err)
	}
	return kspec, nil
}

// Describe implements tracer.Tool. The runner lists one probe per BPF hook;
// the header lists the record's stages, each with the rung of its hook.
func (t *Tool) Describe(h *record.Header) {
	h.Role = t.cfg.Role
	h.SrcIP, h.DstIP = t.cfg.SrcIP.String(), t.cfg.DstIP.String()
	if len(t.cfg.MorePairs) > 0 {
		h.Pairs = []record.Pair{{SrcIP: h.SrcIP, DstIP: h.DstIP}}
		for _, p := range t.cfg.MorePairs {
			h.Pairs = append(h.Pairs, record.Pair{SrcIP: p.Src.String(), DstIP: p.Dst.String()})
		}
	}
	h.Interfaces = append(append([]string(nil), t.cfg.VMInterfaces...), t.cfg.PhyInterfaces...)
	byHook := map[string]record.Probe{}
	for _, p := range h.Probes {
		byHook[p.Stage] = p
	}
	probes := make([]record.Probe, 0, len(record.Host.Stages)+1)
	for _, st := range record.Host.Stages {
		p := byHook[stageHook[st]]
		p.Stage = st
		probes = append(probes, p)
	}
	h.Probes = append(probes, byHook[hookDrop], byHook[hookUpcall])
	if h.Args == nil {
		h.Args = map[string]string{}
	}
	h.Args["timeout"] = t.cfg.Timeout.String()
}

// Start implements tracer.Tool.
func (t *Tool) Start(choices []tracer.Choice, out tracer.Sink) error {
	cfg := CorrelatorConfig{Timeout: uint64(t.cfg.Timeout), Window: uint64(ReorderWindow), Role: t.cfg.Role}
	for _, c := range choices {
		if c.Stage == hookDrop && c.Available {
			cfg.ReasonName, cfg.Symbol = dropNaming(t.kspec)
		}
	}
	t.corr = NewCorrelator(cfg, out)
	if t.dm != nil {
		t.dm.await(dmReadyWait)
	}
	return nil
}

// dropNaming returns the functions naming drop reasons and locations. The
// reason names are read from kspec, the kernel BTF the runner gave (nil:
// the kernel's own, parsed then), at the first drop, neither before the
// ready line (they would delay it) nor in the background after it:
// parsing the kernel's BTF costs 15-20 ms of CPU, which a tracer's own
// cost would count (trailer cost.user_ns) for a run that may see no drop
// at all, and which the report divides by the pings (976 µs "per ping"
// for 60 pings in CI). Locations are resolved per distinct address
// (kallsyms.Resolver).
func dropNaming(kspec *btf.Spec) (reason func(uint32) string, symbol func(uint64) string) {
	names := sync.OnceValues(func() (*dropreason.Names, error) { return dropreason.Load(kspec) })
	reason = func(code uint32) string {
		n, err := names()
		if err != nil {
			return fmt.Sprintf("UNKNOWN_%d", code) // reason_code is kept
		}
		return n.Name(code)
	}
	return reason, kallsyms.New().Resolve
}

// Event implements tracer.Tool.
func (t *Tool) Event(raw []byte) error {
	e, err := decode(raw, t.sides, t.nameOf)
	if err != nil {
		return err
	}
	t.corr.Add(e)
	return t.corr.Err()
}

// UseCollection implements tracer.CollectionUser: the programs' direct-map
// variables, written once the lookup Spec started is done (directMap).
func (t *Tool) UseCollection(coll *ebpf.Collection) error {
	dm, err := newDirectMap(coll, t.dmFound, t.dmStarted)
	if err != nil {
		return err
	}
	t.dm = dm
	return nil
}

// Tick implements tracer.Tool.
func (t *Tool) Tick(now uint64) {
	t.corr.Tick(now)
	if t.dm != nil {
		t.dm.tick()
	}
}

// Finish implements tracer.Tool.
func (t *Tool) Finish() map[string]uint64 {
	t.corr.Flush(kernel.MonotonicNS())
	c := t.corr
	t.finished = true
	var unread uint64
	if t.dm != nil {
		unread = t.dm.unreadCount()
	}
	return map[string]uint64{
		"paged_headers_unread":   unread,
		"pings":                  c.Pings,
		"drops":                  c.Drops,
		"incomplete":             c.Incomplete,
		"late_events":            c.Late,
		"events_after_decision":  c.AfterEnd,
		"duplicate_stages":       c.Duplicates,
		"other_role":             c.OtherRole,
		"unmatched_kernel_drops": c.Unmatched,
	}
}

// Warnings implements tracer.WarningSource: headers in page fragments left
// unread by a direct-map lookup that failed, or that had not completed when
// the tracer stopped.
func (t *Tool) Warnings() []record.Warning {
	if t.dm == nil {
		return nil
	}
	return t.dm.warnings(t.finished)
}

// CostHooks implements tracer.CostHooks: the BPF programs account their runs
// under their hook (KindIngress, KindEgress, KindDrop, KindUpcall).
func (t *Tool) CostHooks() map[uint32]string {
	return map[uint32]string{uint32(KindIngress): hookIngress, uint32(KindEgress): hookEgress, uint32(KindDrop): hookDrop, uint32(KindUpcall): hookUpcall}
}
