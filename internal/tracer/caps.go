package tracer

import (
	"strings"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/kernel"
)

// ProbeCapabilities asks the running kernel about every method and target the
// stages mention. It attaches an empty fentry program for a moment to learn
// whether trampolines work.
// btfFile is the kernel BTF file (--btf), "" for /sys/kernel/btf/vmlinux.
func ProbeCapabilities(stages []Stage, btfFile string) Capabilities {
	b, err := kernel.LoadBTF(btfFile)
	return probeCapabilities(stages, b, err, kernel.FentrySupport)
}

// probeCapabilities probes with b (nil and btfErr when there is no kernel
// BTF); fentrySupport tells whether trampolines attach to a function
// (kernel.FentrySupport; tests fabricate it). Functions and raw tracepoints
// missing from vmlinux BTF are looked up in module BTF first, so that fentry
// reaches module functions (tun, vhost_net, kvm) and module tracepoints are
// found.
func probeCapabilities(stages []Stage, b *kernel.BTF, btfErr error, fentrySupport func(string) error) Capabilities {
	targets := Targets(stages)
	if btfErr == nil {
		_ = b.FindInModules(targets[Fentry], targets[RawTracepoint]) // on error: vmlinux only
	}
	caps := Capabilities{Methods: map[Method]string{}, Targets: map[Method]map[string]bool{}}
	reason := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	if fns := targets[Fentry]; len(fns) > 0 {
		caps.Targets[Fentry] = map[string]bool{}
		switch {
		case btfErr != nil:
			caps.Methods[Fentry] = reason(btfErr)
		case b.File() != "":
			caps.Methods[Fentry] = "kernel BTF given as a file (--btf " + b.File() + "): fentry needs the kernel's own BTF"
		default:
			var probeOn string
			for _, fn := range fns {
				if b.HasFunc(fn) {
					caps.Targets[Fentry][fn] = true
					if probeOn == "" {
						probeOn = fn
					}
				}
			}
			if probeOn == "" {
				caps.Methods[Fentry] = "none of " + strings.Join(fns, ", ") + " in kernel BTF"
			} else {
				caps.Methods[Fentry] = reason(fentrySupport(probeOn))
			}
		}
	}
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
