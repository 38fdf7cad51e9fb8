package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/pingpath/pingpath/internal/kernel/kallsyms"
)

// Functions is what the kernel says about some functions a tracer may probe.
type Functions struct {
	// Traceable says which can carry a kprobe: listed in tracefs
	// available_filter_functions when it is readable, otherwise text
	// symbols of /proc/kallsyms.
	Traceable map[string]bool
	// Source names the list used ("available_filter_functions" or
	// "kallsyms").
	Source string
	// FentryUnsafe gives, for a function whose symbol spans other ftrace
	// call sites than its own, why an fentry program attached to it may
	// never run (see fentryUnsafeReason). Known only from
	// available_filter_functions.
	FentryUnsafe map[string]string
}

// invalidFtraceRecord is how available_filter_functions (5.19+) names an
// ftrace call site that lies in no function kallsyms knows at that offset:
// the body of a __weak function another definition overrode, whose code the
// linker kept without a symbol. ftrace disables those sites.
const invalidFtraceRecord = "__ftrace_invalid_address__"

// ScanFunctions reads available_filter_functions once (kallsyms when tracefs
// is not readable) and answers for names.
func ScanFunctions(names []string) (Functions, error) {
	fs := Functions{Traceable: map[string]bool{}, FentryUnsafe: map[string]string{}}
	if len(names) == 0 {
		return fs, nil
	}
	_ = EnsureTracefs()
	if f, err := os.Open(tracefsRoot() + "/available_filter_functions"); err == nil {
		defer f.Close()
		return scanFilterFunctions(f, names)
	}
	syms, err := kallsyms.Lookup(names)
	if err != nil {
		return Functions{}, err
	}
	for _, n := range names {
		_, fs.Traceable[n] = syms[n]
	}
	fs.Source = "kallsyms"
	return fs, nil
}

// scanFilterFunctions reads the available_filter_functions format: one
// ftrace call site per line, "name" or "name [module]", in address order
// within vmlinux and within each module.
//
// Every site after a function's own one that is still inside its symbol
// (named __ftrace_invalid_address___N since 5.19, or the function's own name
// again before) makes fentry on it unsafe: the BPF trampoline registers its
// ftrace direct call at ftrace_location(function address), and when the
// function's first instruction is not the call site (x86 IBT puts endbr64
// there, the site is at +4) that is a binary search over every site within
// the symbol's kallsyms extent, which may return one of the others. Found
// on Debian 6.12's kvm.ko: irqfd_wakeup is followed by two __weak stubs of
// virt/kvm/eventfd.c that arch/x86 overrides; the trampoline went onto a
// stub's disabled site, the attach succeeded and the program never ran.
// Conservative where the site is the first instruction (no IBT), since this
// list does not say where the site is.
func scanFilterFunctions(r io.Reader, names []string) (Functions, error) {
	fs := Functions{Traceable: map[string]bool{}, FentryUnsafe: map[string]string{}, Source: "available_filter_functions"}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	extra := map[string]int{}
	var open, openModule []byte // the wanted function whose extent the next lines may be in
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, module, _ := bytes.Cut(bytes.TrimSpace(sc.Bytes()), []byte(" "))
		module = bytes.TrimSpace(module)
		if open != nil && bytes.Equal(module, openModule) &&
			(bytes.HasPrefix(name, []byte(invalidFtraceRecord)) || bytes.Equal(name, open)) {
			extra[string(open)]++
			continue
		}
		open = nil
		if want[string(name)] {
			fs.Traceable[string(name)] = true
			open, openModule = append([]byte(nil), name...), append([]byte(nil), module...)
		}
	}
	if err := sc.Err(); err != nil {
		return Functions{}, fmt.Errorf("reading available_filter_functions: %w", err)
	}
	for n, k := range extra {
		fs.FentryUnsafe[n] = fentryUnsafeReason(n, k)
	}
	return fs, nil
}

func fentryUnsafeReason(fn string, sites int) string {
	return fmt.Sprintf("fentry on %s may never run: its symbol also spans %d ftrace call site(s) of code without a symbol "+
		"(overridden __weak functions), and the kernel's ftrace_location() may register the trampoline on one of those, "+
		"which ftrace never patches", fn, sites)
}
