package vhostnet_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pingpath/pingpath/internal/testkit/kvmirq"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/testkit/vhostnet"
	"github.com/pingpath/pingpath/internal/testkit/vhostnet/vhosttest"
)

// TestGuestVhostNetPing pushes ICMP echo requests from our rings through
// vhost-net into a tap inside a namespace, whose kernel answers; the replies
// travel tap → vhost → our RX ring. Kprobe counters prove the kernel paths
// the vhost tracers watch really ran.
func TestGuestVhostNetPing(t *testing.T) {
	testenv.GuestOnly(t, "needs /dev/vhost-net and kprobes")
	testenv.RequireRoot(t)

	counters := attachCounters(t, map[string][]string{
		"tun_net_xmit": {"tun_net_xmit"},
		"handle_rx":    {"handle_rx"},
		// The origin tools' "vhost_signal" stage: vhost_signal itself is
		// inlined into it inside vhost.ko, so a kprobe on it never fires.
		"vhost_signal": {"vhost_add_used_and_signal_n"},
		// eventfd_signal became an inline wrapper of eventfd_signal_mask in 6.8.
		"eventfd_signal": {"eventfd_signal", "eventfd_signal_mask"},
		"handle_tx":      {"handle_tx"},
		"tun_sendmsg":    {"tun_sendmsg"},
	})

	p := vhosttest.NewPeer(t)
	const pings = 3
	for seq := uint16(1); seq <= pings; seq++ {
		reply, err := p.Ping(seq, []byte("pingpath vhostnet"), 5*time.Second)
		if err != nil {
			t.Fatalf("ping seq %d: %v", seq, err)
		}
		if reply.Src != p.TapAddr || reply.Dst != p.GuestAddr || !bytes.Equal(reply.DstMAC, p.GuestMAC) {
			t.Errorf("seq %d: reply %s→%s to %s, want %s→%s to %s", seq, reply.Src, reply.Dst, reply.DstMAC, p.TapAddr, p.GuestAddr, p.GuestMAC)
		}
	}
	if err := p.Dev.WaitSent(2 * time.Second); err != nil {
		t.Error(err)
	}
	for _, name := range slices.Sorted(maps.Keys(counters)) {
		c := counters[name]
		n := c.count(t)
		t.Logf("%s (%s): %d calls", name, c.symbol, n)
		if n == 0 {
			t.Errorf("%s (%s) never ran: the vhost path was not exercised", name, c.symbol)
		}
	}
}

// TestGuestVhostNetIRQFD gives the RX queue's call eventfd to a KVM irqfd
// (internal/testkit/kvmirq: a VM with an in-kernel irqchip, one vCPU and an
// MSI route), as QEMU does for a KVM guest: each reply vhost delivers then
// runs irqfd_wakeup in the vhost worker and KVM's interrupt injection. The
// kernel-matrix guests have KVM from QEMU's emulated AMD SVM.
func TestGuestVhostNetIRQFD(t *testing.T) {
	testenv.GuestOnly(t, "needs /dev/vhost-net, /dev/kvm and kprobes")
	testenv.RequireRoot(t)
	kvmirq.SkipUnlessX86(t)
	vm, err := kvmirq.Open()
	testenv.Require(t, err == nil, fmt.Sprintf("a KVM VM with an irqfd (kvm and kvm_amd/kvm_intel loaded): %v", err))
	t.Cleanup(func() { vm.Close() })

	counters := attachCounters(t, map[string][]string{
		"vhost_signal": {"vhost_add_used_and_signal_n"},
		"irqfd_wakeup": {"irqfd_wakeup"},
		// The fast path in the waking task; irqfd_inject (a kworker) is
		// the slow one.
		"inject": {"kvm_arch_set_irq_inatomic"},
	})
	p := vhosttest.NewPeer(t)
	if err := vm.AttachIRQFD(p.Dev.TakeRXCall()); err != nil {
		t.Fatal(err)
	}
	const pings = 3
	for seq := uint16(1); seq <= pings; seq++ {
		if _, err := p.Ping(seq, []byte("pingpath irqfd"), 5*time.Second); err != nil {
			t.Fatalf("ping seq %d: %v", seq, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counters)) {
		c := counters[name]
		n := c.count(t)
		t.Logf("%s (%s): %d calls", name, c.symbol, n)
		if n < pings {
			t.Errorf("%s (%s) ran %d times for %d replies: the irqfd path was not exercised", name, c.symbol, n, pings)
		}
	}
}

// counter is a kprobe that counts calls of one kernel function.
type counter struct {
	symbol string
	m      *ebpf.Map
}

func (c *counter) count(t *testing.T) uint64 {
	var v uint64
	if err := c.m.Lookup(uint32(0), &v); err != nil {
		t.Fatalf("reading the %s counter: %v", c.symbol, err)
	}
	return v
}

// attachCounters attaches a counting kprobe per name, on the first of its
// candidate symbols the running kernel has.
func attachCounters(t *testing.T, candidates map[string][]string) map[string]*counter {
	t.Helper()
	syms, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	have := func(sym string) bool {
		return strings.Contains(string(syms), " "+sym+"\n") || strings.Contains(string(syms), " "+sym+"\t")
	}
	out := map[string]*counter{}
	for name, cands := range candidates {
		sym := ""
		for _, c := range cands {
			if have(c) {
				sym = c
				break
			}
		}
		if sym == "" {
			t.Fatalf("kernel has none of %v", cands)
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
		if err != nil {
			t.Fatalf("creating the %s counter map: %v", sym, err)
		}
		t.Cleanup(func() { m.Close() })
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "vhn_count", Type: ebpf.Kprobe, License: "GPL",
			Instructions: asm.Instructions{
				asm.StoreImm(asm.RFP, -4, 0, asm.Word),
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -4),
				asm.FnMapLookupElem.Call(),
				asm.JEq.Imm(asm.R0, 0, "out"),
				asm.Mov.Imm(asm.R1, 1),
				asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
				asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
				asm.Return(),
			},
		})
		if err != nil {
			t.Fatalf("loading the %s counter: %v", sym, err)
		}
		t.Cleanup(func() { prog.Close() })
		l, err := link.Kprobe(sym, prog, nil)
		if err != nil {
			t.Fatalf("attaching kprobe %s: %v", sym, err)
		}
		t.Cleanup(func() { l.Close() })
		out[name] = &counter{symbol: sym, m: m}
	}
	return out
}

// TestGuestOpenFailsCleanly: when vhost-net refuses the backend (a pipe,
// not a tap), Open returns the error and releases what it set up. That path
// once called Close on the nil Device its failing return had set, and the
// panic hid the error (a 6.12 matrix cell, 2026-12-06).
func TestGuestOpenFailsCleanly(t *testing.T) {
	testenv.GuestOnly(t, "needs /dev/vhost-net")
	testenv.RequireRoot(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	d, err := vhostnet.Open(r, vhostnet.Options{})
	if err == nil {
		d.Close()
		t.Fatal("Open took a pipe as its tap")
	}
	if !strings.Contains(err.Error(), "VHOST_NET_SET_BACKEND") {
		t.Errorf("Open with a pipe: %v, want VHOST_NET_SET_BACKEND's refusal", err)
	}
}
