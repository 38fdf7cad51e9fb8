// Command vmexec runs a program, normally a Go test binary, inside a Debian
// kernel booted under QEMU/TCG, and exits with the program's status. It is
// a `go test -exec` runner:
//
//	scripts/kernels.sh 6.12
//	go build -o bin/vmexec ./tools/vmexec
//	PINGPATH_VM_KERNEL=6.12 PINGPATH_TEST_PROBE=kprobe \
//	    go test -count=1 -exec "$PWD/bin/vmexec" ./internal/vhostnet
//
// Environment:
//
//	PINGPATH_VM_KERNEL   kernel series cached by scripts/kernels.sh (default 6.12)
//	PINGPATH_KERNEL_CACHE  where they are cached (default .cache/kernels in the module)
//	PINGPATH_VM_MODULES  extra modules to load (space separated), besides vm.DefaultModules
//	PINGPATH_VM_TIMEOUT  limit for the whole VM (default: the test's -test.timeout plus 2m, else 10m)
//	PINGPATH_VM_CONSOLE  1: copy the kernel console to stderr as it is printed
//	PINGPATH_VM_INIT     the guest's /init for a kernel of another architecture
//	                     than vmexec's (default: vmexec-<arch> beside vmexec)
//	PINGPATH_VM_HIDE_BTF 1: the guest hides /sys/kernel/btf (a kernel without
//	                     CONFIG_DEBUG_INFO_BTF) after saving vmlinux's BTF as
//	                     /run/vmlinux.btf, and the tests get PINGPATH_TEST_BTF
//	                     naming it (the tracers' --btf; the kernel matrix's
//	                     btf-file rung)
//
// A kernel of another architecture (PINGPATH_VM_KERNEL=6.12-arm64) runs test
// binaries built for it, and its /init is vmexec built for it:
//
//	scripts/kernels.sh 6.12-arm64
//	go build -o bin/vmexec ./tools/vmexec
//	GOARCH=arm64 go build -o bin/vmexec-arm64 ./tools/vmexec
//	PINGPATH_VM_KERNEL=6.12-arm64 GOARCH=arm64 CGO_ENABLED=0 \
//	    go test -count=1 -exec "$PWD/bin/vmexec" ./internal/tracer/vm
//
// The guest gets PINGPATH_TEST_GUEST=1 and the host's PINGPATH_TEST_*, CI,
// GOTRACEBACK and GODEBUG. The package's testdata/ is copied into the
// guest's working directory. Exit status 124 means the VM timed out, 125
// that it ended without reporting a status; the console tail is printed then.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pingpath/pingpath/tools/vmexec/vm"
)

func main() {
	if vm.IsGuestInit() {
		vm.GuestInit()
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: vmexec PROGRAM [ARG...]   (a go test -exec runner; see go doc ./tools/vmexec)")
		return 2
	}
	series := os.Getenv("PINGPATH_VM_KERNEL")
	if series == "" {
		series = "6.12"
	}
	cache, err := vm.CacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmexec:", err)
		return 2
	}
	k, err := vm.LoadKernel(cache, series)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmexec:", err)
		return 2
	}
	progArgs, testTimeout := guestArgs(args[1:])
	timeout := 10 * time.Minute
	if testTimeout > 0 {
		timeout = testTimeout + 2*time.Minute
	}
	if s := os.Getenv("PINGPATH_VM_TIMEOUT"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil {
			fmt.Fprintf(os.Stderr, "vmexec: PINGPATH_VM_TIMEOUT=%q: %v\n", s, err)
			return 2
		}
	}
	init, err := guestInit(k.Arch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmexec:", err)
		return 2
	}
	dir, _ := os.Getwd()
	cfg := vm.Config{
		Init:       init,
		Kernel:     k,
		Program:    args[0],
		Args:       progArgs,
		Env:        vm.PassEnv(os.Environ()),
		Dir:        dir,
		Modules:    append(append([]string(nil), vm.DefaultModules...), strings.Fields(os.Getenv("PINGPATH_VM_MODULES"))...),
		Timeout:    timeout,
		Stdout:     os.Stdout,
		TCGThread:  os.Getenv("PINGPATH_VM_TCG_THREAD"),
		CPUModel:   os.Getenv("PINGPATH_VM_CPU"),
		KernelArgs: os.Getenv("PINGPATH_VM_APPEND"),
	}
	if n, err := strconv.Atoi(os.Getenv("PINGPATH_VM_CPUS")); err == nil {
		cfg.CPUs = n
	}
	if os.Getenv("PINGPATH_VM_CONSOLE") == "1" {
		cfg.Console = os.Stderr
	}
	if os.Getenv("PINGPATH_VM_HIDE_BTF") == "1" {
		cfg.HideKernelBTF = true
		cfg.Env = append(cfg.Env, vm.TestBTFEnv)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := vm.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmexec: %v\n--- kernel %s console (tail) ---\n%s--- end of console ---\n", err, k.Release, res.Console)
		if errors.Is(err, vm.ErrTimeout) {
			return 124
		}
		return vm.ExitGuestSetup
	}
	if res.ExitCode != 0 {
		fmt.Fprintf(os.Stderr, "vmexec: kernel %s: exit status %d (boot %s, total %s)\n--- console (tail) ---\n%s--- end of console ---\n",
			k.Release, res.ExitCode, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Console)
	}
	return res.ExitCode
}

// guestInit is the guest's /init for a kernel of arch: this executable, or
// for another architecture than this one's, $PINGPATH_VM_INIT or
// vmexec-<arch> beside this executable.
func guestInit(arch string) (string, error) {
	if arch == runtime.GOARCH {
		return "", nil // vm.Run's default: this executable
	}
	if p := os.Getenv("PINGPATH_VM_INIT"); p != "" {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this executable: %w", err)
	}
	p := self + "-" + arch
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the kernel is %s and vmexec is %s: its guest needs vmexec built for %s (GOARCH=%s CGO_ENABLED=0 go build -o %s ./tools/vmexec, or PINGPATH_VM_INIT): %w",
			arch, runtime.GOARCH, arch, arch, p, err)
	}
	return p, nil
}

// guestArgs drops the arguments that name host paths the guest cannot
// write (go test's cache log) and returns the test's own -test.timeout.
func guestArgs(args []string) ([]string, time.Duration) {
	var out []string
	var timeout time.Duration
	for _, a := range args {
		name, val, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "test.testlogfile":
			continue
		case "test.timeout":
			timeout, _ = time.ParseDuration(val)
		}
		out = append(out, a)
	}
	return out, timeout
}
