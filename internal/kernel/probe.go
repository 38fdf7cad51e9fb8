package kernel

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// ProgramTypeSupport returns nil when the kernel can load programs of type pt
// (cilium/ebpf feature probe).
func ProgramTypeSupport(pt ebpf.ProgramType) error {
	if err := features.HaveProgramType(pt); err != nil {
		return fmt.Errorf("program type %s: %w", pt, err)
	}
	return nil
}

// KprobeSupport returns nil when kprobes can be created: the kernel has the
// kprobe program type and a kprobe PMU or tracefs kprobe_events.
func KprobeSupport() error {
	if err := ProgramTypeSupport(ebpf.Kprobe); err != nil {
		return err
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err == nil {
		return nil
	}
	_ = EnsureTracefs()
	if _, err := os.Stat(tracefsRoot() + "/kprobe_events"); err == nil {
		return nil
	}
	return errors.New("no kprobe PMU and no tracefs kprobe_events (kernel built without CONFIG_KPROBES?)")
}

// FentrySupport returns nil when an fentry program can really be attached to
// fn (a BTF function), by loading and attaching an empty one for a moment:
// kernels may accept the program type and still refuse trampolines.
func FentrySupport(fn string) error {
	if err := ProgramTypeSupport(ebpf.Tracing); err != nil {
		return err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "pp_probe_fentry",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry,
		AttachTo:   fn,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("loading a test fentry program on %s: %w", fn, err)
	}
	defer prog.Close()
	lk, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attaching a test fentry program on %s: %w", fn, err)
	}
	return lk.Close()
}

// BTF is the running kernel's BTF (vmlinux only).
type BTF struct{ spec *btf.Spec }

// LoadBTF reads the kernel's BTF.
func LoadBTF() (*BTF, error) {
	s, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("loading kernel BTF: %w", err)
	}
	return &BTF{spec: s}, nil
}

// HasFunc reports whether the kernel BTF describes function name (an fentry
// target).
func (b *BTF) HasFunc(name string) bool {
	var fn *btf.Func
	return b.spec.TypeByName(name, &fn) == nil
}

// HasRawTracepoint reports whether raw tracepoint name exists: the kernel
// declares a btf_trace_<name> typedef for every tracepoint.
func (b *BTF) HasRawTracepoint(name string) bool {
	var td *btf.Typedef
	return b.spec.TypeByName("btf_trace_"+name, &td) == nil
}

// Spec returns the parsed BTF (for CO-RE relocation at load time).
func (b *BTF) Spec() *btf.Spec { return b.spec }
