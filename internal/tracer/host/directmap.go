package host

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
	"github.com/pingpath/pingpath/internal/record"
)

// The BPF program's direct-map variables (host.bpf.c, "Headers in page
// fragments").
const (
	varPageOffset  = "host_page_offset"
	varVmemmap     = "host_vmemmap"
	varLayoutVars  = "host_layout_vars"
	varPagedUnread = "host_paged_unread"
)

// x86-64's direct map and struct page array where the kernel does not
// randomize them (no CONFIG_DYNAMIC_MEMORY_LAYOUT, hence 4-level paging):
// __PAGE_OFFSET_BASE_L4 and VMEMMAP_START.
const (
	x86PageOffsetL4 = 0xffff888000000000
	x86VmemmapL4    = 0xffffea0000000000
)

// directMap tells the BPF programs how to reach the page fragments of a
// packet whose headers are not in its skb's linear part (large frames of
// virtio-net, tunnel packets of drivers that pull only the outer headers).
//
// The lookup reads /proc/kallsyms: 30-40 ms of kernel time on the 2-CPU
// development machine, 2 s in a KVM lab host (QEMU TCG) at load 6 and far
// more at load 30. It starts with the tracer, while the BPF object is
// loaded (which takes longer), and the ready line waits for it (at most
// dmReadyWait): its cost is start-up cost, and a run's first paged frames
// are read too. It used to start only once the programs had counted such a
// frame; in a KVM lab host it then completed after the run's last large
// ping (8 at 400 ms intervals), all of whose requests stayed unread.
//
// The packets it leaves unread (before it completed, or all of them when
// it failed, as on other architectures than x86-64) are counted
// (host_paged_unread, the trailer's paged_headers_unread) and their pings
// lack those stages, which a reader would take for losses: when there are
// any, a warning (record.WarnPagedHeaders) says why.
type directMap struct {
	pageOffset, vmemmap, layoutVars, unread *ebpf.Variable
	found                                   <-chan dmResult // the lookup's one result
	started                                 time.Time
	// Event goroutine only, from here.
	res    *dmResult // nil until received
	warned bool
}

// dmResult is what the direct-map lookup found.
type dmResult struct {
	pageOffset, vmemmap uint64
	vars                bool // the addresses of page_offset_base and vmemmap_base
	err                 error
	took                time.Duration
}

// dmReadyWait bounds how long the ready line waits for the lookup: beyond,
// the tracer starts without it and the ticks apply it once it is there.
const dmReadyWait = 5 * time.Second

// lookupDirectMap starts lookup in its own goroutine.
func lookupDirectMap(lookup func() (pageOffset, vmemmap uint64, vars bool, err error)) (<-chan dmResult, time.Time) {
	found, started := make(chan dmResult, 1), time.Now()
	go func() {
		var r dmResult
		r.pageOffset, r.vmemmap, r.vars, r.err = lookup()
		r.took = time.Since(started)
		found <- r
	}()
	return found, started
}

func newDirectMap(coll *ebpf.Collection, found <-chan dmResult, started time.Time) (*directMap, error) {
	d := &directMap{found: found, started: started}
	for name, v := range map[string]**ebpf.Variable{
		varPageOffset: &d.pageOffset, varVmemmap: &d.vmemmap, varLayoutVars: &d.layoutVars, varPagedUnread: &d.unread,
	} {
		if *v = coll.Variables[name]; *v == nil {
			return nil, fmt.Errorf("host BPF object: no variable %s", name)
		}
	}
	return d, nil
}

// await waits up to max for the lookup (before the ready line) and applies
// its result.
func (d *directMap) await(max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case r := <-d.found:
		d.apply(r)
	case <-t.C:
	}
}

// tick applies the lookup's result once it is there.
func (d *directMap) tick() {
	if d.res != nil {
		return
	}
	select {
	case r := <-d.found:
		d.apply(r)
	default:
	}
}

