package main

import (
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// First kernels of what the tracers' programs use (from the kernel's
// git history; bpf-helpers(7) and the BCC "BPF features by Linux kernel
// version" list agree).
var (
	programTypes = map[ebpf.ProgramType]Version{
		ebpf.Kprobe:        {4, 1},
		ebpf.TracePoint:    {4, 7},
		ebpf.RawTracepoint: {4, 17},
		ebpf.Tracing:       {5, 5}, // fentry
	}
	helpers = map[asm.BuiltinFunc]Need{
		asm.FnMapLookupElem:      {Since: Version{3, 19}},
		asm.FnMapUpdateElem:      {Since: Version{3, 19}},
		asm.FnMapDeleteElem:      {Since: Version{3, 19}},
		asm.FnKtimeGetNs:         {Since: Version{4, 1}},
		asm.FnGetPrandomU32:      {Since: Version{4, 1}},
		asm.FnGetSmpProcessorId:  {Since: Version{4, 1}},
		asm.FnGetCurrentPidTgid:  {Since: Version{4, 2}},
		asm.FnGetCurrentComm:     {Since: Version{4, 2}},
		asm.FnPerfEventOutput:    {Since: Version{4, 4}},
		asm.FnGetCurrentTask:     {Since: Version{4, 8}},
		asm.FnProbeRead:          {Since: Version{4, 1}},
		asm.FnProbeReadStr:       {Since: Version{4, 11}},
		asm.FnProbeReadKernel:    {Since: Version{5, 5}, Fallback: "bpf_probe_read, rewritten by the loader"},
		asm.FnProbeReadUser:      {Since: Version{5, 5}, Fallback: "bpf_probe_read, rewritten by the loader"},
		asm.FnProbeReadKernelStr: {Since: Version{5, 5}, Fallback: "bpf_probe_read_str, rewritten by the loader"},
		asm.FnProbeReadUserStr:   {Since: Version{5, 5}, Fallback: "bpf_probe_read_str, rewritten by the loader"},
		asm.FnRingbufReserve:     {Since: Version{5, 8}, Fallback: "perf event array"},
		asm.FnRingbufSubmit:      {Since: Version{5, 8}, Fallback: "perf event array"},
		asm.FnRingbufDiscard:     {Since: Version{5, 8}, Fallback: "perf event array"},
	}
	mapTypes = map[ebpf.MapType]Need{
		ebpf.Hash:           {Since: Version{3, 19}},
		ebpf.Array:          {Since: Version{3, 19}},
		ebpf.PerfEventArray: {Since: Version{4, 3}},
		ebpf.PerCPUArray:    {Since: Version{4, 6}},
		ebpf.PerCPUHash:     {Since: Version{4, 6}},
		ebpf.LRUHash:        {Since: Version{4, 10}},
		ebpf.RingBuf:        {Since: Version{5, 8}, Fallback: "perf event array"},
	}
	globalData   = Version{5, 2}  // .rodata/.data/.bss as maps, frozen read-only .rodata
	boundedLoops = Version{5, 3}  // back-edges accepted by the verifier
	bpfCalls     = Version{4, 16} // BPF-to-BPF function calls
	fetchAtomics = Version{5, 12} // atomics other than a plain add
	sysfsBTF     = Version{5, 4}  // /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)
	unknown      = Version{99, 0} // a helper or map type missing from the tables
)

func analyzeProgram(object string, p *ebpf.ProgramSpec, maps map[string]*ebpf.MapSpec) Program {
	out := Program{Object: object, Name: p.Name, Type: p.Type}
	needs := map[string]Need{}
	add := func(n Need) {
		if old, ok := needs[n.What]; !ok || old.Since.Less(n.Since) {
			needs[n.What] = n
		}
	}
	if v, ok := programTypes[p.Type]; ok {
		add(Need{What: "program type " + p.Type.String(), Since: v})
	} else {
		add(Need{What: "program type " + p.Type.String(), Since: unknown})
	}
	for i, ins := range p.Instructions {
		out.Instructions += int(ins.Size() / asm.InstructionSize)
		if btf.CORERelocationMetadata(&p.Instructions[i]) != nil {
			add(Need{What: "kernel BTF (CO-RE)", Since: sysfsBTF, Fallback: "--btf FILE"})
		}
		switch {
		case ins.IsBuiltinCall():
			fn := asm.BuiltinFunc(ins.Constant)
			n, ok := helpers[fn]
			if !ok {
				n.Since = unknown
			}
			n.What = helperName(fn)
			add(n)
		case ins.IsFunctionCall():
			add(Need{What: "BPF-to-BPF calls", Since: bpfCalls})
		case ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() != asm.Call && ins.OpCode.JumpOp() != asm.Exit && ins.Offset < 0:
			out.Loops++
		case ins.OpCode.Class() == asm.StXClass && ins.OpCode.Mode() == asm.AtomicMode && ins.OpCode.AtomicOp() != asm.AddAtomic:
			add(Need{What: "atomic " + ins.OpCode.AtomicOp().String(), Since: fetchAtomics})
		}
		if ref := ins.Reference(); ref != "" && ins.OpCode.IsDWordLoad() {
			m := maps[ref]
			switch {
			case strings.HasPrefix(ref, "."):
				add(Need{What: "global data", Since: globalData})
			case m != nil:
				n, ok := mapTypes[m.Type]
				if !ok {
					n.Since = unknown
				}
				n.What = "map " + m.Type.String()
				add(n)
			}
		}
	}
	if out.Loops > 0 {
		add(Need{What: "bounded loops", Since: boundedLoops})
	}
	for _, n := range needs {
		out.Needs = append(out.Needs, n)
	}
	sort.Slice(out.Needs, func(i, j int) bool {
		a, b := out.Needs[i], out.Needs[j]
		if a.Since != b.Since {
			return b.Since.Less(a.Since)
		}
		return a.What < b.What
	})
	// Only what decides the oldest kernel, and what has a fallback: the
	// 3.x/4.x basics every kernel with the program type has are left out.
	var kept []Need
	for _, n := range out.Needs {
		if n.Fallback != "" || !n.Since.Less(Version{4, 17}) {
			kept = append(kept, n)
		}
	}
	out.Needs = kept
	return out
}

func helperName(fn asm.BuiltinFunc) string {
	s := strings.TrimPrefix(fn.String(), "Fn")
	var b strings.Builder
	b.WriteString("bpf")
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
