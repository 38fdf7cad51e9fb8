package kernel

import (
	"strconv"
	"strings"
	"testing"
)

// An excerpt of a Debian 6.12 host's available_filter_functions (kvm.ko
// loaded): irqfd_wakeup is followed by two sites of overridden __weak stubs
// of virt/kvm/eventfd.c that lie inside its symbol, as is irqfd_shutdown;
// fentry on irqfd_wakeup attached and never ran there.
const filterFunctions612 = `tun_net_xmit [tun]
irqfd_inject [kvm]
irqfd_shutdown [kvm]
__ftrace_invalid_address___212 [kvm]
__ftrace_invalid_address___260 [kvm]
irqfd_wakeup [kvm]
__ftrace_invalid_address___452 [kvm]
__ftrace_invalid_address___484 [kvm]
kvm_notify_acked_gsi [kvm]
svm_deliver_interrupt [kvm_amd]
__ftrace_invalid_address___96 [kvm_amd]
`

// Before 5.19 such sites are listed under the enclosing symbol's name.
const filterFunctions510 = `irqfd_inject [kvm]
irqfd_wakeup [kvm]
irqfd_wakeup [kvm]
kvm_notify_acked_gsi [kvm]
eventfd_signal
`

func TestScanFilterFunctionsFentryUnsafe(t *testing.T) {
	for name, tc := range map[string]struct {
		list   string
		unsafe map[string]int // function → dead sites in its symbol
	}{
		"6.12": {filterFunctions612, map[string]int{"irqfd_wakeup": 2}},
		"5.10": {filterFunctions510, map[string]int{"irqfd_wakeup": 1}},
	} {
		t.Run(name, func(t *testing.T) {
			names := []string{"irqfd_wakeup", "irqfd_inject", "kvm_notify_acked_gsi", "tun_net_xmit", "eventfd_signal", "absent_fn"}
			fs, err := scanFilterFunctions(strings.NewReader(tc.list), names)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				want := strings.Contains(tc.list, n+"\n") || strings.Contains(tc.list, n+" ")
				if fs.Traceable[n] != want {
					t.Errorf("traceable %s: %v, want %v", n, fs.Traceable[n], want)
				}
				why := fs.FentryUnsafe[n]
				sites, bad := tc.unsafe[n]
				switch {
				case bad && !strings.Contains(why, "spans "+strconv.Itoa(sites)+" ftrace call site"):
					t.Errorf("%s: fentry reason %q, want %d dead sites named", n, why, sites)
				case !bad && why != "":
					t.Errorf("%s: fentry flagged unsafe (%q)", n, why)
				}
			}
			// Not asked about: not reported, even when its symbol spans dead sites.
			if _, ok := fs.FentryUnsafe["irqfd_shutdown"]; ok {
				t.Error("irqfd_shutdown reported though not asked about")
			}
		})
	}
}
