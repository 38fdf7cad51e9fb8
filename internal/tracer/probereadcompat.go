package tracer

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// UseOldProbeRead replaces every call of bpf_probe_read_kernel,
// bpf_probe_read_user (5.5+) and their _str forms in spec with
// bpf_probe_read (_str), and returns how many it replaced. cilium/ebpf
// does exactly this by itself when loading on a kernel that lacks the new
// helpers (fixupProbeReadKernel, decided by a feature probe), so one
// object serves both; forcing it (--probe-read-compat) lets a newer
// kernel's verifier and real packets prove the programs with the old
// helpers (the kernel matrix's btf-file rung on 5.10). bpf_probe_read
// tells user from kernel pointers by address on architectures whose
// address spaces do not overlap (x86, arm64).
func UseOldProbeRead(spec *ebpf.CollectionSpec) int {
	n := 0
	for _, p := range spec.Programs {
		for i := range p.Instructions {
			ins := &p.Instructions[i]
			if !ins.IsBuiltinCall() {
				continue
			}
			switch asm.BuiltinFunc(ins.Constant) {
			case asm.FnProbeReadKernel, asm.FnProbeReadUser:
				ins.Constant = int64(asm.FnProbeRead)
				n++
			case asm.FnProbeReadKernelStr, asm.FnProbeReadUserStr:
				ins.Constant = int64(asm.FnProbeReadStr)
				n++
			}
		}
	}
	return n
}
