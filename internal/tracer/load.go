package tracer

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pingpath/pingpath/internal/kernel"
)

// Map names every pingpath object has (defined in pingpath.h).
const (
	EventsMap = "pp_events"
	LostMap   = "pp_lost"
)

// Loaded is a loaded collection with its programs attached.
type Loaded struct {
	Coll  *ebpf.Collection
	links []link.Link
	// ProgramIDs are the kernel IDs of the loaded programs (tests use them to
	// check everything is gone after exit).
	ProgramIDs []ebpf.ProgramID
}

// PruneSpec deletes from spec every program the choices do not use, so that
// programs this kernel cannot load (fentry without trampolines, kprobes
// without CONFIG_KPROBES) never reach the verifier. It returns the used
// program names.
func PruneSpec(spec *ebpf.CollectionSpec, choices []Choice) ([]string, error) {
	used := map[string]bool{}
	for _, c := range choices {
		if !c.Available {
			continue
		}
		for _, h := range c.Rung.Hooks {
			ps, ok := spec.Programs[h.Program]
			if !ok {
				return nil, fmt.Errorf("stage %s: program %s not in the BPF object", c.Stage, h.Program)
			}
			if c.Rung.Method == Fentry || c.Rung.Method == TpBTF {
				// One fentry/tp_btf program per target: a program's BTF
				// attach target is fixed at load time.
				if used[h.Program] && ps.AttachTo != h.Target {
					return nil, fmt.Errorf("stage %s: %s program %s used for two targets (%s, %s)", c.Stage, c.Rung.Method, h.Program, ps.AttachTo, h.Target)
				}
				ps.AttachTo = h.Target
			}
			used[h.Program] = true
		}
	}
	for name := range spec.Programs {
		if !used[name] {
			delete(spec.Programs, name)
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// LoadAndAttach loads spec (already pruned and configured) and attaches every
// chosen hook through a BPF link. A hook that fails to attach is dropped from
// its choice (with the reason) when another hook of the stage attached;
// otherwise everything done so far is undone and the error returned.
// kbtf, when not nil, is the kernel BTF already read (spares reading it and
// module BTF again for CO-RE relocation and fentry targets).
func LoadAndAttach(spec *ebpf.CollectionSpec, choices []Choice, kbtf *kernel.BTF) (*Loaded, error) {
	var opts ebpf.CollectionOptions
	if kbtf != nil {
		opts.Programs.KernelTypes = kbtf.Spec()
		// Module BTF read while choosing probes serves the fentry
		// programs on module functions.
		opts.Cache = kbtf.Cache()
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading BPF programs: %w (verifier log tail: %s)", err, strings.Join(tail(ve.Log, 8), " | "))
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	l := &Loaded{Coll: coll}
	for name, p := range coll.Programs {
		info, err := p.Info()
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("reading info of program %s: %w", name, err)
		}
		id, _ := info.ID()
		l.ProgramIDs = append(l.ProgramIDs, id)
	}
	// A hook shared by two stages (one program telling them apart) is
	// attached once.
	attached := map[string]error{}
	var moduleFentry []string // fentry targets in modules, checked below
	for i := range choices {
		c := &choices[i]
		if !c.Available {
			continue
		}
		var kept []Hook
		var failed []string
		for _, h := range c.Rung.Hooks {
			key := string(c.Rung.Method) + "/" + h.Target + "/" + h.Program
			err, done := attached[key]
			if !done {
				var lk link.Link
				if lk, err = attach(c.Rung.Method, h, coll.Programs[h.Program]); err == nil {
					l.links = append(l.links, lk)
					if c.Rung.Method == Fentry && kbtf != nil && kbtf.FuncModule(h.Target) != "" {
						moduleFentry = append(moduleFentry, h.Target)
					}
				}
				attached[key] = err
			}
			if err != nil {
				failed = append(failed, fmt.Sprintf("attaching %s %s: %v", c.Rung.Method, h.Target, err))
				continue
			}
			kept = append(kept, h)
		}
		if len(kept) == 0 {
			l.Close()
			return nil, fmt.Errorf("stage %s: %s", c.Stage, strings.Join(failed, "; "))
		}
		// A rung with several hooks works when one attaches (e.g. only
		// __ip_local_out is traceable): report what was dropped.
		if len(failed) > 0 {
			c.Rung.Hooks = kept
			c.Reason = joinReason(c.Reason, strings.Join(failed, "; "))
		}
	}
	if err := checkModuleFentry(moduleFentry); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// UnpatchedFentryError: fentry links on these module functions were created
// but the kernel never patched the functions, so the programs would never
// run. The known cause is predicted before attaching (probeCapabilities,
// kernel.Functions.FentryUnsafe): the trampoline's ftrace direct call is
// registered at ftrace_location(function address), which for an IBT
// function (endbr64 first, the ftrace site at +4) picks any ftrace site
// inside the symbol's kallsyms extent — on Debian 6.12's kvm.ko,
// irqfd_wakeup's extent also holds the disabled sites of two overridden
// __weak stubs, one of them was picked, and ftrace never patched it (6.1's
// layout happens to give the right one). This check stays as the safety net
// for whatever else leaves a link unpatched: the runner then takes these
// stages' next rung.
type UnpatchedFentryError struct{ Targets []string }

func (e *UnpatchedFentryError) Error() string {
	return fmt.Sprintf("fentry attached to module function(s) %s but the kernel did not patch them (not in tracefs enabled_functions)", strings.Join(e.Targets, ", "))
}

// unpatchedNote is the reason a stage's fentry rung was given up.
const unpatchedNote = "fentry attached but the kernel did not patch this module function (not in enabled_functions: no ftrace direct call), so it would never run"

// checkModuleFentry verifies, when tracefs can tell, that ftrace patched
// every module function an fentry program was attached to.
func checkModuleFentry(targets []string) error {
	if len(targets) == 0 {
		return nil
	}
	patched, ok := kernel.FtracePatched(targets)
	if !ok {
		return nil
	}
	var missing []string
	for _, t := range targets {
		if !patched[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return &UnpatchedFentryError{Targets: missing}
	}
	return nil
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

func attach(m Method, h Hook, prog *ebpf.Program) (link.Link, error) {
	if prog == nil {
		return nil, fmt.Errorf("program %s not loaded", h.Program)
	}
	switch m {
	case Fentry, TpBTF:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case Kprobe:
		return link.Kprobe(h.Target, prog, nil)
	case Tracepoint:
		group, name, ok := strings.Cut(h.Target, "/")
		if !ok {
			return nil, fmt.Errorf("tracepoint target %q: want group/name", h.Target)
		}
		if err := kernel.EnsureTracefs(); err != nil {
			return nil, err
		}
		return link.Tracepoint(group, name, prog, nil)
	case RawTracepoint:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.Target, Program: prog})
	}
	return nil, fmt.Errorf("unknown attach method %q", m)
}

// Detach closes every link (the programs stop firing) but keeps the maps, so
// that the ring buffer can still be drained.
func (l *Loaded) Detach() error {
	var errs []error
	for _, lk := range l.links {
		if err := lk.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.links = nil
	return errors.Join(errs...)
}

// Close detaches and unloads everything.
func (l *Loaded) Close() error {
	err := l.Detach()
	if l.Coll != nil {
		l.Coll.Close()
		l.Coll = nil
	}
	return err
}

// Slots of pp_lost (PP_LOST_* in pingpath.h).
const (
	lostAll      = 0 // every event a program could not send
	lostPerfFull = 1 // of them, refused by a full perf buffer (-ENOSPC)
)

// Lost sums the per-CPU pp_lost counter: events the programs could not send
// (ring buffer or perf buffer full).
func (l *Loaded) Lost() (uint64, error) {
	return l.lostSlot(lostAll)
}

func (l *Loaded) lostSlot(slot uint32) (uint64, error) {
	m := l.Coll.Maps[LostMap]
	if m == nil {
		return 0, fmt.Errorf("map %s missing", LostMap)
	}
	var perCPU []uint64
	if err := m.Lookup(slot, &perCPU); err != nil {
		return 0, fmt.Errorf("reading %s: %w", LostMap, err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// EventsLost is every event lost on the way to user space: what the
// programs counted, plus the events the kernel reported in perf
// lost-sample records (lostRecords) beyond those the programs already
// counted as refused by a full perf buffer — on kernels before 5.4
// bpf_perf_event_output does not tell the program, so only the records do.
// Each lost event is counted once, whichever buffer the tracer used.
func (l *Loaded) EventsLost(lostRecords uint64) (uint64, error) {
	all, err := l.lostSlot(lostAll)
	if err != nil || lostRecords == 0 {
		return all, err
	}
	full, err := l.lostSlot(lostPerfFull)
	return mergeLost(all, full, lostRecords), err
}

// mergeLost: all events the programs counted lost, full of them refused by
// a full perf buffer, records the events the kernel's lost-sample records
// reported. From 5.4 the records report the refusals the programs saw
// (records ≤ full: no record yet for the latest ones), before 5.4 the
// programs saw none (full = 0).
func mergeLost(all, full, records uint64) uint64 {
	if records > full {
		return all + records - full
	}
	return all
}
