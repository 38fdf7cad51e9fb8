package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Config is one guest run.
type Config struct {
	Kernel  Kernel
	Program string   // host path of the program to run (e.g. a test binary)
	Args    []string // its arguments
	// Env is added to the guest program's environment ("K=V"); the guest
	// always has PATH=/bin, HOME=/tmp, TMPDIR=/tmp and PINGPATH_TEST_GUEST=1.
	Env []string
	// Dir is the host directory whose testdata/ is copied into the guest's
	// working directory (go test runs -exec in the package directory).
	Dir     string
	Modules []string      // kernel modules to load before the program runs
	Timeout time.Duration // whole VM, boot included; 0 means 10 minutes
	CPUs    int           // 0 means 2
	// MemoryMB is the guest's RAM; 0 means 1024.
	MemoryMB int
	// TCGThread is QEMU's TCG threading: "multi" (a host thread per vCPU,
	// the default) or "single".
	TCGThread string
	// KernelArgs are added to the kernel command line.
	KernelArgs string
	// CPUModel is QEMU's -cpu; empty means the architecture's default
	// (DefaultCPUModel on x86_64, cortex-a57 on arm64).
	CPUModel string
	// Init is the host path of the guest's /init, a program whose main
	// starts with GuestInit, built for the kernel's architecture; empty
	// means this executable (the kernel must then be of the host's
	// architecture).
	Init string
	// Stdout receives the program's output (stdout and stderr interleaved, as
	// a terminal would show them).
	Stdout io.Writer
	// Console, when set, receives the kernel console as it is printed.
	Console io.Writer
	// HideKernelBTF makes the guest look like a kernel built without
	// CONFIG_DEBUG_INFO_BTF: before the program starts, /init copies
	// /sys/kernel/btf/vmlinux to KernelBTFCopy (what pahole
	// --btf_encode_detached would give for this kernel) and mounts an
	// empty, read-only tmpfs over /sys/kernel/btf, so neither vmlinux nor
	// module BTF can be read there. The kernel keeps its BTF inside (the
	// verifier's, fentry's): only what a tracer can read is gone.
	HideKernelBTF bool
}

// KernelBTFCopy is the guest path of the kernel's vmlinux BTF saved by
// Config.HideKernelBTF (give it to the tracers as --btf).
const KernelBTFCopy = "/run/vmlinux.btf"

// TestBTFEnv tells the guest's tests to give their tracers KernelBTFCopy
// as --btf (testenv.BTF).
const TestBTFEnv = "PINGPATH_TEST_BTF=" + KernelBTFCopy

// Result is what a guest run produced.
type Result struct {
	// ExitCode is the program's exit status as reported by the guest.
	ExitCode int
	// Boot is the time from starting QEMU to the guest starting the program.
	Boot time.Duration
	// Total is the time from starting QEMU to QEMU exiting.
	Total time.Duration
	// Console is the last part of the kernel console (for error reports).
	Console string
}

// guestSpec is what the host tells the guest's /init (as /t/vm.json).
type guestSpec struct {
	Program string   `json:"program"`
	Args    []string `json:"args"`
	Env     []string `json:"env"`
	Modules []string `json:"modules"` // guest paths, load order
	// HideKernelBTF: Config.HideKernelBTF.
	HideKernelBTF bool `json:"hide_kernel_btf,omitempty"`
}

// Guest paths.
const (
	guestWorkDir  = "/t"
	guestSpecFile = "/t/vm.json"
	guestProgram  = "/t/prog"
	// startMarker is printed on the console by /init right before it starts
	// the program; the host times the boot by it.
	startMarker = "starting program"
)

// ErrNoStatus means QEMU ended without the guest reporting a status (a
// kernel panic, a crash of /init, a triple fault).
var ErrNoStatus = errors.New("VM ended without a status")

// ErrTimeout means the VM ran past Config.Timeout and was killed.
var ErrTimeout = errors.New("VM timed out")

// Run boots the kernel with the program and waits for it. A non-zero exit
// status of the program is not an error; a VM that did not report one is.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.TCGThread == "" {
		cfg.TCGThread = "multi"
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	m, err := machineFor(cfg.Kernel.Arch)
	if err != nil {
		return Result{}, err
	}
	if cfg.Init == "" {
		if cfg.Init, err = os.Executable(); err != nil {
			return Result{}, fmt.Errorf("finding this executable for the guest's /init: %w", err)
		}
	}
	for _, p := range []string{cfg.Init, cfg.Program} {
		if err := checkProgram(p, m, cfg.Kernel.Arch); err != nil {
			return Result{}, err
		}
	}
	tmp, err := os.MkdirTemp("", "vmexec-")
	if err != nil {
		return Result{}, fmt.Errorf("making the VM's work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initrd.cpio")
	cfg.Modules = append(append([]string(nil), cfg.Modules...), m.modules...)
	if err := writeInitramfs(initrd, cfg); err != nil {
		return Result{}, err
	}
	return boot(ctx, cfg, m, initrd)
}

