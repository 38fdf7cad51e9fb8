package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pingpath/pingpath/tools/vmexec/vm"
)

// Test outcomes.
const (
	statusPass = "PASS"
	statusFail = "FAIL"
	statusSkip = "SKIP"
)

// foreignSlowdown scales the timeouts of guests of another architecture
// than this machine's (testenv.Slowdown).
const foreignSlowdown = 3

// rungAny labels the runs of packages that do not look at the rung.
const rungAny = "any"

// rungPerf is the rung that forces the perf event array (the fallback for
// kernels without BPF ring buffers) with the probes chosen as auto.
const rungPerf = "perf"

// rungBTFFile is the rung of a kernel without BTF given a BTF file: the
// guest hides /sys/kernel/btf (vm.Config.HideKernelBTF) after saving the
// kernel's vmlinux BTF, the tracers get that copy as --btf
// (PINGPATH_TEST_BTF) and choose their probes as auto. Kernels without
// BTF are mostly older than bpf_probe_read_kernel/_user (5.5) too, so the
// rung also forces bpf_probe_read (--probe-read-compat), as cilium/ebpf
// rewrites the calls there.
const rungBTFFile = "btf-file"

// knownRungs are the rungs -rungs and -kernel-rungs may name, in the
// matrix's row order.
var knownRungs = []string{"auto", "fentry", "kprobe", "tracepoint", rungPerf, rungBTFFile}

// rungEnv is the environment of a rung's tests: a probe rung forces that
// attach method (PINGPATH_TEST_PROBE); the perf rung forces the perf event
// array (PINGPATH_TEST_EVENT_BUFFER) on the auto probes; the btf-file rung
// gives the tracers the kernel's BTF saved before the guest hid it.
func rungEnv(rung string) []string {
	switch rung {
	case rungAny:
		return nil
	case rungPerf:
		return []string{"PINGPATH_TEST_PROBE=auto", "PINGPATH_TEST_EVENT_BUFFER=perf"}
	case rungBTFFile:
		return []string{"PINGPATH_TEST_PROBE=auto", vm.TestBTFEnv, "PINGPATH_TEST_PROBE_READ_COMPAT=1"}
	}
	return []string{"PINGPATH_TEST_PROBE=" + rung}
}

// job is one VM: one package's tests on one kernel with one rung.
type job struct {
	pkg    *testPackage
	kernel vm.Kernel
	rung   string
}

// outcome is one top-level test's result in one job.
type outcome struct {
	Test    string
	Status  string
	Reason  string
	Elapsed string
	// Retry is set when this result is a second try: the job's first VM
	// crashed, or the test failed on the first boot (what happened first).
	Retry string
}

// jobResult is what one VM produced.
type jobResult struct {
	job
	outcomes []outcome
	boot     time.Duration
	total    time.Duration
	exitCode int
	err      error
	log      string // file with the output and console
	crash    string // what the console says about a kernel crash
}

// Matrix is the whole run.
type Matrix struct {
	module  string
	kernels []vm.Kernel
	rungs   []string
	// kernelRungs are the rungs of the kernels that do not run all of
	// rungs (-kernel-rungs), by series.
	kernelRungs map[string][]string
	pkgs        []testPackage
	results     []jobResult
	started     time.Time
	build       time.Duration
	wall        time.Duration
	qemu        map[string]string // QEMU's version by architecture
	inits       map[string]string // guests' /init by architecture, for kernels not of ours
	cpus        int
	jobs        int
	args        []string // the command line, for the generated page
}

