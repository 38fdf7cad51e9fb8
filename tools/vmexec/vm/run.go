package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
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
	// CPUModel is QEMU's -cpu; empty means DefaultCPUModel.
	CPUModel string
	// Stdout receives the program's output (stdout and stderr interleaved, as
	// a terminal would show them).
	Stdout io.Writer
	// Console, when set, receives the kernel console as it is printed.
	Console io.Writer
}

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
	if cfg.CPUModel == "" {
		cfg.CPUModel = DefaultCPUModel
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if err := checkStatic(cfg.Program); err != nil {
		return Result{}, err
	}
	tmp, err := os.MkdirTemp("", "vmexec-")
	if err != nil {
		return Result{}, fmt.Errorf("making the VM's work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := writeInitramfs(initrd, cfg); err != nil {
		return Result{}, err
	}
	return boot(ctx, cfg, initrd)
}

// checkStatic rejects a dynamically linked program: the guest has no
// dynamic loader or libc (a Go test built with cgo, e.g. without
// CGO_ENABLED=0, would fail there with a puzzling "no such file").
func checkStatic(program string) error {
	f, err := elf.Open(program)
	if err != nil {
		return fmt.Errorf("reading %s: %w", program, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guest has no libc (build it with CGO_ENABLED=0)", program)
		}
	}
	return nil
}

// writeInitramfs builds the guest's root file system. It is left
// uncompressed: the kernel copies it in less time than it would take to
// gunzip under TCG.
func writeInitramfs(file string, cfg Config) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable for the guest's /init: %w", err)
	}
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
	c.File("/init", 0o755, self)
	// busybox is there for people debugging a guest by hand; the tests do not
	// rely on it (and the guest runs without it).
	if bb, err := exec.LookPath("busybox"); err == nil {
		c.File("/bin/busybox", 0o755, bb)
		c.Symlink("/bin/sh", "busybox")
	}
	spec := guestSpec{Program: guestProgram, Args: cfg.Args, Env: guestEnv(cfg.Env)}
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

// DefaultCPUModel hides CMPXCHG16B from the guest. QEMU 7.2's TCG corrupts
// RFLAGS on the unlocked "cmpxchg16b %gs:(...)" that 6.12's SLUB per-CPU
// fast path uses: 6.12 then crashed in 5 to 8 boots out of 10 (double faults
// in kmem_cache_alloc, a GPF on the IRET in sync_core). Without CX16 the
// kernel uses its emulation and 6.12 boots as reliably as 6.1.
// +svm,+npt give the guest AMD's virtualization as QEMU emulates it, so
// that kvm_amd loads and tests can create KVM VMs (docs/kernel-matrix.md).
const DefaultCPUModel = "qemu64,+svm,+npt,-cx16"

// kernelArgs is the guest's command line. no_timer_check skips the IO-APIC
// timer probe, which under TCG on a busy host sometimes times out and
// panics ("IO-APIC + timer doesn't work!").
const kernelArgs = "console=ttyS0 quiet panic=-1 no_timer_check rdinit=/init"

// QEMUBinary is the emulator used.
const QEMUBinary = "qemu-system-x86_64"

func boot(ctx context.Context, cfg Config, initrd string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conR, conW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("making the console pipe: %w", err)
	}
	defer conR.Close()
	// The console goes to fd 3 of QEMU (first serial port = ttyS0), the
	// program's output to QEMU's stdout (second serial port = ttyS1).
	args := []string{
		// Never KVM: the cloud kernels die in KVM emulation here and QEMU then hangs.
		"-accel", "tcg,thread=" + cfg.TCGThread,
		"-M", "pc", "-m", fmt.Sprint(cfg.MemoryMB), "-smp", fmt.Sprint(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-serial", "file:/dev/fd/3", "-serial", "stdio",
		"-kernel", cfg.Kernel.Vmlinuz(), "-initrd", initrd,
		"-append", strings.TrimSpace(kernelArgs + " " + cfg.KernelArgs),
	}
	if cfg.CPUModel != "" {
		args = append(args, "-cpu", cfg.CPUModel)
	}
	cmd := exec.CommandContext(ctx, QEMUBinary, args...)
	cmd.Stdin = nil
	cmd.Stdout = cfg.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{conW}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		conW.Close()
		return Result{}, fmt.Errorf("starting %s: %w", QEMUBinary, err)
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
			return res, fmt.Errorf("running %s: %w", QEMUBinary, werr)
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
