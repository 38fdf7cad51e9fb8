package tracer

import (
	"errors"
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
	return kernelSupport{fentry: kernel.FentrySupport, tpBTF: kernel.TpBTFSupport, functions: kernel.ScanFunctions}
}

// kernelSupport holds the checks that need the kernel to load a program
// (kernel.FentrySupport, kernel.TpBTFSupport) and the function list
// (kernel.ScanFunctions); tests fabricate them.
type kernelSupport struct {
	fentry    func(fn string) error
	tpBTF     func(tp string) error
	functions func(names []string) (kernel.Functions, error)
}

// probeCapabilities probes with b (nil and btfErr when there is no kernel
// BTF). Functions and raw tracepoints missing from vmlinux BTF are looked up
// in module BTF first, so that fentry reaches module functions (tun,
// vhost_net, kvm) and module tracepoints are found. A function whose fentry
// program may never run (kernel.Functions.FentryUnsafe) is no fentry
// target; its next rung serves.
func probeCapabilities(stages []Stage, b *kernel.BTF, btfErr error, support kernelSupport) Capabilities {
	targets := Targets(stages)
	if btfErr == nil {
		tps := append(append([]string(nil), targets[RawTracepoint]...), targets[TpBTF]...)
		_ = b.FindInModules(targets[Fentry], tps) // on error: vmlinux only
	}
	caps := Capabilities{Methods: map[Method]string{}, Targets: map[Method]map[string]bool{}, Unusable: map[Method]map[string]string{}}
	reason := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	kprobeWhy := ""
	if len(targets[Kprobe]) > 0 {
		kprobeWhy = reason(kernel.KprobeSupport())
	}
	// The function list (available_filter_functions: seconds to generate
	// on an emulated machine) is read once for both methods.
	var fns kernel.Functions
	fnsErr := errors.New("not read")
	if kprobeWhy == "" && len(targets[Kprobe]) > 0 || btfErr == nil && len(targets[Fentry]) > 0 {
		fns, fnsErr = support.functions(append(append([]string(nil), targets[Fentry]...), targets[Kprobe]...))
	}
	// fentry and tp_btf attach through the kernel's own BTF: a function or
	// a tracepoint's btf_trace_ typedef in vmlinux or module BTF.
	btfMethod := func(m Method, names []string, has func(string) bool, works func(string) error, unsafe map[string]string) {
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
				if why := unsafe[n]; why != "" && has(n) {
					if caps.Unusable[m] == nil {
						caps.Unusable[m] = map[string]string{}
					}
					caps.Unusable[m][n] = why
					continue
				}
				if has(n) {
					caps.Targets[m][n] = true
					if probeOn == "" {
						probeOn = n
					}
				}
			}
			switch {
			case probeOn == "" && len(caps.Unusable[m]) > 0:
				caps.Methods[m] = "no usable target: " + caps.Unusable[m][names[0]]
			case probeOn == "":
				caps.Methods[m] = "none of " + strings.Join(names, ", ") + " in kernel BTF"
			default:
				caps.Methods[m] = reason(works(probeOn))
			}
		}
	}
	// (Method values of a nil *kernel.BTF are only called when btfErr is nil.)
	btfMethod(Fentry, targets[Fentry], b.HasFunc, support.fentry, fns.FentryUnsafe)
	btfMethod(TpBTF, targets[TpBTF], b.HasRawTracepoint, support.tpBTF, nil)
	if len(targets[Kprobe]) > 0 {
		caps.Methods[Kprobe] = kprobeWhy
		if kprobeWhy == "" && fnsErr == nil {
			caps.Targets[Kprobe] = fns.Traceable
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
