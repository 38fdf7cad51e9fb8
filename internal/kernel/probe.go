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

	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
)

// ProgramTypeSupport returns nil when the kernel can load programs of type pt
// (cilium/ebpf feature probe).
func ProgramTypeSupport(pt ebpf.ProgramType) error {
	if err := features.HaveProgramType(pt); err != nil {
		return fmt.Errorf("program type %s: %w", pt, err)
	}
	return nil
}

// MapTypeSupport returns nil when the kernel can create maps of type mt
// (cilium/ebpf feature probe): ring buffers (5.8+) decide the tracers'
// event buffer.
func MapTypeSupport(mt ebpf.MapType) error {
	if err := features.HaveMapType(mt); err != nil {
		return fmt.Errorf("map type %s: %w", mt, err)
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
	return tracingSupport(ebpf.AttachTraceFEntry, fn, "fentry")
}

// TpBTFSupport returns nil when a tp_btf program (a BTF-typed raw
// tracepoint) can really be attached to tracepoint tp, the same way. It needs
// no trampoline: kernels that refuse fentry may run it (cilium/ebpf's
// feature probe for the Tracing program type loads an fentry program, so it
// fails on such kernels: not asked here).
func TpBTFSupport(tp string) error {
	return tracingSupport(ebpf.AttachTraceRawTp, tp, "tp_btf")
}

// tracingSupport loads an empty BPF_PROG_TYPE_TRACING program of attach type
// at on target and attaches it for a moment; what names the method in errors.
func tracingSupport(at ebpf.AttachType, target, what string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "pp_probe_" + what,
		Type:       ebpf.Tracing,
		AttachType: at,
		AttachTo:   target,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("loading a test %s program on %s: %w", what, target, err)
	}
	defer prog.Close()
	lk, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attaching a test %s program on %s: %w", what, target, err)
	}
	return lk.Close()
}

// BTF is the running kernel's BTF: vmlinux, plus the BTF of the modules
// (/sys/kernel/btf/<module>) that define functions and tracepoints a tracer
// asked about with FindInModules. fentry on a module function needs its
// module's BTF (cilium/ebpf finds the module's BTF object at load time);
// functions and tracepoints of tun, vhost_net or kvm built as modules are
// only there.
type BTF struct {
	cache   *btf.Cache
	vmlinux *btf.Spec
	// modules are module BTFs given up front (NewBTF); nil: load modules
	// through cache, locating symbols with /proc/kallsyms.
	modules map[string]*btf.Spec
	funcs   map[string]string // function absent from vmlinux → module whose BTF has it
	rawTPs  map[string]string // raw tracepoint absent from vmlinux → module
	// file is the BTF file given for a kernel without
	// /sys/kernel/btf/vmlinux ("" for the kernel's own BTF).
	file string
}

// LoadBTF reads the kernel's vmlinux BTF: from file when one is given (a
// kernel built without CONFIG_DEBUG_INFO_BTF: pahole --btf_encode_detached
// output, a BTFHub-style archive's file, or an ELF vmlinux with a .BTF
// section), else from /sys/kernel/btf/vmlinux.
func LoadBTF(file string) (*BTF, error) {
	if file != "" {
		s, err := btf.LoadSpec(file)
		if err != nil {
			return nil, fmt.Errorf("loading kernel BTF from %s: %w", file, err)
		}
		// No module BTF: module functions and types are not looked up.
		return &BTF{vmlinux: s, modules: map[string]*btf.Spec{}, funcs: map[string]string{}, rawTPs: map[string]string{}, file: file}, nil
	}
	c := btf.NewCache()
	s, err := c.Kernel()
	if err != nil {
		return nil, fmt.Errorf("loading kernel BTF: %w", err)
	}
	return &BTF{cache: c, vmlinux: s, funcs: map[string]string{}, rawTPs: map[string]string{}}, nil
}

// NewBTF is a BTF over specs already parsed: vmlinux and modules by name
// (tests fabricate kernels with it). FindInModules searches modules.
func NewBTF(vmlinux *btf.Spec, modules map[string]*btf.Spec) *BTF {
	if modules == nil {
		modules = map[string]*btf.Spec{}
	}
	return &BTF{vmlinux: vmlinux, modules: modules, funcs: map[string]string{}, rawTPs: map[string]string{}}
}

