package kallsyms

import (
	"os"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	tab, err := Parse(strings.NewReader(`ffffffff81000000 T _stext
ffffffff81e65360 T dev_hard_start_xmit
ffffffff81e65670 T __dev_queue_xmit
ffffffff82000000 D some_data
ffffffffc0000000 t vxlan_rcv	[vxlan]
`))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[uint64]string{
		0xffffffff81e65360: "dev_hard_start_xmit+0x0",
		0xffffffff81e65400: "dev_hard_start_xmit+0xa0",
		0xffffffff81e65680: "__dev_queue_xmit+0x10",
		0xffffffffc0000010: "vxlan_rcv+0x10",
		0x1000:             "",
		0:                  "",
	} {
		if got := tab.Resolve(addr); got != want {
			t.Errorf("Resolve(%#x) = %q, want %q", addr, got, want)
		}
	}
}

func TestLoadRunningKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kallsyms addresses are hidden from non-root")
	}
	tab, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.addrs) < 1000 {
		t.Fatalf("only %d text symbols read", len(tab.addrs))
	}
	for i, n := range tab.names {
		if n != "__dev_queue_xmit" {
			continue
		}
		// Another alias may share the address, but the offset must be exact.
		if got := tab.Resolve(tab.addrs[i] + 4); !strings.HasSuffix(got, "+0x4") {
			t.Errorf("Resolve(__dev_queue_xmit+4) = %q", got)
		}
		return
	}
	t.Skip("__dev_queue_xmit not in kallsyms")
}
