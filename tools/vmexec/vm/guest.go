package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/tools/qexit"
)

// IsGuestInit reports whether this process is the guest's /init. Programs
// that boot VMs through Run put their own executable in the guest as /init,
// so their main must start with:
//
//	if vm.IsGuestInit() { vm.GuestInit() }
func IsGuestInit() bool { return os.Getpid() == 1 }

// Guest exit statuses reported when the program could not run normally.
const (
	ExitGuestSetup = 125 // /init failed before starting the program
	ExitSignaled   = 126 // the program was killed by a signal
)

// GuestInit is the guest's /init: it mounts the pseudo file systems the
// tracers need (tracefs, debugfs, bpffs, cgroup2), loads the modules, brings
// up lo, runs the program with its output on its own terminal, and makes QEMU exit with
// the program's status. It never returns.
func GuestInit() {
	con, _ := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	logf := func(format string, args ...any) {
		if con != nil {
			fmt.Fprintf(con, "vmexec: "+format+"\n", args...)
		}
	}
	out, code := os.Stdout, ExitGuestSetup
	if spec, err := guestSetup(); err != nil {
		logf("guest setup: %v", err)
		fmt.Fprintf(out, "vmexec guest setup: %v\n", err)
	} else {
		if o, err := openProgramOutput(); err != nil {
			logf("opening %s for the program's output: %v", outputDevice(runtime.GOARCH), err)
		} else {
			out = o
			code = guestRun(out, spec, logf)
		}
	}
	if err := qexit.Exit(code, int(out.Fd()), 1); err != nil {
		logf("%v", err)
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func guestSetup() (guestSpec, error) {
	var spec guestSpec
	type mount struct{ fstype, dir string }
	for _, m := range []mount{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}, {"tmpfs", "/run"},
		{"tracefs", "/sys/kernel/tracing"}, {"debugfs", "/sys/kernel/debug"},
		{"bpf", "/sys/fs/bpf"}, {"cgroup2", "/sys/fs/cgroup"},
	} {
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return spec, fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err == nil {
		_ = exec.Command("/bin/busybox", "--install", "-s", "/bin").Run()
	}
	b, err := os.ReadFile(guestSpecFile)
	if err != nil {
		return spec, fmt.Errorf("reading the guest spec: %w", err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return spec, fmt.Errorf("decoding %s: %w", guestSpecFile, err)
	}
	for _, m := range spec.Modules {
		if err := loadModule(m); err != nil {
			return spec, err
		}
	}
	if err := linkUp("lo"); err != nil {
		return spec, fmt.Errorf("bringing up lo: %w", err)
	}
	if spec.HideKernelBTF {
		if err := hideKernelBTF(); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// hideKernelBTF saves the kernel's vmlinux BTF as KernelBTFCopy, then
// covers /sys/kernel/btf with an empty read-only tmpfs: the programs see
// what a kernel without CONFIG_DEBUG_INFO_BTF shows (no vmlinux, no module
// BTF), and have the kernel's BTF only as a file.
func hideKernelBTF() error {
	const dir = "/sys/kernel/btf"
	b, err := os.ReadFile(dir + "/vmlinux")
	if err != nil {
		return fmt.Errorf("saving the kernel's BTF before hiding it: %w", err)
	}
	if err := os.WriteFile(KernelBTFCopy, b, 0o444); err != nil {
		return fmt.Errorf("saving the kernel's BTF before hiding it: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
		return fmt.Errorf("hiding %s: %w", dir, err)
	}
	if _, err := os.Stat(dir + "/vmlinux"); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hiding %s: vmlinux still there (%v)", dir, err)
	}
	return nil
}

func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("loading module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", file, err)
	}
	return nil
}

func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// openDevice opens a device node, waiting for it to appear: a virtio
// console's port (hvc0) is added after the driver loads, when QEMU's
// control message arrives. Its node may exist before the port is ready:
// the open then fails with ENODEV (seen on arm64 6.1 at load 20, two VMs
// of five), which is waited out too.
func openDevice(name string) (*os.File, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
		notYet := errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO)
		if err == nil || !notYet || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openProgramOutput opens the program's terminal (ttyS1 on x86, hvc0 on
// arm64: machine.outputDev) with output processing off, so the host sees
// exactly the bytes the program wrote (no "\n" → "\r\n").
func openProgramOutput() (*os.File, error) {
	f, err := openDevice(outputDevice(runtime.GOARCH))
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, err
	}
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func guestRun(out *os.File, spec guestSpec, logf func(string, ...any)) int {
	cmd := exec.Command(spec.Program, spec.Args...)
	cmd.Dir = guestWorkDir
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = out, out
	var uptime string
	if u, err := os.ReadFile("/proc/uptime"); err == nil {
		uptime, _, _ = strings.Cut(string(u), " ")
	}
	logf("%s (uptime %ss)", startMarker, uptime)
	start := time.Now()
	err := cmd.Run()
	logf("program ended after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(out, "vmexec guest: program killed by %v\n", ws.Signal())
			return ExitSignaled
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(out, "vmexec guest: running %s: %v\n", spec.Program, err)
	return ExitGuestSetup
}
