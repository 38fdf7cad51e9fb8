package kernel

import (
	"os"
	"strings"
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

func TestTextSymbols(t *testing.T) {
	got, err := scanTextSymbols(strings.NewReader(fakeKallsyms), []string{"icmp_rcv", "icmp_rcv_helper", "modfunc",
		"unsorted_mod", "icmp_data", "icmp", "cmp_rcv"}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]TextSymbol{
		"icmp_rcv":        {0xffffffff82051730, 0xffffffff82051af0},
		"icmp_rcv_helper": {0xffffffff82051b00, 0xffffffff82051c00},
		"modfunc":         {0xffffffffc0001000, 0}, // highest: no end
		"unsorted_mod":    {0xffffffffc0000000, 0xffffffffc0001000},
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s = %x, want %x", n, got[n], w)
		}
	}
	hidden, err := scanTextSymbols(strings.NewReader("0000000000000000 T icmp_rcv\n0000000000000000 T x\n"), []string{"icmp_rcv"}, true)
	if err != nil || hidden["icmp_rcv"].Start != 0 {
		t.Errorf("hidden addresses: %v %v", hidden, err)
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
	syms, err := TextSymbols([]string{"icmp_rcv"})
	if err != nil {
		t.Fatal(err)
	}
	if s := syms["icmp_rcv"]; s.End <= s.Start || s.End-s.Start > 1<<16 {
		t.Errorf("icmp_rcv range %x-%x", s.Start, s.End)
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
