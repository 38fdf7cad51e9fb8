// Command bpfreqs reads the committed BPF objects of the tracers and says
// what each program needs of the kernel that loads it: its size in
// instructions (the verifier's limit before 5.2 was 4096), loops (back-edges:
// 5.3), global data (5.2), BPF-to-BPF calls (4.16), atomics that return a
// value (5.12), the helpers it calls and the map types it uses, each with the
// first kernel that has it. The oldest kernel a program can load on is the
// newest of those. Helpers the loader rewrites on older kernels
// (bpf_probe_read_kernel/_user → bpf_probe_read, cilium/ebpf) and the ring
// buffer the tracers replace with a perf event array on kernels without it
// (internal/tracer, --event-buffer) are listed with their fallback.
//
// Usage: go run ./tools/bpfreqs [OBJECT.o ...]   (default: every
// internal/tracer/*/*_bpfel.o). It prints a Markdown table; docs/kernel-support.md
// quotes it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		var err error
		files, err = filepath.Glob("internal/tracer/*/*_bpfel.o")
		if err != nil || len(files) == 0 {
			fmt.Fprintln(os.Stderr, "bpfreqs: no objects given and none in internal/tracer/*/ (run from the repository root)")
			os.Exit(2)
		}
	}
	var all []Program
	for _, f := range files {
		ps, err := Analyze(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bpfreqs:", err)
			os.Exit(1)
		}
		all = append(all, ps...)
	}
	fmt.Print(Markdown(all))
}

// Markdown is the table of programs (the oldest kernel each loads on and
// what sets it), then per object what the loader or the tracer replaces on
// older kernels.
func Markdown(ps []Program) string {
	var b strings.Builder
	b.WriteString("| object | program | type | instructions | back-edges | oldest kernel | set by |\n|---|---|---|---|---|---|---|\n")
	fallbacks := map[string]map[string]bool{}
	var objs []string
	for _, p := range ps {
		old := p.Oldest()
		var by []string
		if fallbacks[p.Object] == nil {
			fallbacks[p.Object] = map[string]bool{}
			objs = append(objs, p.Object)
		}
		for _, n := range p.Needs {
			switch {
			case n.Fallback != "":
				fallbacks[p.Object][n.String()] = true
			case n.Since == old:
				by = append(by, n.What)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s | %s |\n", p.Object, p.Name, p.Type, p.Instructions, p.Loops, old, strings.Join(by, ", "))
	}
	b.WriteString("\n")
	for _, o := range objs {
		var fs []string
		for f := range fallbacks[o] {
			fs = append(fs, f)
		}
		sort.Strings(fs)
		fmt.Fprintf(&b, "- %s, replaced on older kernels: %s\n", o, strings.Join(fs, "; "))
	}
	return b.String()
}

// Version is a kernel version, major.minor.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less orders versions.
func (v Version) Less(w Version) bool {
	return v.Major < w.Major || v.Major == w.Major && v.Minor < w.Minor
}

// Need is one thing a program needs, from kernel Since; Fallback, when set,
// is what replaces it on older kernels (and Since is then not a limit).
type Need struct {
	What     string
	Since    Version
	Fallback string
}

func (n Need) String() string {
	if n.Fallback != "" {
		return fmt.Sprintf("%s %s (older: %s)", n.What, n.Since, n.Fallback)
	}
	return fmt.Sprintf("%s %s", n.What, n.Since)
}

// Program is what one program needs.
type Program struct {
	Object, Name string
	Type         ebpf.ProgramType
	Instructions int // 8-byte slots, as the kernel counts them
	Loops        int // back-edges
	Needs        []Need
}

// Oldest is the first kernel with everything the program needs (fallbacks
// taken).
func (p Program) Oldest() Version {
	var v Version
	for _, n := range p.Needs {
		if n.Fallback == "" && v.Less(n.Since) {
			v = n.Since
		}
	}
	return v
}

// Analyze reads one object.
func Analyze(file string) ([]Program, error) {
	spec, err := ebpf.LoadCollectionSpec(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	names := make([]string, 0, len(spec.Programs))
	for n := range spec.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Program
	for _, n := range names {
		out = append(out, analyzeProgram(filepath.Base(file), spec.Programs[n], spec.Maps))
	}
	return out, nil
}
