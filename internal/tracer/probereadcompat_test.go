package tracer

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestUseOldProbeRead: every _kernel/_user probe read becomes the old
// helper of the same kind, and nothing else changes. (The kernel matrix's
// btf-file rung loads the real programs so rewritten on 5.10.)
func TestUseOldProbeRead(t *testing.T) {
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"a": {Instructions: asm.Instructions{
			asm.FnProbeReadKernel.Call(), asm.FnProbeReadUser.Call(), asm.FnKtimeGetNs.Call(),
			asm.FnProbeReadKernelStr.Call(), asm.FnProbeReadUserStr.Call(), asm.Return(),
		}},
		"b": {Instructions: asm.Instructions{asm.FnProbeRead.Call(), asm.Return()}},
	}}
	if n := UseOldProbeRead(spec); n != 4 {
		t.Errorf("replaced %d calls, want 4", n)
	}
	want := map[string][]asm.BuiltinFunc{
		"a": {asm.FnProbeRead, asm.FnProbeRead, asm.FnKtimeGetNs, asm.FnProbeReadStr, asm.FnProbeReadStr},
		"b": {asm.FnProbeRead},
	}
	for name, fns := range want {
		insns := spec.Programs[name].Instructions
		for i, fn := range fns {
			if got := asm.BuiltinFunc(insns[i].Constant); !insns[i].IsBuiltinCall() || got != fn {
				t.Errorf("%s[%d] = %v, want a call of %v", name, i, insns[i], fn)
			}
		}
	}
}
