package kallsyms

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

const sample = `ffffffff81000000 T _stext
ffffffff81e65360 T dev_hard_start_xmit
ffffffff81e65670 T __dev_queue_xmit
ffffffff81e66000 D some_data
ffffffffc0000000 t vxlan_rcv	[vxlan]
0000000000000000 T hidden
`

func TestResolve(t *testing.T) {
	scans := 0
	r := NewFrom(func() (io.ReadCloser, error) {
		scans++
		return io.NopCloser(strings.NewReader(sample)), nil
	})
	for addr, want := range map[uint64]string{
		0xffffffff81e65360: "dev_hard_start_xmit+0x0",
		0xffffffff81e65400: "dev_hard_start_xmit+0xa0",
		0xffffffff81e66010: "__dev_queue_xmit+0x9a0", // data symbols are not code
		0xffffffffc0000010: "vxlan_rcv+0x10",
		0x1000:             "",
		0:                  "",
	} {
		if got := r.Resolve(addr); got != want {
			t.Errorf("Resolve(%#x) = %q, want %q", addr, got, want)
		}
	}
	before := scans
	r.Resolve(0xffffffff81e65400)
	if scans != before {
		t.Error("cached address scanned again")
	}
}

func TestResolveRunningKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kallsyms addresses are hidden from non-root")
	}
	// Find a real symbol's address, then resolve an address inside it.
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "__dev_queue_xmit" {
			r := New()
			var addr uint64
			if _, err := fmtSscan(f[0], &addr); err != nil {
				t.Fatal(err)
			}
			// Another alias may share the address, but the offset must be exact.
			if got := r.Resolve(addr + 4); !strings.HasSuffix(got, "+0x4") {
				t.Errorf("Resolve(__dev_queue_xmit+4) = %q", got)
			}
			return
		}
	}
	t.Skip("__dev_queue_xmit not in kallsyms")
}

func fmtSscan(s string, v *uint64) (int, error) { return fmt.Sscanf(s, "%x", v) }

const fakeKallsyms = `ffffffff81000000 T _stext
ffffffff82051720 T __pfx_icmp_rcv
ffffffff82051730 T icmp_rcv
ffffffff82051af0 T __pfx_icmp_err
ffffffff82051b00 t icmp_rcv_helper
ffffffff82051c00 d icmp_data
ffffffffc0001000 t modfunc	[somemod]
ffffffffc0000000 t unsorted_mod	[somemod]
`

func TestLookup(t *testing.T) {
	got, err := lookup(strings.NewReader(fakeKallsyms), []string{"icmp_rcv", "icmp_rcv_helper", "modfunc",
		"unsorted_mod", "icmp_data", "icmp", "cmp_rcv"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Symbol{
		"icmp_rcv":        {0xffffffff82051730, 0xffffffff82051af0, ""},
		"icmp_rcv_helper": {0xffffffff82051b00, 0xffffffff82051c00, ""},
		"modfunc":         {0xffffffffc0001000, 0, "somemod"}, // highest: no end
		"unsorted_mod":    {0xffffffffc0000000, 0xffffffffc0001000, "somemod"},
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s = %x, want %x", n, got[n], w)
		}
	}
	hidden, err := lookup(strings.NewReader("0000000000000000 T icmp_rcv\n0000000000000000 T x\n"), []string{"icmp_rcv"})
	if err != nil || hidden["icmp_rcv"].Start != 0 {
		t.Errorf("hidden addresses: %v %v", hidden, err)
	}
}

func TestLookupRunningKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kallsyms addresses are hidden from non-root")
	}
	syms, err := Lookup([]string{"icmp_rcv"})
	if err != nil {
		t.Fatal(err)
	}
	if s := syms["icmp_rcv"]; s.End <= s.Start || s.End-s.Start > 1<<16 {
		t.Errorf("icmp_rcv range %x-%x", s.Start, s.End)
	}
}

func TestData(t *testing.T) {
	got, err := data(strings.NewReader(sample+"ffffffffc0001000 d mod_data\t[vxlan]\n"), []string{"some_data", "dev_hard_start_xmit", "mod_data", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	// Text symbols and module symbols are not the core kernel's data.
	if len(got) != 1 || got["some_data"] != 0xffffffff81e66000 {
		t.Errorf("data = %#v, want only some_data at 0xffffffff81e66000", got)
	}
}
