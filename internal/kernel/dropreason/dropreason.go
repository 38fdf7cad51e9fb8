// Package dropreason names the kernel's skb drop reasons (the "reason" field of
// the skb:kfree_skb tracepoint). Names are read from the running kernel's BTF
// (enum skb_drop_reason), never from a table compiled into pingpath: the enum
// gains, loses and renumbers values between kernel versions, so a hard-coded
// table would silently mislabel drops on the next kernel.
package dropreason

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Codes below this value are not drops: SKB_NOT_DROPPED_YET (0) and
// SKB_CONSUMED (1) are stable since the enum was introduced in 5.17.
const (
	NotDroppedYet = 0
	Consumed      = 1
)

// subsysShift is SKB_DROP_REASON_SUBSYS_SHIFT: a reason's upper 16 bits name
// the subsystem that owns it (0 = core, see enum skb_drop_reason_subsys).
const subsysShift = 16

// Names maps drop reason codes to names such as "NETFILTER_DROP".
type Names struct {
	core   map[uint32]string
	subsys map[uint32]string
}

// Load reads enum skb_drop_reason (and skb_drop_reason_subsys where present)
// from spec, or from the running kernel's BTF when spec is nil.
func Load(spec *btf.Spec) (*Names, error) {
	if spec == nil {
		var err error
		if spec, err = btf.LoadKernelSpec(); err != nil {
			return nil, fmt.Errorf("loading kernel btf for drop reasons: %w", err)
		}
	}
	var reasons *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &reasons); err != nil {
		return nil, fmt.Errorf("finding enum skb_drop_reason in kernel btf: %w", err)
	}
	n := &Names{
		core:   enumNames(reasons, "SKB_DROP_REASON_"),
		subsys: map[uint32]string{},
	}
	var subsys *btf.Enum
	err := spec.TypeByName("skb_drop_reason_subsys", &subsys)
	switch {
	case err == nil:
		n.subsys = enumNames(subsys, "SKB_DROP_REASON_SUBSYS_")
	case errors.Is(err, btf.ErrNotFound):
		// Kernels before 6.4 have no subsystem-owned reasons.
	default:
		return nil, fmt.Errorf("finding enum skb_drop_reason_subsys in kernel btf: %w", err)
	}
	n.loadModuleReasons()
	return n, nil
}

// moduleReasons lists the subsystem-owned reason enums and the module whose
// BTF declares them; their values carry the subsystem in the upper bits.
var moduleReasons = []struct{ module, enum, prefix string }{
	{"openvswitch", "ovs_drop_reason", ""},
	{"mac80211", "mac80211_drop_reason", "RX_DROP_"},
}

// loadModuleReasons names subsystem reasons from the BTF of loaded modules
// (OVS drops are "OVS_DROP_LAST_ACTION" rather than "OPENVSWITCH:1"). A
// module that is not loaded cannot have dropped anything.
func (n *Names) loadModuleReasons() {
	for _, m := range moduleReasons {
		if _, err := os.Stat("/sys/kernel/btf/" + m.module); err != nil {
			continue
		}
		spec, err := btf.LoadKernelModuleSpec(m.module)
		if err != nil {
			continue // names fall back to "<SUBSYS>:<n>"
		}
		var e *btf.Enum
		if spec.TypeByName(m.enum, &e) != nil {
			continue
		}
		for code, name := range enumNames(e, m.prefix) {
			if code>>subsysShift != 0 {
				n.core[code] = name
			}
		}
	}
}

// FromMap builds Names from a code → name table (tests, recorded streams).
func FromMap(core map[uint32]string) *Names {
	return &Names{core: core, subsys: map[uint32]string{}}
}

func enumNames(e *btf.Enum, prefix string) map[uint32]string {
	m := make(map[uint32]string, len(e.Values))
	for _, v := range e.Values {
		// "SKB_CONSUMED" and "SKB_NOT_DROPPED_YET" lack the common prefix.
		name := strings.TrimPrefix(v.Name, prefix)
		name = strings.TrimPrefix(name, "SKB_")
		m[uint32(v.Value)] = name
	}
	return m
}

// Name returns the name of code, e.g. "NETFILTER_DROP". A subsystem-owned
// code is named from its module's enum when that module is loaded (e.g.
// "OVS_DROP_LAST_ACTION"), else "<SUBSYS>:<n>" (e.g. "OPENVSWITCH:3"); a code
// this kernel does not know is "UNKNOWN_<code>", so a name is never empty.
func (n *Names) Name(code uint32) string {
	if s, ok := n.core[code]; ok {
		return s
	}
	if sub := code >> subsysShift; sub != 0 {
		s, ok := n.subsys[sub]
		if !ok {
			s = fmt.Sprintf("SUBSYS_%d", sub)
		}
		return fmt.Sprintf("%s:%d", s, code&(1<<subsysShift-1))
	}
	return fmt.Sprintf("UNKNOWN_%d", code)
}

// Code returns the code of a name as this kernel numbers it.
func (n *Names) Code(name string) (uint32, bool) {
	for c, s := range n.core {
		if s == name {
			return c, true
		}
	}
	return 0, false
}
