package kernel

import (
	"os"
	"testing"

	"github.com/pingpath/pingpath/internal/testenv"
)

const fakeKallsyms = `ffffffff81000000 T _stext
ffffffff82051720 T __pfx_icmp_rcv
ffffffff82051730 T icmp_rcv
ffffffff82051af0 T __pfx_icmp_err
ffffffff82051b00 t icmp_rcv_helper
ffffffff82051c00 d icmp_data
ffffffffc0001000 t modfunc	[somemod]
ffffffffc0000000 t unsorted_mod	[somemod]
`

func TestKallsymsFind(t *testing.T) {
	k := &Kallsyms{data: []byte(fakeKallsyms)}
	for name, want := range map[string]bool{"icmp_rcv": true, "icmp_rcv_helper": true, "modfunc": true,
		"icmp_data": false, "icmp": false, "cmp_rcv": false} {
		if got := k.HasText(name); got != want {
			t.Errorf("HasText(%s) = %v", name, got)
		}
	}
	s, e, err := k.Range("icmp_rcv")
	if err != nil || s != 0xffffffff82051730 || e != 0xffffffff82051af0 {
		t.Errorf("Range(icmp_rcv) = %x %x %v", s, e, err)
	}
	// Not followed by a higher address: full scan.
	s, e, err = k.Range("unsorted_mod")
	if err != nil || s != 0xffffffffc0000000 || e != 0xffffffffc0001000 {
		t.Errorf("Range(unsorted_mod) = %x %x %v", s, e, err)
	}
	if _, _, err := k.Range("modfunc"); err == nil {
		t.Error("Range of the highest symbol succeeded")
	}
	if _, _, err := k.Range("nothere"); err == nil {
		t.Error("Range of a missing symbol succeeded")
	}
	hidden := &Kallsyms{data: []byte("0000000000000000 T icmp_rcv\n0000000000000000 T x\n")}
	if _, _, err := hidden.Range("icmp_rcv"); err == nil {
		t.Error("Range with hidden addresses succeeded")
	}
}

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
	k, err := LoadKallsyms()
	if err != nil {
		t.Fatal(err)
	}
	s, e, err := k.Range("icmp_rcv")
	if err != nil || e <= s || e-s > 1<<16 {
		t.Errorf("icmp_rcv range %x-%x %v", s, e, err)
	}
	if err := EnsureTracefs(); err != nil {
		t.Fatal(err)
	}
	if !HasTracepoint("net", "net_dev_queue") || HasTracepoint("net", "no_such_tracepoint") {
		t.Error("tracepoint lookup wrong")
	}
	b, err := LoadBTF()
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasFunc("icmp_rcv") || b.HasFunc("no_such_function_xyz") || !b.HasRawTracepoint("netif_receive_skb") {
		t.Error("BTF lookups wrong")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("no vmlinux BTF")
	}
}