// traceIterPrefix names the function every tracepoint has since 5.10
// (__traceiter_<name>): kallsyms says which module defines it.
const traceIterPrefix = "__traceiter_"

// FindInModules looks for the functions funcs and raw tracepoints rawTPs
// that vmlinux BTF lacks in module BTF, so that HasFunc and
// HasRawTracepoint answer for them too. One /proc/kallsyms pass names the
// module defining each (a tracepoint through its __traceiter_ function);
// that module's BTF must then describe the function (or the tracepoint's
// btf_trace_ typedef). Modules without BTF are skipped. An error means the
// lookup could not be done (the names stay unknown), not that a name is
// absent.
func (b *BTF) FindInModules(funcs, rawTPs []string) error {
	var fnMiss, tpMiss []string
	for _, fn := range funcs {
		if !hasFunc(b.vmlinux, fn) {
			fnMiss = append(fnMiss, fn)
		}
	}
	for _, tp := range rawTPs {
		if !hasRawTP(b.vmlinux, tp) {
			tpMiss = append(tpMiss, tp)
		}
	}
	if len(fnMiss)+len(tpMiss) == 0 {
		return nil
	}
	if b.modules != nil { // fabricated: search every given module
		for name, spec := range b.modules {
			b.match(name, spec, fnMiss, tpMiss)
		}
		return nil
	}
	names := append([]string(nil), fnMiss...)
	for _, tp := range tpMiss {
		names = append(names, traceIterPrefix+tp)
	}
	syms, err := kallsyms.Lookup(names)
	if err != nil {
		return fmt.Errorf("locating module functions: %w", err)
	}
	byModule := map[string][2][]string{}
	for _, fn := range fnMiss {
		if m := syms[fn].Module; m != "" {
			e := byModule[m]
			e[0] = append(e[0], fn)
			byModule[m] = e
		}
	}
	for _, tp := range tpMiss {
		if m := syms[traceIterPrefix+tp].Module; m != "" {
			e := byModule[m]
			e[1] = append(e[1], tp)
			byModule[m] = e
		}
	}
	for m, e := range byModule {
		spec, err := b.cache.Module(m)
		if err != nil {
			continue // module built without BTF: kprobes and tracefs remain
		}
		b.match(m, spec, e[0], e[1])
	}
	return nil
}

// match records which of funcs and rawTPs module's spec describes.
func (b *BTF) match(module string, spec *btf.Spec, funcs, rawTPs []string) {
	for _, fn := range funcs {
		if _, dup := b.funcs[fn]; !dup && hasFunc(spec, fn) {
			b.funcs[fn] = module
		}
	}
	for _, tp := range rawTPs {
		if _, dup := b.rawTPs[tp]; !dup && hasRawTP(spec, tp) {
			b.rawTPs[tp] = module
		}
	}
}

func hasFunc(s *btf.Spec, name string) bool {
	var fn *btf.Func
	return s.TypeByName(name, &fn) == nil
}

// hasRawTP: the kernel declares a btf_trace_<name> typedef for every
// tracepoint.
func hasRawTP(s *btf.Spec, name string) bool {
	var td *btf.Typedef
	return s.TypeByName("btf_trace_"+name, &td) == nil
}

// HasFunc reports whether the kernel BTF describes function name (an fentry
// target): vmlinux, or a module found by FindInModules.
func (b *BTF) HasFunc(name string) bool {
	_, inModule := b.funcs[name]
	return inModule || hasFunc(b.vmlinux, name)
}

// FuncModule is the module whose BTF describes name ("" for vmlinux or
// unknown).
func (b *BTF) FuncModule(name string) string { return b.funcs[name] }

// HasRawTracepoint reports whether raw tracepoint name exists: in vmlinux
// BTF, or in a module found by FindInModules.
func (b *BTF) HasRawTracepoint(name string) bool {
	_, inModule := b.rawTPs[name]
	return inModule || hasRawTP(b.vmlinux, name)
}

// File is the BTF file the BTF was read from, "" for the kernel's own.
func (b *BTF) File() string { return b.file }

// Spec returns the parsed vmlinux BTF (for CO-RE relocation at load time).
func (b *BTF) Spec() *btf.Spec { return b.vmlinux }

// Cache is the BTF cache holding vmlinux and the modules read so far, to be
// shared with the collection load (nil for a fabricated BTF).
func (b *BTF) Cache() *btf.Cache { return b.cache }
