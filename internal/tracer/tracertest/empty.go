package tracertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// EmptyProgram is the name of the programs AttachEmpty loads.
const EmptyProgram = "pp_empty"

// Hook is where a tracer attached a program: the method as the header's
// probes name it (tp_btf, raw_tracepoint, tracepoint) and its target.
type Hook struct {
	Method string
	Target string
}

// HooksOf lists the hooks a tracer attached, from the available probes of
// its header: each hook of a rung (a probe's target joins them with "+"),
// once (the host tracer's header lists a stage per device, and its
// devices' stages share one program per hook).
func HooksOf(h *record.Header) []Hook {
	var out []Hook
	for _, p := range h.Probes {
		if !p.Available {
			continue
		}
		for _, target := range strings.Split(p.Target, "+") {
			if hk := (Hook{Method: p.Method, Target: target}); !slices.Contains(out, hk) {
				out = append(out, hk)
			}
		}
	}
	return out
}

// AttachEmpty attaches a program that does nothing (returns 0) to each
// hook and returns their ids and a function that detaches them (also done
// when the test ends). Read with ReadStats in the same traffic as a
// tracer's programs, an empty program's run time is the price every
// program on that hook pays before its first instruction as bpf_stats
// sees it (the dispatch, and bpf_stats' own clock reads): the floor under
// the tracer's per-run figures. Mirroring a tracer's hooks (HooksOf), the
// empty programs' effect on the traffic is the part of the tracer's that
// no program on the same hooks can avoid. Methods this machine's tracers
// do not use here (fentry, kprobe) are refused.
func AttachEmpty(t testing.TB, hooks []Hook) ([]ebpf.ProgramID, func()) {
	t.Helper()
	var ids []ebpf.ProgramID
	var closers []func()
	detach := func() {
		for _, c := range closers {
			c()
		}
		closers = nil
	}
	t.Cleanup(detach)
	for _, h := range hooks {
		prog, l, err := attachEmpty(h)
		testenv.Require(t, err == nil, fmt.Sprintf("an empty program on %s %s: %v", h.Method, h.Target, err))
		closers = append(closers, func() { l.Close(); prog.Close() })
		info, err := prog.Info()
		if err != nil {
			t.Fatalf("empty program on %s %s: %v", h.Method, h.Target, err)
		}
		id, _ := info.ID()
		ids = append(ids, id)
	}
	return ids, detach
}

// AttachFloor attaches empty tp_btf programs to the tracepoints until the
// test ends (AttachEmpty) and returns their ids.
func AttachFloor(t testing.TB, tracepoints ...string) []ebpf.ProgramID {
	t.Helper()
	hooks := make([]Hook, len(tracepoints))
	for i, tp := range tracepoints {
		hooks[i] = Hook{Method: "tp_btf", Target: tp}
	}
	ids, _ := AttachEmpty(t, hooks)
	return ids
}

// emptySpec is a program that returns 0, of no type yet.
func emptySpec() *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:         EmptyProgram,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}
}

// LoadEmptyRawTracepoint loads an empty raw tracepoint program, not
// attached: run with BPF_PROG_TEST_RUN next to a tracer's program, it is
// the floor under that program's test runs.
func LoadEmptyRawTracepoint() (*ebpf.Program, error) {
	spec := emptySpec()
	spec.Type = ebpf.RawTracepoint
	return ebpf.NewProgram(spec)
}

func attachEmpty(h Hook) (*ebpf.Program, link.Link, error) {
	spec := emptySpec()
	switch h.Method {
	case "tp_btf":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceRawTp, h.Target
	case "raw_tracepoint":
		spec.Type = ebpf.RawTracepoint
	case "tracepoint":
		spec.Type = ebpf.TracePoint
	default:
		return nil, nil, fmt.Errorf("method %q not mirrored", h.Method)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("loading: %w", err)
	}
	var l link.Link
	switch h.Method {
	case "tp_btf":
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	case "raw_tracepoint":
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.Target, Program: prog})
	case "tracepoint":
		group, name, ok := strings.Cut(h.Target, "/")
		if !ok {
			err = fmt.Errorf("tracepoint %q is not GROUP/NAME", h.Target)
			break
		}
		l, err = link.Tracepoint(group, name, prog, nil)
	}
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("attaching: %w", err)
	}
	return prog, l, nil
}
