// Command kernelmatrix runs the guest tests of every package on every
// matrix kernel and probe rung (make test-kernels), and writes the result
// table to docs/kernel-matrix.md.
//
// Test packages are found by name: a package takes part when its tests
// include TestTraceRealPackets or TestGuest*. A package whose tests call
// testenv.Probe() is run once per rung (PINGPATH_TEST_PROBE=auto, fentry,
// kprobe, tracepoint; perf: auto with PINGPATH_TEST_EVENT_BUFFER=perf;
// btf-file, on the kernels -kernel-rungs names: auto with /sys/kernel/btf
// hidden in the guest and the kernel's BTF given as a file, PINGPATH_TEST_BTF);
// the others once per kernel. Each test binary is
// built once (go test -c) and booted under QEMU/TCG by tools/vmexec/vm,
// one VM per (package, kernel, rung).
//
// Every top-level test's outcome is recorded: PASS, SKIP with the test's own
// reason, FAIL with the first lines of its output. A package whose binary
// failed without a failing test (panic, VM crash, timeout) is a FAIL of the
// whole package. A guest kernel that dies without reporting a status is
// booted once more, a failed test gets one more boot of its own, and such
// cells say "retried" with the first failure in the notes. The exit status
// is 1 when anything failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pingpath/pingpath/tools/vmexec/vm"
)

func main() {
	if vm.IsGuestInit() {
		vm.GuestInit()
	}
	os.Exit(run())
}

func run() int {
	var o options
	flag.StringVar(&o.kernels, "kernels", "5.10,6.1,6.12", "kernel series (cached by scripts/kernels.sh), comma separated")
	flag.StringVar(&o.rungs, "rungs", "auto,fentry,kprobe,tracepoint,perf", "probe rungs for rung-aware packages (perf: auto probes, perf event array forced; btf-file: auto probes, /sys/kernel/btf hidden, the kernel's BTF given as --btf)")
	flag.StringVar(&o.kernelRungs, "kernel-rungs", "", "rungs of single kernels instead of -rungs: SERIES=RUNG[+RUNG...], comma separated (e.g. 6.12-arm64=auto: arm64 under TCG is slow; 5.10=auto+fentry+kprobe+tracepoint+perf+btf-file: one more rung on one kernel)")
	flag.StringVar(&o.run, "run", `^(TestTraceRealPackets|TestGuest.*)$`, "tests to run (go test -run)")
	flag.StringVar(&o.doc, "doc", "docs/kernel-matrix.md", "Markdown file to write the matrix to (empty: none)")
	flag.StringVar(&o.work, "work", ".cache/kernel-matrix", "directory for the test binaries")
	flag.DurationVar(&o.testTimeout, "test-timeout", 12*time.Minute, "go test -timeout inside each VM (the vhost package alone ran 4-6 min in x86 guests booted at load 30, and over 6 on 5.10 with kprobes forced at load 33: kprobes are registered one by one under TCG; three times that for a kernel of another architecture than this machine's, whose tracer start waits also scale: arm64 under TCG is slower)")
	flag.IntVar(&o.jobs, "j", 2, "VMs run at the same time (tests mostly wait on packets and timers, so 2 VMs on 2 cores finish the matrix about a third sooner than 1)")
	flag.IntVar(&o.cpus, "cpus", 2, "vCPUs per VM")
	flag.BoolVar(&o.verbose, "v", false, "print every test's output")
	flag.StringVar(&o.kernelArgs, "kernel-args", "", "extra guest kernel command line (debugging)")
	flag.Parse()
	o.patterns = flag.Args()
	if len(o.patterns) == 0 {
		o.patterns = []string{"./..."}
	}
	re, err := regexp.Compile(o.run)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kernelmatrix: -run %q: %v\n", o.run, err)
		return 2
	}
	o.runRE = re
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := runMatrix(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernelmatrix:", err)
		return 1
	}
	fmt.Print(m.Markdown(false))
	if o.doc != "" {
		err := os.MkdirAll(filepath.Dir(o.doc), 0o755)
		if err == nil {
			err = os.WriteFile(o.doc, []byte(m.Markdown(true)), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kernelmatrix: writing %s: %v\n", o.doc, err)
			return 1
		}
		fmt.Printf("\nwrote %s\n", o.doc)
	}
	pass, fail, skip := m.Counts()
	// The plain closing line CI reads.
	fmt.Printf("matrix: %d passed, %d failed, %d skipped\n", pass, fail, skip)
	if fail > 0 {
		return 1
	}
	return 0
}

type options struct {
	kernels, rungs, run, doc, work string
	kernelRungs                    string
	kernelArgs                     string
	runRE                          *regexp.Regexp
	patterns                       []string
	testTimeout                    time.Duration
	jobs, cpus                     int
	verbose                        bool
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
