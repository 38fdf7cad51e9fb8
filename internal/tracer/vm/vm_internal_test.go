package vm

import (
	"errors"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
)

// The hook numbers exist twice, in vm.bpf.c and here; keep them equal.
func TestHookNumbersMatchC(t *testing.T) {
	src, err := os.ReadFile("vm.bpf.c")
	if err != nil {
		t.Fatal(err)
	}
	goHooks := map[string]uint8{"IP_OUT": hookIPOut, "DEV_QUEUE": hookDevQueue, "NETIF_RX": hookNetifRX,
		"ICMP_RCV": hookICMPRcv, "SENDTO": hookSendto, "CONSUME": hookConsume, "FIB_IN": hookFibIn, "FIB_OUT": hookFibOut}
	re := regexp.MustCompile(`(?m)^#define VM_HOOK_(\w+) (\d+)$`)
	seen := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		n, _ := strconv.Atoi(m[2])
		g, ok := goHooks[m[1]]
		if !ok || int(g) != n {
			t.Errorf("VM_HOOK_%s = %d in C, %d (present %v) in Go", m[1], n, g, ok)
		}
		seen++
	}
	if seen != len(goHooks) {
		t.Errorf("C defines %d hooks, Go %d", seen, len(goHooks))
	}
}

// dev_queue_xmit's event carries the send start where sendStart reads it.
func TestEventLayout(t *testing.T) {
	var e vmVmEvent
	if got, want := unsafe.Sizeof(e), uintptr(sendStartOffset+8); got != want {
		t.Errorf("sizeof(struct vm_event) = %d, sendStart assumes %d", got, want)
	}
	if got := unsafe.Offsetof(e.SendTs); got != sendStartOffset {
		t.Errorf("vm_event.send_ts at byte %d, sendStart reads byte %d", got, sendStartOffset)
	}
}

// Every program a ladder names exists in the object, every program of the
// object is on some ladder, and every (hook, kind) a role's programs can emit
// maps to a stage of that role.
func TestLaddersMatchObject(t *testing.T) {
	spec, err := loadVm()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, role := range []string{record.RoleTX, record.RoleRX} {
		stages := Stages(role)
		if len(stages) != 4 {
			t.Fatalf("%s: %d stages", role, len(stages))
		}
		for _, st := range stages {
			hasTP := false
			for _, r := range st.Rungs {
				hasTP = hasTP || r.Method == tracer.Tracepoint || r.Method == tracer.RawTracepoint
				for _, h := range r.Hooks {
					if _, ok := spec.Programs[h.Program]; !ok {
						t.Errorf("%s/%s: program %s not in vm.bpf.c", role, st.Name, h.Program)
					}
					used[h.Program] = true
				}
			}
			if !hasTP {
				t.Errorf("%s/%s: no tracepoint rung (kernels without kprobes could not see it)", role, st.Name)
			}
		}
	}
	for name := range spec.Programs {
		if !used[name] {
			t.Errorf("program %s is on no ladder", name)
		}
	}
}

// loadOne loads a single program of the object with a realistic filter and
// reports the verifier's verdict.
func loadOne(t *testing.T, name string) error {
	t.Helper()
	spec, err := loadVm()
	if err != nil {
		t.Fatal(err)
	}
	for n := range spec.Programs {
		if n != name {
			delete(spec.Programs, n)
		}
	}
	if spec.Programs[name].Type == ebpf.Tracing {
		target := strings.TrimPrefix(name, "vm_fentry_")
		if strings.HasSuffix(target, "_inner") {
			target = "__" + strings.TrimSuffix(target, "_inner")
		}
		spec.Programs[name].AttachTo = target
	}
	id := uint16(77)
	f := tracer.Filter{SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"),
		ICMPID: &id, Netns: 4026531840, Ifindexes: []uint32{2, 3}}
	if err := f.Apply(spec); err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return err
	}
	coll.Close()
	return nil
}

// Every variant passes the verifier where the kernel can load its program
// type: on this machine kprobe, tracepoint and raw tracepoint programs load
// (kprobes only cannot be attached), fentry programs are refused at load.
func TestProgramsPassVerifier(t *testing.T) {
	testenv.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := loadVm()
	if err != nil {
		t.Fatal(err)
	}
	b, err := kernel.LoadBTF("")
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range spec.Programs {
		t.Run(name, func(t *testing.T) {
			if ps.Type == ebpf.Tracing {
				if err := kernel.FentrySupport("icmp_rcv"); err != nil {
					testenv.GuestOnly(t, "fentry not loadable here: "+err.Error())
				}
				target := strings.TrimPrefix(name, "vm_fentry_")
				if strings.HasSuffix(target, "_inner") {
					target = "__" + strings.TrimSuffix(target, "_inner")
				}
				if !b.HasFunc(target) {
					t.Skipf("%s not in this kernel's BTF", target)
				}
			} else if err := kernel.ProgramTypeSupport(ps.Type); err != nil {
				testenv.GuestOnly(t, err.Error())
			}
			if err := loadOne(t, name); err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("verifier rejected %s: %v", name, strings.Join(ve.Log[max(0, len(ve.Log)-20):], "\n"))
				}
				t.Fatalf("loading %s: %v", name, err)
			}
		})
	}
}

// A rung keeps working when one of its hooks cannot attach; a stage whose
// every hook fails is an error.
func TestLoadAndAttachDropsFailedHooks(t *testing.T) {
	testenv.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	rung := func(targets ...string) tracer.Rung {
		r := tracer.Rung{Method: tracer.RawTracepoint}
		for _, tg := range targets {
			r.Hooks = append(r.Hooks, tracer.Hook{Target: tg, Program: "vm_raw_tp_netif_receive_skb"})
		}
		return r
	}
	choices := []tracer.Choice{{Stage: "s", Available: true, Rung: rung("netif_receive_skb", "no_such_tracepoint_pp")}}
	spec, err := loadVm()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tracer.PruneSpec(spec, choices); err != nil {
		t.Fatal(err)
	}
	l, err := tracer.LoadAndAttach(spec, choices, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if p := choices[0].Probe(); p.Target != "netif_receive_skb" || !strings.Contains(p.Reason, "no_such_tracepoint_pp") {
		t.Errorf("probe after a failed hook = %+v", p)
	}
	choices = []tracer.Choice{{Stage: "s", Available: true, Rung: rung("no_such_tracepoint_pp")}}
	spec, _ = loadVm()
	if _, err := tracer.PruneSpec(spec, choices); err != nil {
		t.Fatal(err)
	}
	if l, err := tracer.LoadAndAttach(spec, choices, nil); err == nil {
		l.Close()
		t.Error("a stage without any attached hook loaded")
	}
}

// The vm tracer's stages are record.VM's, in path order, for both roles, and
// every stage is stamped by some hook.
func TestStagesMatchRecord(t *testing.T) {
	for _, role := range record.VM.Roles {
		var names []string
		for _, s := range Stages(role) {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, record.VM.Stages) {
			t.Errorf("%s: ladder stages %v, record.VM %v", role, names, record.VM.Stages)
		}
		stamped := map[string]bool{}
		for _, st := range stageOf(role) {
			if record.VM.Index(st) < 0 {
				t.Errorf("%s: a hook stamps %q, not a record.VM stage", role, st)
			}
			stamped[st] = true
		}
		if len(stamped) != len(record.VM.Stages) {
			t.Errorf("%s: hooks stamp %v, want every one of %v", role, stamped, record.VM.Stages)
		}
	}
}