// apply writes the direct map into the programs' variables, the page
// offset last: the programs take a non-zero one as ready. A lookup that
// failed is not retried: such packets stay unmatched, counted and warned of.
func (d *directMap) apply(r dmResult) {
	d.res = &r
	if r.err != nil {
		return
	}
	for _, v := range []struct {
		name string
		v    *ebpf.Variable
		val  any
	}{{varLayoutVars, d.layoutVars, boolByte(r.vars)}, {varVmemmap, d.vmemmap, r.vmemmap}, {varPageOffset, d.pageOffset, r.pageOffset}} {
		if err := v.v.Set(v.val); err != nil {
			d.res.err = fmt.Errorf("telling the BPF programs the direct map: setting %s: %w", v.name, err)
			return
		}
	}
}

// warnings returns, once the programs have left packets unread, the
// warning saying why (pagedWarning), once.
func (d *directMap) warnings(stopping bool) []record.Warning {
	// Called after every tick: the unread count (a read of the programs'
	// variable) is only looked at when a warning can be due.
	if d.warned || !stopping && (d.res == nil || d.res.err == nil) {
		return nil
	}
	msg := pagedWarning(d.res, time.Since(d.started), d.unreadCount(), stopping)
	if msg == "" {
		return nil
	}
	d.warned = true
	return []record.Warning{{AtNS: kernel.MonotonicNS(), Code: record.WarnPagedHeaders, Message: msg}}
}

// pagedWarning is the message of a warning about unread hook crossings
// (none when there are none): at once when the lookup failed, else when
// the tracer is stopping (the lookup had not completed, after since, or
// completed after them); "" when there is nothing (yet) to say.
func pagedWarning(res *dmResult, since time.Duration, unread uint64, stopping bool) string {
	if unread == 0 {
		return ""
	}
	const what = "hook crossings of packets whose headers lay in page fragments were not read (trailer paged_headers_unread): their pings lack those stages, which is not a loss"
	switch {
	case res != nil && res.err != nil:
		return fmt.Sprintf("%d %s; they cannot be read on this machine: %v", unread, what, res.err)
	case !stopping:
		return ""
	case res == nil:
		return fmt.Sprintf("%d %s; the lookup of the kernel's direct map in %s had not completed %s after it started", unread, what, kallsyms.Path, since.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d %s; they came before the lookup of the kernel's direct map in %s completed (it took %s)", unread, what, kallsyms.Path, res.took.Round(time.Millisecond))
}

// x86DirectMap returns PAGE_OFFSET and the struct page array's address
// (vmemmap), or with vars the addresses of the kernel variables holding
// them (page_offset_base and vmemmap_base, when the layout is randomized).
func x86DirectMap(goarch string, data func([]string) (map[string]uint64, error)) (pageOffset, vmemmap uint64, vars bool, err error) {
	if goarch != "amd64" {
		return 0, 0, false, fmt.Errorf("headers in page fragments: not read on %s (only x86-64's direct map is known)", goarch)
	}
	syms, err := data([]string{"page_offset_base", "vmemmap_base"})
	if err != nil {
		return 0, 0, false, fmt.Errorf("finding the kernel's direct map: %w", err)
	}
	po, pok := syms["page_offset_base"]
	vm, vok := syms["vmemmap_base"]
	switch {
	case !pok && !vok:
		return x86PageOffsetL4, x86VmemmapL4, false, nil
	case !pok || !vok || po == 0 || vm == 0:
		return 0, 0, false, errors.New("finding the kernel's direct map: page_offset_base and vmemmap_base not both in /proc/kallsyms (addresses hidden?)")
	}
	return po, vm, true, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// unreadCount is how many packets' headers the programs could not read
// from page fragments.
func (d *directMap) unreadCount() uint64 {
	var n uint64
	if d.unread.Get(&n) != nil {
		return 0
	}
	return n
}
