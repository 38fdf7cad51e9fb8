package selftest

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/testkit/vhostnet/vhosttest"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/host"
	"github.com/pingpath/pingpath/internal/tracer/vhost"
	"github.com/pingpath/pingpath/internal/tracer/vm"
)

// TestGuestAutoPicksFentry checks that --probe auto chooses the fentry rung
// on the matrix kernels (which have BTF and BPF trampolines) for every stage
// of every tracer whose first rung with a function or event on this kernel
// is a fentry rung: the ladders are meant to use the cheapest method
// wherever production kernels allow it, and the host cannot show that (it
// refuses fentry). A stage whose ladder prefers another method where its
// target exists keeps it: on arm64, vhost-rx's s5_kvm_irq has the kvm
// tracepoints (KVM is built in there) before kvm_arch_set_irq_inatomic.
func TestGuestAutoPicksFentry(t *testing.T) {
	testenv.GuestOnly(t, "the host kernel refuses fentry; the guest kernels allow it")
	testenv.RequireRoot(t)

	p := vhosttest.NewPeer(t)
	ladders := map[string][]tracer.Stage{
		"vm/tx": vm.Stages(record.RoleTX),
		"vm/rx": vm.Stages(record.RoleRX),
		"host":  new(host.Tool).Stages(),
	}
	// The vhost tracers build their ladders from what they discover behind
	// the interface: use the tap our vhost-net driver owns.
	for _, tool := range []string{record.ToolVhostRX, record.ToolVhostTX} {
		err := p.NS.Do(func() error {
			tr, err := vhost.New(vhost.Config{Tool: tool, Interface: p.TapName, SrcIP: p.GuestAddr, DstIP: p.TapAddr})
			if err != nil {
				return err
			}
			ladders[tool] = tr.Stages()
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}

	// BPF trampolines on kernel functions need ftrace direct calls, which
	// arm64 has only since 6.4: before, fentry cannot attach there (the
	// kernel answers ENOTSUPP) and the ladders take kprobes.
	noTrampolines := runtime.GOARCH == "arm64" && kernelBefore(t, 6, 4)
	fentryStages := 0
	for _, name := range slices.Sorted(maps.Keys(ladders)) {
		stages := ladders[name]
		caps := tracer.ProbeCapabilities(stages, "")
		if why, ok := caps.Methods[tracer.Fentry]; !ok || why != "" {
			switch {
			case !hasFentryRung(stages):
			case noTrampolines:
				t.Logf("%s: fentry unusable, as on every arm64 kernel before 6.4: %q", name, why)
			default:
				t.Errorf("%s: fentry unusable on this kernel: %q", name, why)
			}
			continue
		}
		choices, err := tracer.Select(stages, caps, tracer.ProbeAuto)
		if err != nil {
			t.Errorf("%s: --probe auto: %v", name, err)
			continue
		}
		for i, st := range stages {
			first := firstPresentRung(caps, st)
			if first == nil || first.Method != tracer.Fentry {
				continue
			}
			fentryStages++
			c := choices[i]
			if c.Rung.Method != tracer.Fentry {
				t.Errorf("%s stage %s: auto chose %s (%s), want fentry", name, st.Name, c.Rung.Method, c.Reason)
				continue
			}
			t.Logf("%s stage %s: auto → fentry:%s", name, st.Name, targets(c.Rung))
		}
	}
	if fentryStages == 0 && !noTrampolines {
		t.Error("no stage of any tracer has a usable fentry rung on this kernel")
	}
}

// kernelBefore tells whether the running kernel is older than major.minor.
func kernelBefore(t *testing.T, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(uname(t), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", uname(t), err)
	}
	return ma < major || ma == major && mi < minor
}

// firstPresentRung is the first rung of the stage with a target on this
// kernel.
func firstPresentRung(caps tracer.Capabilities, st tracer.Stage) *tracer.Rung {
	for i, r := range st.Rungs {
		if anyTarget(caps, r) {
			return &st.Rungs[i]
		}
	}
	return nil
}

func hasFentryRung(stages []tracer.Stage) bool {
	for _, st := range stages {
		for _, r := range st.Rungs {
			if r.Method == tracer.Fentry {
				return true
			}
		}
	}
	return false
}

func anyTarget(caps tracer.Capabilities, r tracer.Rung) bool {
	for _, h := range r.Hooks {
		if caps.Targets[r.Method][h.Target] {
			return true
		}
	}
	return false
}

func targets(r tracer.Rung) string {
	var s []string
	for _, h := range r.Hooks {
		s = append(s, h.Target)
	}
	return strings.Join(s, ",")
}