func runMatrix(ctx context.Context, o options) (*Matrix, error) {
	m := &Matrix{started: time.Now(), rungs: splitList(o.rungs), cpus: o.cpus, jobs: o.jobs, args: os.Args[1:]}
	for _, r := range m.rungs {
		if !slices.Contains(knownRungs, r) {
			return nil, fmt.Errorf("-rungs: unknown rung %q (known: %s)", r, strings.Join(knownRungs, ","))
		}
	}
	var err error
	if m.kernelRungs, err = parseKernelRungs(o.kernelRungs); err != nil {
		return nil, err
	}
	cache, err := vm.CacheDir()
	if err != nil {
		return nil, err
	}
	for _, s := range splitList(o.kernels) {
		k, err := vm.LoadKernel(cache, s)
		if err != nil {
			return nil, err
		}
		m.kernels = append(m.kernels, k)
	}
	m.qemu = map[string]string{}
	var arches []string
	for _, k := range m.kernels {
		if _, ok := m.qemu[k.Arch]; ok {
			continue
		}
		arches = append(arches, k.Arch)
		m.qemu[k.Arch] = "?"
		if out, err := exec.Command(vm.QEMUFor(k.Arch), "--version").Output(); err == nil {
			m.qemu[k.Arch], _, _ = strings.Cut(string(out), "\n")
		}
	}
	m.module, m.pkgs, err = findPackages(o.patterns, o.runRE)
	if err != nil {
		return nil, err
	}
	if len(m.pkgs) == 0 {
		return nil, fmt.Errorf("no package in %s has tests matching %s", strings.Join(o.patterns, " "), o.run)
	}
	t0 := time.Now()
	if m.inits, err = build(m.pkgs, m.module, o.work, arches); err != nil {
		return nil, err
	}
	m.build = time.Since(t0)
	var jobs []job
	for _, k := range m.kernels {
		for i := range m.pkgs {
			p := &m.pkgs[i]
			rungs := []string{rungAny}
			if p.RungAware {
				rungs = m.rungsOf(k.Series)
			}
			for _, r := range rungs {
				jobs = append(jobs, job{pkg: p, kernel: k, rung: r})
			}
		}
	}
	fmt.Fprintf(os.Stderr, "kernelmatrix: %d packages built in %s; %d VMs to run\n", len(m.pkgs), m.build.Round(time.Second), len(jobs))
	m.results = make([]jobResult, len(jobs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for w := 0; w < max(o.jobs, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				r := runJob(ctx, jobs[i], o, m.inits[jobs[i].kernel.Arch])
				mu.Lock()
				m.results[i] = r
				r.report(m.module, o.verbose)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.wall = time.Since(m.started)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return m, nil
}

// parseKernelRungs reads -kernel-rungs ("6.12-arm64=auto+kprobe,..."): each
// kernel's rungs, instead of -rungs (fewer, or more: 5.10 adds btf-file).
func parseKernelRungs(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, f := range splitList(s) {
		series, list, ok := strings.Cut(f, "=")
		rungs := strings.Split(list, "+")
		if !ok || series == "" || list == "" {
			return nil, fmt.Errorf("-kernel-rungs %q: want SERIES=RUNG[+RUNG...]", f)
		}
		for _, r := range rungs {
			if !slices.Contains(knownRungs, r) {
				return nil, fmt.Errorf("-kernel-rungs %q: unknown rung %q (known: %s)", f, r, strings.Join(knownRungs, ","))
			}
		}
		out[series] = rungs
	}
	return out, nil
}

// rungsOf is the rungs the rung-aware packages run on the kernel series.
func (m *Matrix) rungsOf(series string) []string {
	if r, ok := m.kernelRungs[series]; ok {
		return r
	}
	return m.rungs
}

// runJob runs one job, retrying twice over:
//   - a guest kernel that dies without reporting a status (a panic: under
//     TCG these are mostly emulation faults, see vm.DefaultCPUModel) gets
//     one more boot, and the crash is kept as a note on every outcome;
//   - tests that failed get one more boot of their own: under TCG on a
//     loaded machine a guest's timing swings by orders of magnitude (at load
//     33 a reply took over 400 ms, kprobes took 3 min to attach), which is
//     not what the matrix is about. The first failure stays a note on the
//     cell ("retried"), so a flaky cell is visible, never silent.
func runJob(ctx context.Context, j job, o options, init string) jobResult {
	r := bootRetryingCrash(ctx, j, o, init, "")
	failed := failedTests(r)
	if len(failed) == 0 || ctx.Err() != nil {
		return r
	}
	again := o
	again.run = "^(" + strings.Join(failed, "|") + ")$"
	return withRetry(r, bootRetryingCrash(ctx, j, again, init, "-retry"))
}

// failedTests is the -run alternatives of r's failed tests.
func failedTests(r jobResult) []string {
	var failed []string
	for _, oc := range r.outcomes {
		if oc.Status == statusFail {
			failed = append(failed, regexp.QuoteMeta(oc.Test))
		}
	}
	return failed
}

// withRetry is first with each failed test's outcome replaced by its
// outcome in second (the retry of the failed tests), noting the first
// failure on it.
func withRetry(first, second jobResult) jobResult {
	r := first
	r.outcomes = slices.Clone(first.outcomes)
	for i, f := range first.outcomes {
		if f.Status != statusFail {
			continue
		}
		for _, s := range second.outcomes {
			if s.Test == f.Test {
				s.Retry = strings.Trim(s.Retry+"; "+fmt.Sprintf("first try FAIL: %s (log %s)", f.Reason, first.log), "; ")
				r.outcomes[i] = s
			}
		}
	}
	r.total += second.total
	return r
}

// bootRetryingCrash boots the job, and once more when its guest kernel died
// without a status. logSuffix keeps a retry's log apart from the first's.
func bootRetryingCrash(ctx context.Context, j job, o options, init, logSuffix string) jobResult {
	r := bootJob(ctx, j, o, init, logSuffix)
	if errors.Is(r.err, vm.ErrNoStatus) {
		first := r
		r = bootJob(ctx, j, o, init, logSuffix)
		for i := range r.outcomes {
			r.outcomes[i].Retry = fmt.Sprintf("first boot crashed (%s; log %s)", first.crash, first.log)
		}
	}
	return r
}

func bootJob(ctx context.Context, j job, o options, init, logSuffix string) jobResult {
	// An arm64 guest runs 2-4 times slower than an x86 one under TCG here:
	// the vm package's real-packet test took 94 s there at load 15 and ran
	// past 3 minutes at load 30, where x86 guests take 20-40 s.
	testTimeout := o.testTimeout
	env := vm.PassEnv(os.Environ())
	env = append(env, rungEnv(j.rung)...)
	if j.kernel.Arch != runtime.GOARCH {
		// At load 30 the tracers in arm64 guests took over the 2 minutes
		// tracertest allows to start (host package, 6.1 arm64, 3 rungs of
		// 4): their waits and the package's timeout scale by 3.
		testTimeout *= foreignSlowdown
		env = append(env, fmt.Sprintf("PINGPATH_TEST_SLOWDOWN=%d", foreignSlowdown))
	}
	var out bytes.Buffer
	res, err := vm.Run(ctx, vm.Config{
		Kernel:     j.kernel,
		Init:       init,
		Program:    j.pkg.Binaries[j.kernel.Arch],
		Args:       []string{"-test.v", "-test.run", o.run, "-test.timeout", testTimeout.String()},
		Env:        env,
		Dir:        j.pkg.Dir,
		Modules:    vm.DefaultModules,
		Timeout:    testTimeout + 2*time.Minute,
		CPUs:       o.cpus,
		Stdout:     &out,
		KernelArgs: o.kernelArgs,
		// The btf-file rung: a kernel whose BTF the tracers only get as a file.
		HideKernelBTF: j.rung == rungBTFFile,
	})
	r := jobResult{job: j, boot: res.Boot, total: res.Total, exitCode: res.ExitCode, err: err, crash: crashSummary(res.Console)}
	r.outcomes = parseTestOutput(out.String(), j.pkg.Tests)
	r.settle(out.String(), res.Console)
	r.log = r.saveLog(o.work, logSuffix, out.String(), res.Console)
	return r
}

// saveLog keeps the test output and the kernel console of a job in
// <work>/logs, so a failure can be read in full after the run.
func (r *jobResult) saveLog(work, suffix, out, console string) string {
	dir := filepath.Join(work, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	base := fmt.Sprintf("%s-%s-%s%s", r.kernel.Series, r.rung, filepath.Base(strings.TrimSuffix(r.pkg.Binaries[r.kernel.Arch], ".test")), suffix)
	name := filepath.Join(dir, base+".log")
	if r.err != nil {
		// Keep a crashed boot's log apart from its retry's.
		name = filepath.Join(dir, base+"-crashed.log")
	}
	text := fmt.Sprintf("kernel %s, rung %s, %s\n\n=== test output ===\n%s\n=== kernel console (tail) ===\n%s", r.kernel.Release, r.rung, r.pkg.ImportPath, out, console)
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		return ""
	}
	return name
}

var (
	startLine = regexp.MustCompile(`^=== (?:RUN|CONT|NAME)\s+(\S+)`)
	endLine   = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+s)\)`)
	logLine   = regexp.MustCompile(`^\s+\S+\.go:\d+: `)
)

// parseTestOutput reads `go test -v` output into one outcome per top-level
// test, in the order of want; a test with no result line is left with an
// empty status. Skipped subtests of a passing test are named in its Reason
// (with their skip message), so that a partial pass is never silent.
func parseTestOutput(out string, want []string) []outcome {
	type logEntry struct{ test, line string }
	var logs []logEntry
	done := map[string]outcome{}
	var order []string // result lines in output order
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if m := startLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if m := endLine.FindStringSubmatch(line); m != nil {
			done[m[2]] = outcome{Test: m[2], Status: m[1], Elapsed: m[3]}
			order = append(order, m[2])
			continue
		}
		if cur != "" && logLine.MatchString(line) {
			logs = append(logs, logEntry{cur, strings.TrimSpace(line)})
		}
	}
	// logsOf returns the log lines of test (and, with subtests, of its
	// subtests) in output order.
	logsOf := func(test string, subtests bool) []string {
		var l []string
		for _, e := range logs {
			if e.test == test || subtests && strings.HasPrefix(e.test, test+"/") {
				l = append(l, e.line)
			}
		}
		return l
	}
	lastLog := func(test string) string {
		if l := logsOf(test, false); len(l) > 0 {
			return l[len(l)-1]
		}
		return "skipped without a reason"
	}
	var res []outcome
	for _, name := range want {
		o, ok := done[name]
		if !ok {
			o = outcome{Test: name}
		}
		switch o.Status {
		case statusSkip:
			// The skip message is the test's last log line.
			o.Reason = lastLog(name)
		case statusFail:
			o.Reason = failReason(name, order, done, logsOf)
		case statusPass:
			var skipped []string
			for _, sub := range order {
				if strings.HasPrefix(sub, name+"/") && done[sub].Status == statusSkip {
					skipped = append(skipped, fmt.Sprintf("subtest %s skipped: %s", strings.TrimPrefix(sub, name+"/"), lastLog(sub)))
				}
			}
			o.Reason = strings.Join(skipped, "; ")
		}
		res = append(res, o)
	}
	return res
}

// failReason describes a failed test by the logs of its failed leaves (the
// failed subtests with no failed subtest of their own), which is where the
// errors are; at most two leaves and three lines each.
func failReason(name string, order []string, done map[string]outcome, logsOf func(string, bool) []string) string {
	var leaves []string
	for _, t := range append([]string{name}, order...) {
		if t != name && !strings.HasPrefix(t, name+"/") || done[t].Status != statusFail || slices.Contains(leaves, t) {
			continue
		}
		leaf := true
		for _, u := range order {
			if strings.HasPrefix(u, t+"/") && done[u].Status == statusFail {
				leaf = false
			}
		}
		if leaf {
			leaves = append(leaves, t)
		}
	}
	var parts []string
	for i, t := range leaves {
		if i == 2 {
			parts = append(parts, fmt.Sprintf("(%d more failed subtests)", len(leaves)-2))
			break
		}
		l := firstLines(logsOf(t, false), 3)
		if l == "" {
			l = "failed without a log line"
		}
		if t != name {
			l = strings.TrimPrefix(t, name+"/") + ": " + l
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return "failed without a log line"
	}
	return strings.Join(parts, "; ")
}

func firstLines(lines []string, n int) string {
	if len(lines) > n {
		lines = append(lines[:n:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, " / ")
}

// settle turns VM errors and unexplained exit statuses into failures, so a
// crashed or timed-out package can never look like a pass.
func (r *jobResult) settle(out, console string) {
	failed := false
	for _, o := range r.outcomes {
		failed = failed || o.Status == statusFail
	}
	why := ""
	switch {
	case r.err != nil:
		why = fmt.Sprintf("VM: %v; console: %s", r.err, crashSummary(console))
	case r.exitCode != 0 && !failed:
		why = fmt.Sprintf("test binary exited %d: %s", r.exitCode, lastLines(out, 3))
	}
	for i := range r.outcomes {
		o := &r.outcomes[i]
		if o.Status == "" {
			o.Status = statusFail
			o.Reason = "no result"
			if why != "" {
				o.Reason += " (" + why + ")"
			} else {
				o.Reason += fmt.Sprintf(" (test binary exited %d: %s)", r.exitCode, lastLines(out, 3))
			}
			why = ""
		}
	}
	if why != "" {
		r.outcomes = append(r.outcomes, outcome{Test: "(package)", Status: statusFail, Reason: why})
	}
}

// crashLine matches the console lines that say why a guest kernel died.
var crashLine = regexp.MustCompile(`Kernel panic|Oops|BUG:|RIP: 0010:|general protection|double fault|WARNING:`)

// crashSummary picks the lines of a console tail that explain a crash, or
// its last lines when none does.
func crashSummary(console string) string {
	var hits []string
	for _, l := range strings.Split(console, "\n") {
		if crashLine.MatchString(l) {
			// Drop the "[   24.834557] " timestamp.
			if i := strings.Index(l, "] "); strings.HasPrefix(l, "[") && i > 0 {
				l = l[i+2:]
			}
			hits = append(hits, strings.TrimSpace(l))
		}
	}
	if len(hits) == 0 {
		return lastLines(console, 3)
	}
	return firstLines(slices.Compact(hits), 4)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

func (r *jobResult) report(module string, verbose bool) {
	var parts []string
	bad := false
	for _, o := range r.outcomes {
		parts = append(parts, o.Test+" "+o.Status)
		bad = bad || o.Status == statusFail
	}
	fmt.Fprintf(os.Stderr, "%-5s %-10s %-32s boot %5.1fs total %6.1fs  %s\n", r.kernel.Series, r.rung,
		r.pkg.Short(module), r.boot.Seconds(), r.total.Seconds(), strings.Join(parts, ", "))
	for _, o := range r.outcomes {
		if o.Reason != "" && (verbose || bad) {
			fmt.Fprintf(os.Stderr, "      %s %s: %s\n", o.Test, o.Status, o.Reason)
		}
	}
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "      VM error: %v\n", r.err)
	}
	if bad && r.log != "" {
		fmt.Fprintf(os.Stderr, "      full output and console: %s\n", r.log)
	}
}

// Counts returns how many test outcomes passed, failed and were skipped.
func (m *Matrix) Counts() (pass, fail, skip int) {
	for _, r := range m.results {
		for _, o := range r.outcomes {
			switch o.Status {
			case statusPass:
				pass++
			case statusSkip:
				skip++
			default:
				fail++
			}
		}
	}
	return
}

// Markdown renders the matrix; full adds the preamble and timings for
// docs/kernel-matrix.md.
func (m *Matrix) Markdown(full bool) string {
	var b strings.Builder
	if full {
		fmt.Fprintf(&b, "# Kernel matrix\n\n")
		fmt.Fprintf(&b, "Generated by `go run ./tools/kernelmatrix %s` (`make test-kernels`, `make test-kernels-arm64`) on %s; do not edit by hand.\n",
			strings.Join(m.args, " "), m.started.UTC().Format("2006-01-02 15:04 UTC"))
		var machines []string
		for _, k := range m.kernels {
			mach := fmt.Sprintf("%s: %s, `-accel tcg -cpu %s -smp %d`", k.Arch, m.qemu[k.Arch], vm.CPUFor(k.Arch), m.cpus)
			if !slices.Contains(machines, mach) {
				machines = append(machines, mach)
			}
		}
		fmt.Fprintf(&b, "Each cell is one top-level test in one QEMU/TCG guest (%s; Go /init from tools/vmexec/vm).\n",
			strings.Join(machines, "; "))
		b.WriteString("The x86 guests load kvm and kvm_amd on QEMU's emulated AMD SVM (`+svm,+npt`), so tests create KVM VMs\n")
		b.WriteString("(`internal/testkit/kvmirq` gives vhost-rx its irqfd and interrupt injection, stages s4/s5); the arm64 guests have no EL2,\n")
		b.WriteString("so their irqfd tests skip.\n")
		b.WriteString("Where a forced rung cannot reach a stage on a kernel — 5.10 builds no module BTF, so no fentry on tun, vhost\n")
		b.WriteString("or kvm functions; Debian's 6.12 never patches an fentry on kvm's `irqfd_wakeup` — the stage takes its next\n")
		b.WriteString("rung, the header's reason (in the test's log) says why, and the cell passes on what that kernel can do.\n")
		fmt.Fprintf(&b, "Rung-aware packages (tests that call `testenv.Probe()`) run once per rung with `PINGPATH_TEST_PROBE`\n")
		fmt.Fprintf(&b, "(rung `%s`: auto probes with the perf event array forced, `PINGPATH_TEST_EVENT_BUFFER=perf`, the fallback for kernels without BPF ring buffers);\n", rungPerf)
		fmt.Fprintf(&b, "rung `%s`: the guest's /init saves the kernel's vmlinux BTF to a file and hides /sys/kernel/btf under an empty tmpfs, as a kernel\n", rungBTFFile)
		b.WriteString("built without CONFIG_DEBUG_INFO_BTF shows, and the tracers get the file as `--btf` with auto probes: CO-RE relocates against the\n")
		b.WriteString("file, fentry and tp_btf are off (they attach through the kernel's own BTF), so every stage takes its kprobe or tracepoint\n")
		b.WriteString("rung, and each tracer started without `--btf` must refuse with check's explanation (subtest \"without --btf\"); the rung also\n")
		b.WriteString("forces `bpf_probe_read` where the programs call `bpf_probe_read_kernel/_user` (`--probe-read-compat`, what cilium/ebpf does before 5.5);\n")
		fmt.Fprintf(&b, "the others once per kernel (rung `%s`). SKIP and FAIL carry the test's own message in the notes;\n", rungAny)
		for _, k := range m.kernels {
			fmt.Fprintf(&b, "kernel %s runs the rungs %s here (\"–\": not run);\n", k.Series, strings.Join(m.rungsOf(k.Series), ", "))
		}
		b.WriteString("a VM whose kernel crashed is booted once more, and a test that failed gets one more boot of its own (under TCG on a loaded machine a guest's timing swings by orders of magnitude); such cells say \"retried\", with the first failure in the notes.\n\n")
		b.WriteString("How to run: `make test-kernels` (as in `make test`), `make test-kernels-all-rungs` (every rung on every kernel), or one package on one kernel and rung:\n\n")
		b.WriteString("```sh\nscripts/kernels.sh 6.12 && go build -o bin/vmexec ./tools/vmexec\n")
		b.WriteString("PINGPATH_VM_KERNEL=6.12 PINGPATH_TEST_PROBE=kprobe CGO_ENABLED=0 \\\n")
		b.WriteString("    go test -count=1 -v -exec \"$PWD/bin/vmexec\" -run 'TestTraceRealPackets|TestGuest' ./internal/tracer/vm\n")
		b.WriteString("# arm64 (qemu-system-aarch64): the test binary and the guest's /init built for arm64\n")
		b.WriteString("scripts/kernels.sh 6.12-arm64 && GOARCH=arm64 CGO_ENABLED=0 go build -o bin/vmexec-arm64 ./tools/vmexec\n")
		b.WriteString("PINGPATH_VM_KERNEL=6.12-arm64 GOARCH=arm64 CGO_ENABLED=0 \\\n")
		b.WriteString("    go test -count=1 -v -exec \"$PWD/bin/vmexec\" -run 'TestTraceRealPackets|TestGuest' ./internal/tracer/vm\n```\n\n")
		fmt.Fprintf(&b, "Kernels (Debian cloud images, fetched by `scripts/kernels.sh`):\n\n")
		for _, k := range m.kernels {
			fmt.Fprintf(&b, "- %s: `%s`\n", k.Series, k.Release)
		}
		b.WriteString("\n")
	}
	type rowKey struct{ pkg, test, rung string }
	cells := map[rowKey]map[string]outcome{}
	var rows []rowKey
	for _, r := range m.results {
		for _, o := range r.outcomes {
			k := rowKey{r.pkg.Short(m.module), o.Test, r.rung}
			if cells[k] == nil {
				cells[k] = map[string]outcome{}
				rows = append(rows, k)
			}
			cells[k][r.kernel.Series] = o
		}
	}
	rungOrder := map[string]int{rungAny: -1}
	for i, r := range knownRungs {
		rungOrder[r] = i
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, c := rows[i], rows[j]
		if a.pkg != c.pkg {
			return a.pkg < c.pkg
		}
		if a.test != c.test {
			return a.test < c.test
		}
		return rungOrder[a.rung] < rungOrder[c.rung]
	})
	b.WriteString("| package | test | rung |")
	for _, k := range m.kernels {
		fmt.Fprintf(&b, " %s |", k.Series)
	}
	b.WriteString("\n|---|---|---|")
	for range m.kernels {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var notes []string
	noteIdx := map[string]int{}
	for _, k := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |", k.pkg, k.test, k.rung)
		for _, kern := range m.kernels {
			o, ok := cells[k][kern.Series]
			switch {
			case !ok:
				b.WriteString(" – |")
			case o.Reason == "" && o.Retry == "":
				fmt.Fprintf(&b, " %s |", o.Status)
			default:
				note := strings.Trim(o.Reason+"; "+o.Retry, "; ")
				n, seen := noteIdx[note]
				if !seen {
					notes = append(notes, note)
					n = len(notes)
					noteIdx[note] = n
				}
				status := o.Status
				if status == statusPass && o.Reason != "" {
					status = "PASS, subtests skipped"
				}
				if o.Retry != "" {
					status += ", retried"
				}
				fmt.Fprintf(&b, " %s [%d] |", status, n)
			}
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for i, n := range notes {
			fmt.Fprintf(&b, "%d. %s\n", i+1, strings.ReplaceAll(n, "|", `\|`))
		}
	}
	pass, fail, skip := m.Counts()
	fmt.Fprintf(&b, "\nTotals: %d passed, %d failed, %d skipped.\n", pass, fail, skip)
	if full {
		b.WriteString("\n## Timings\n\n")
		fmt.Fprintf(&b, "Whole matrix: %s wall time for %d VMs (%d at a time), test binaries built once in %s.\n\n",
			m.wall.Round(time.Second), len(m.results), m.jobs, m.build.Round(time.Second))
		b.WriteString("| kernel | VMs | boot (QEMU start → test start) min / median / max | whole VM min / median / max |\n|---|---|---|---|\n")
		for _, k := range m.kernels {
			var boots, totals []time.Duration
			for _, r := range m.results {
				if r.kernel.Series == k.Series && r.boot > 0 {
					boots = append(boots, r.boot)
					totals = append(totals, r.total)
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", k.Series, len(boots), spread(boots), spread(totals))
		}
	}
	return b.String()
}

func spread(d []time.Duration) string {
	if len(d) == 0 {
		return "–"
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	f := func(x time.Duration) string { return fmt.Sprintf("%.1f s", x.Seconds()) }
	return f(d[0]) + " / " + f(d[len(d)/2]) + " / " + f(d[len(d)-1])
}
