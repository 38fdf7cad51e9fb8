package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/pingpath/pingpath/internal/kernel/btftest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestRealKernel(t *testing.T) {
	testenv.RequireRoot(t)
	rel, err := Release()
	if err != nil || rel == "" {
		t.Fatalf("release %q %v", rel, err)
	}
	if id, err := BootID(); err != nil || len(id) != 36 {
		t.Errorf("boot id %q %v", id, err)
	}
	ino, err := NetnsInode()
	if err != nil || ino == 0 {
		t.Errorf("netns %d %v", ino, err)
	}
	if a, b := MonotonicNS(), MonotonicNS(); b < a || a == 0 {
		t.Errorf("monotonic %d %d", a, b)
	}
	if err := EnsureTracefs(); err != nil {
		t.Fatal(err)
	}
	if !HasTracepoint("net", "net_dev_queue") || HasTracepoint("net", "no_such_tracepoint") {
		t.Error("tracepoint lookup wrong")
	}
	for field, want := range map[string]bool{"skbaddr": true, "location": true, "nosuchfield": false} {
		if got, err := TracepointHasField("skb", "consume_skb", field); err != nil || got != want {
			t.Errorf("consume_skb field %s: %v %v", field, got, err)
		}
	}
	_, err = os.Stat("/sys/kernel/btf/vmlinux")
	testenv.Require(t, err == nil, "the kernel has no vmlinux BTF")
	b, err := LoadBTF("")
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasFunc("icmp_rcv") || b.HasFunc("no_such_function_xyz") || !b.HasRawTracepoint("netif_receive_skb") {
		t.Error("BTF lookups wrong")
	}
}

// Module functions and tracepoints are found in module BTF; names vmlinux
// describes stay vmlinux's, absent names stay absent.
func TestFindInModules(t *testing.T) {
	b := NewBTF(btftest.Spec(t, []string{"icmp_rcv"}, []string{"netif_receive_skb"}), map[string]*btf.Spec{
		"tun":  btftest.Spec(t, []string{"tun_net_xmit", "icmp_rcv"}, nil),
		"kvm":  btftest.Spec(t, []string{"irqfd_wakeup"}, []string{"kvm_set_irq"}),
		"vhst": btftest.Spec(t, nil, nil),
	})
	if b.HasFunc("tun_net_xmit") || b.HasRawTracepoint("kvm_set_irq") {
		t.Fatal("module names known before FindInModules")
	}
	if err := b.FindInModules([]string{"icmp_rcv", "tun_net_xmit", "irqfd_wakeup", "nope"}, []string{"netif_receive_skb", "kvm_set_irq", "nope_tp"}); err != nil {
		t.Fatal(err)
	}
	for fn, mod := range map[string]string{"icmp_rcv": "", "tun_net_xmit": "tun", "irqfd_wakeup": "kvm"} {
		if !b.HasFunc(fn) || b.FuncModule(fn) != mod {
			t.Errorf("%s: has %v module %q, want module %q", fn, b.HasFunc(fn), b.FuncModule(fn), mod)
		}
	}
	if b.HasFunc("nope") || b.HasRawTracepoint("nope_tp") {
		t.Error("absent names found")
	}
	if !b.HasRawTracepoint("kvm_set_irq") || !b.HasRawTracepoint("netif_receive_skb") {
		t.Error("tracepoints not found")
	}
}

// On the running kernel, every module with BTF that defines a function
// makes that function an fentry target.
func TestFindInModulesRunningKernel(t *testing.T) {
	testenv.RequireRoot(t)
	b, err := LoadBTF("")
	if err != nil {
		t.Skip(err)
	}
	ents, _ := os.ReadDir("/sys/kernel/btf")
	var mod string
	for _, e := range ents {
		if e.Name() != "vmlinux" {
			mod = e.Name()
			break
		}
	}
	if mod == "" {
		t.Skip("no module with BTF loaded")
	}
	spec, err := b.Cache().Module(mod)
	if err != nil {
		t.Fatal(err)
	}
	var fn string
	for typ := range spec.All() {
		if f, ok := typ.(*btf.Func); ok && !hasFunc(b.Spec(), f.Name) {
			fn = f.Name
			break
		}
	}
	if fn == "" {
		t.Skipf("module %s has no function of its own in BTF", mod)
	}
	if err := b.FindInModules([]string{fn}, nil); err != nil {
		t.Fatal(err)
	}
	if !b.HasFunc(fn) || b.FuncModule(fn) != mod {
		t.Errorf("%s of module %s: has %v module %q", fn, mod, b.HasFunc(fn), b.FuncModule(fn))
	}
}

// TestLoadBTFFile: the kernel's BTF given as a file (what --btf takes on a
// kernel without /sys/kernel/btf/vmlinux) answers the same lookups, says
// where it came from and searches no module BTF; a file that is not BTF is
// an error naming it.
func TestLoadBTFFile(t *testing.T) {
	raw, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	testenv.Require(t, err == nil, "the kernel has no vmlinux BTF to copy")
	dir := t.TempDir()
	file := filepath.Join(dir, "vmlinux.btf")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBTF(file)
	if err != nil {
		t.Fatal(err)
	}
	if b.File() != file || b.Cache() != nil {
		t.Errorf("File() %q, Cache() %v", b.File(), b.Cache())
	}
	if !b.HasFunc("icmp_rcv") || !b.HasRawTracepoint("netif_receive_skb") || b.HasFunc("no_such_function_xyz") {
		t.Error("BTF lookups wrong")
	}
	if err := b.FindInModules([]string{"no_such_function_xyz"}, nil); err != nil || b.FuncModule("no_such_function_xyz") != "" {
		t.Errorf("module lookup with a BTF file: %v", err)
	}
	bad := filepath.Join(dir, "not-btf")
	if err := os.WriteFile(bad, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBTF(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadBTF(%s) = %v, want an error naming the file", bad, err)
	}
}

func TestFtracePatchedIn(t *testing.T) {
	// enabled_functions of the 6.12 guest with fentry links on three kvm
	// functions, one of which the kernel never patched.
	list := "eventfd_signal_mask (1) R   D   M \ttramp: ftrace_regs_caller+0x0/0x65 (call_direct_funcs+0x0/0x20)\n" +
		"\tdirect-->bpf_trampoline_6442497614+0x0/0xac\n" +
		"kvm_arch_set_irq_inatomic [kvm] (1) R   D   M \ttramp: ftrace_regs_caller+0x0/0x65 (call_direct_funcs+0x0/0x20)\n" +
		"\tdirect-->bpf_trampoline_83751970098+0x0/0xc4\n"
	got := ftracePatchedIn(list, []string{"eventfd_signal_mask", "kvm_arch_set_irq_inatomic", "irqfd_wakeup", "bpf_trampoline_6442497614+0x0/0xac"})
	want := map[string]bool{"eventfd_signal_mask": true, "kvm_arch_set_irq_inatomic": true}
	if len(got) != len(want) || !got["eventfd_signal_mask"] || !got["kvm_arch_set_irq_inatomic"] {
		t.Errorf("patched = %v, want %v", got, want)
	}
}