// writeInitramfs builds the guest's root file system. It is left
// uncompressed: the kernel copies it in less time than it would take to
// gunzip under TCG.
func writeInitramfs(file string, cfg Config) error {
	mods, err := cfg.Kernel.ModuleOrder(cfg.Modules)
	if err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("writing the initramfs: %w", err)
	}
	defer f.Close()
	c := newCPIOWriter(f)
	for _, d := range []string{"/bin", "/dev", "/proc", "/sys", "/tmp", "/run", "/etc", "/root", guestWorkDir} {
		c.Dir(d)
	}
	c.CharDev("/dev/console", 5, 1)
	c.Symlink("/var/run", "/run")
	c.File("/init", 0o755, cfg.Init)
	// busybox is there for people debugging a guest by hand; the tests do not
	// rely on it (and the guest runs without it). The host's is of the
	// host's architecture.
	if bb, err := exec.LookPath("busybox"); err == nil && cfg.Kernel.Arch == runtime.GOARCH {
		c.File("/bin/busybox", 0o755, bb)
		c.Symlink("/bin/sh", "busybox")
	}
	spec := guestSpec{Program: guestProgram, Args: cfg.Args, Env: guestEnv(cfg.Env), HideKernelBTF: cfg.HideKernelBTF}
	modDir := path.Join("/lib/modules", cfg.Kernel.Release)
	for _, m := range mods {
		g := path.Join(modDir, m)
		c.File(g, 0o644, filepath.Join(cfg.Kernel.ModulesDir(), m))
		spec.Modules = append(spec.Modules, g)
	}
	c.File(guestProgram, 0o755, cfg.Program)
	if cfg.Dir != "" {
		td := filepath.Join(cfg.Dir, "testdata")
		if st, err := os.Stat(td); err == nil && st.IsDir() {
			c.Tree(path.Join(guestWorkDir, "testdata"), td)
		}
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encoding the guest spec: %w", err)
	}
	c.Bytes(guestSpecFile, 0o644, js)
	if err := c.Close(); err != nil {
		return fmt.Errorf("writing the initramfs: %w", err)
	}
	return f.Close()
}

// guestEnv is the guest program's environment.
func guestEnv(extra []string) []string {
	env := []string{"PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp", "PINGPATH_TEST_GUEST=1"}
	return append(env, extra...)
}

// PassEnv picks the host variables that should reach a guest test: the
// PINGPATH_TEST_* switches, CI (so testenv.Require fails there too) and the Go
// runtime's debugging knobs.
func PassEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PINGPATH_TEST_GUEST":
		case strings.HasPrefix(k, "PINGPATH_TEST_"), k == "CI", k == "GOTRACEBACK", k == "GODEBUG":
			out = append(out, kv)
		}
	}
	return out
}

// kernelArgs is the guest's command line besides the console.
// no_timer_check skips the x86 IO-APIC timer probe, which under TCG on a busy
// host sometimes times out and panics ("IO-APIC + timer doesn't work!");
// other architectures ignore it. softlockup_panic turns a CPU stuck in the
// kernel for 2 × watchdog_thresh = 60 s into a panic, so the VM ends at once
// (panic=-1 and QEMU's -no-reboot) and the matrix boots the job again: a 6.1
// guest whose test program had passed sat in such a lockup after attaching
// fentry programs (TCG text patching, see DefaultCPUModel) until the VM's
// 14-minute timeout, twice in one quiet run. A minute is far above the
// longest stall a loaded host gives a vCPU thread (seconds at load 39).
const kernelArgs = "quiet panic=-1 no_timer_check softlockup_panic=1 watchdog_thresh=30 rdinit=/init"

func boot(ctx context.Context, cfg Config, m machine, initrd string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conR, conW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("making the console pipe: %w", err)
	}
	defer conR.Close()
	cpu := cfg.CPUModel
	if cpu == "" {
		cpu = m.cpu
	}
	// The console goes to fd 3 of QEMU, the program's output to QEMU's
	// stdout (machine.board).
	args := []string{
		// Never KVM: the cloud kernels die in KVM emulation here and QEMU then hangs.
		"-accel", "tcg,thread=" + cfg.TCGThread,
		"-cpu", cpu, "-m", fmt.Sprint(cfg.MemoryMB), "-smp", fmt.Sprint(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
	}
	args = append(args, m.board...)
	args = append(args,
		"-kernel", cfg.Kernel.Vmlinuz(), "-initrd", initrd,
		"-append", strings.TrimSpace("console="+m.console+" "+kernelArgs+" "+cfg.KernelArgs),
	)
	cmd := exec.CommandContext(ctx, m.qemu, args...)
	cmd.Stdin = nil
	cmd.Stdout = cfg.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{conW}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		conW.Close()
		return Result{}, fmt.Errorf("starting %s: %w", m.qemu, err)
	}
	conW.Close()
	var res Result
	var wg sync.WaitGroup
	tail := &tailBuffer{max: 32 << 10}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(conR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if res.Boot == 0 && strings.Contains(line, "vmexec: "+startMarker) {
				res.Boot = time.Since(start)
			}
			tail.WriteString(line + "\n")
			if cfg.Console != nil {
				fmt.Fprintln(cfg.Console, line)
			}
		}
	}()
	werr := cmd.Wait()
	res.Total = time.Since(start)
	wg.Wait()
	res.Console = tail.String()
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return res, fmt.Errorf("%w after %s (kernel %s)", ErrTimeout, cfg.Timeout, cfg.Kernel.Release)
	case context.Canceled:
		return res, fmt.Errorf("VM stopped: %w", context.Cause(ctx))
	}
	status := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return res, fmt.Errorf("running %s: %w", m.qemu, werr)
		}
		status = ee.ExitCode()
	}
	if status%2 == 0 {
		return res, fmt.Errorf("%w (qemu exit status %d, kernel %s)", ErrNoStatus, status, cfg.Kernel.Release)
	}
	res.ExitCode = status >> 1
	return res, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) WriteString(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.WriteString(s)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
