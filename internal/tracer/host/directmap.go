package host

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
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
// The lookup reads /proc/kallsyms (30-40 ms of kernel time on the 2-CPU
// development machine, far more under emulation), so it is done only once
// the programs have counted such a packet (host_paged_unread), after the
// ready line and off the event path; the packets seen before it completes
// are not matched. Only x86-64 is described; elsewhere they stay unmatched
// and counted.
type directMap struct {
	pageOffset, vmemmap, layoutVars, unread *ebpf.Variable
	state                                   atomic.Int32 // dmUnknown, dmLooking, dmDone
}

const (
	dmUnknown = iota
	dmLooking
	dmDone
)

func newDirectMap(coll *ebpf.Collection) (*directMap, error) {
	d := &directMap{}
	for name, v := range map[string]**ebpf.Variable{
		varPageOffset: &d.pageOffset, varVmemmap: &d.vmemmap, varLayoutVars: &d.layoutVars, varPagedUnread: &d.unread,
	} {
		if *v = coll.Variables[name]; *v == nil {
			return nil, fmt.Errorf("host BPF object: no variable %s", name)
		}
	}
	return d, nil
}

// tick starts the lookup once the programs met a packet they could not
// read.
func (d *directMap) tick() {
	if d.state.Load() != dmUnknown || d.unreadCount() == 0 {
		return
	}
	d.state.Store(dmLooking)
	go func() {
		// A lookup that fails (another architecture, addresses hidden)
		// is not retried: such packets stay unmatched, counted in the
		// trailer's paged_headers_unread.
		_ = d.resolve()
		d.state.Store(dmDone)
	}()
}

// resolve writes the direct map into the programs' variables, the page
// offset last: the programs take a non-zero one as ready.
func (d *directMap) resolve() error {
	pageOffset, vmemmap, vars, err := x86DirectMap(runtime.GOARCH, kallsyms.Data)
	if err != nil {
		return err
	}
	if err := d.layoutVars.Set(boolByte(vars)); err != nil {
		return fmt.Errorf("setting %s: %w", varLayoutVars, err)
	}
	if err := d.vmemmap.Set(vmemmap); err != nil {
		return fmt.Errorf("setting %s: %w", varVmemmap, err)
	}
	if err := d.pageOffset.Set(pageOffset); err != nil {
		return fmt.Errorf("setting %s: %w", varPageOffset, err)
	}
	return nil
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
