package dropreason

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestKernelNames(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel btf: %v", err)
	}
	n, err := Load(spec)
	if err != nil {
		t.Fatal(err)
	}
	// These names exist on every kernel with drop reasons (5.17+); their
	// numbers differ between versions, which is why we look them up.
	for _, name := range []string{"NOT_SPECIFIED", "NETFILTER_DROP", "CONSUMED", "NOT_DROPPED_YET"} {
		c, ok := n.Code(name)
		if !ok {
			t.Errorf("reason %s missing from kernel enum", name)
			continue
		}
		if got := n.Name(c); got != name {
			t.Errorf("Name(%d) = %q, want %q", c, got, name)
		}
	}
	if c, _ := n.Code("CONSUMED"); c != Consumed {
		t.Errorf("CONSUMED = %d, want %d", c, Consumed)
	}
}

func TestNameFallbacks(t *testing.T) {
	n := FromMap(map[uint32]string{2: "NOT_SPECIFIED", 2<<16 | 1: "OVS_DROP_LAST_ACTION"})
	n.subsys = map[uint32]string{2: "OPENVSWITCH"}
	for code, want := range map[uint32]string{
		2:         "NOT_SPECIFIED",
		2<<16 | 1: "OVS_DROP_LAST_ACTION",
		9999:      "UNKNOWN_9999",
		2<<16 | 3: "OPENVSWITCH:3",
		7<<16 | 1: "SUBSYS_7:1",
	} {
		if got := n.Name(code); got != want {
			t.Errorf("Name(%#x) = %q, want %q", code, got, want)
		}
	}
}
