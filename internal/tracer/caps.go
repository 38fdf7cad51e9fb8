package tracer

import (
	"strings"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/kernel"
)

// ProbeCapabilities asks the running kernel about every method and target the
// stages mention. It attaches an empty fentry (and tp_btf) program for a
// moment to learn whether trampolines (and typed tracepoints) work.
// btfFile is the kernel BTF file (--btf), "" for /sys/kernel/btf/vmlinux.
func ProbeCapabilities(stages []Stage, btfFile string) Capabilities {
	b, err := kernel.LoadBTF(btfFile)
	return probeCapabilities(stages, b, err, kernelChecks())
}

// kernelChecks are the real kernel's load-and-attach checks.
func kernelChecks() kernelSupport {
	return kernelSupport{fentry: kernel.FentrySupport, tpBTF: kernel.TpBTFSupport}
}

// kernelSupport holds the checks that need the kernel to load a program
// (kernel.FentrySupport, kernel.TpBTFSupport); tests fabricate them.
type kernelSupport struct {
	fentry func(fn string) error
	tpBTF  func(tp string) error
}

// probeCapabilities probes with b (nil and btfErr when there is no kernel
// BTF). Functions and raw tracepoints missing from vmlinux BTF are looked up
// in module BTF first, so that fentry reaches module functions (tun,
// vhost_net, kvm) and module tracepoints are found.
func probeCapabilities(stages []Stage, b *kernel.BTF, btfErr error, support kernelSupport) Capabilities {
	targets := Targets(stages)
	if btfErr == nil {
		tps := append(append([]string(nil), targets[RawTracepoint]...), targets[TpBTF]...)
		_ = b.FindInModules(targets[Fentry], tps) // on error: vmlinux only
	}
	caps := Capabilities{Methods: map[Method]string{}, Targets: map[Method]map[string]bool{}}
	reason := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	// fentry and tp_btf attach through the kernel's own BTF: a function or
	// a tracepoint's btf_trace_ typedef in vmlinux or module BTF.
	btfMethod := func(m Method, names []string, has func(string) bool, works func(string) error) {
		if len(names) == 0 {
			return
		}
		caps.Targets[m] = map[string]bool{}
		switch {
		case btfErr != nil:
			caps.Methods[m] = reason(btfErr)
		case b.File() != "":
			caps.Methods[m] = "kernel BTF given as a file (--btf " + b.File() + "): " + string(m) + " needs the kernel's own BTF"
		default:
			var probeOn string
			for _, n := range names {
				if has(n) {
					caps.Targets[m][n] = true
					if probeOn == "" {
						probeOn = n
					}
				}
			}
			if probeOn == "" {
				caps.Methods[m] = "none of " + strings.Join(names, ", ") + " in kernel BTF"
			} else {
				caps.Methods[m] = reason(works(probeOn))
			}
		}
	}
	// (Method values of a nil *kernel.BTF are only called when btfErr is nil.)
	btfMethod(Fentry, targets[Fentry], b.HasFunc, support.fentry)
	btfMethod(TpBTF, targets[TpBTF], b.HasRawTracepoint, support.tpBTF)
	if fns := targets[Kprobe]; len(fns) > 0 {
		caps.Methods[Kprobe] = reason(kernel.KprobeSupport())
		// Symbol lists cost tens of ms to read: only when kprobes work.
		if caps.Methods[Kprobe] == "" {
			if have, _, err := kernel.TraceableFunctions(fns); err == nil {
				caps.Targets[Kprobe] = have
			}
		}
	}
	if tps := targets[Tracepoint]; len(tps) > 0 {
		err := kernel.ProgramTypeSupport(ebpf.TracePoint)
		if err == nil {
			err = kernel.EnsureTracefs()
		}
		caps.Methods[Tracepoint] = reason(err)
		caps.Targets[Tracepoint] = map[string]bool{}
		for _, tp := range tps {
			if g, n, ok := strings.Cut(tp, "/"); ok && err == nil {
				caps.Targets[Tracepoint][tp] = kernel.HasTracepoint(g, n)
			}
		}
	}
	if tps := targets[RawTracepoint]; len(tps) > 0 {
		caps.Methods[RawTracepoint] = reason(kernel.ProgramTypeSupport(ebpf.RawTracepoint))
		caps.Targets[RawTracepoint] = map[string]bool{}
		for _, tp := range tps {
			// A raw tracepoint needs no BTF to attach: a module built without
			// BTF still lists its tracepoints in tracefs.
			caps.Targets[RawTracepoint][tp] = (btfErr == nil && b.HasRawTracepoint(tp)) || kernel.HasTracepointAnyGroup(tp)
		}
	}
	return caps
}
