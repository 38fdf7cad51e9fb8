package vm

import (
	"debug/elf"
	"fmt"
	"strings"
)

// machine is how QEMU emulates one guest architecture: which emulator, which
// board and CPU, where the kernel console and the program's output go, and
// how the guest reports its exit status. Everything else about a guest is
// the same on every architecture.
type machine struct {
	// qemu is the emulator binary.
	qemu string
	// cpu is QEMU's -cpu when Config.CPUModel is empty.
	cpu string
	// elf is the ELF machine of the programs the guest runs.
	elf elf.Machine
	// console is the kernel console's device (console=).
	console string
	// outputDev is the guest device the program's output goes to.
	outputDev string
	// modules are loaded in every guest besides Config.Modules: on x86
	// KVM's (kvm_amd for the emulated SVM; kvm and irqbypass come as its
	// dependencies), on arm64 the virtio console's.
	modules []string
	// board is QEMU's arguments for the board and its devices. The kernel
	// console must go to fd 3 of QEMU, the program's output to QEMU's stdout.
	board []string
}

// DefaultCPUModel hides CMPXCHG16B from the guest. QEMU 7.2's TCG corrupts
// RFLAGS on the unlocked "cmpxchg16b %gs:(...)" that 6.12's SLUB per-CPU
// fast path uses: 6.12 then crashed in 5 to 8 boots out of 10 (double faults
// in kmem_cache_alloc, a GPF on the IRET in sync_core). Without CX16 the
// kernel uses its emulation and 6.12 boots as reliably as 6.1.
// +svm,+npt give the guest AMD's virtualization as QEMU emulates it, so
// that kvm_amd loads and tests can create KVM VMs (docs/kernel-matrix.md).
const DefaultCPUModel = "qemu64,+svm,+npt,-cx16"

// The emulators (QEMUFor names the one of an architecture).
const (
	QEMUBinary      = "qemu-system-x86_64"  // Debian's qemu-system-x86
	QEMUBinaryARM64 = "qemu-system-aarch64" // Debian's qemu-system-arm
)

var machines = map[string]machine{
	// The PC: two 16550 UARTs (ttyS0 the console, ttyS1 the program), and
	// isa-debug-exit for the status (tools/qexit writes it to port 0xf4).
	"amd64": {
		qemu: QEMUBinary, cpu: DefaultCPUModel, elf: elf.EM_X86_64,
		console: "ttyS0", outputDev: "/dev/ttyS1", modules: []string{"kvm_amd"},
		board: []string{
			"-M", "pc",
			"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
			"-serial", "file:/dev/fd/3", "-serial", "stdio",
		},
	},
	// QEMU's virt board, booted straight into the kernel's Image (no
	// firmware): its one PL011 UART (ttyAMA0) is the console; the program's
	// output goes to a virtio console (hvc0, CONFIG_VIRTIO_CONSOLE=y in
	// Debian's cloud kernels), and the status through semihosting
	// SYS_EXIT, which QEMU takes from user space only with userspace=on
	// (tools/qexit; semihosting also opens the host's files to the guest,
	// acceptable for a test guest that runs our own program). cortex-a57
	// (ARMv8.0) rather than "max": TCG emulates pointer authentication and
	// the other v8.x extensions of "max" at a cost, and the tracers need
	// none of them. KVM is built into the arm64 kernel, but without EL2
	// (virtualization=on, which makes TCG emulate a hypervisor) it has no
	// /dev/kvm: the irqfd test's VM (internal/testkit/kvmirq) is x86 only.
	"arm64": {
		qemu: QEMUBinaryARM64, cpu: "cortex-a57", elf: elf.EM_AARCH64,
		console: "ttyAMA0", outputDev: "/dev/hvc0",
		// Built in on 6.12, modules on 6.1 (ModuleOrder skips built-ins).
		modules: []string{"virtio_pci", "virtio_console"},
		board: []string{
			"-M", "virt",
			"-semihosting-config", "enable=on,target=native,userspace=on",
			"-serial", "file:/dev/fd/3",
			"-device", "virtio-serial-pci", "-chardev", "stdio,id=out", "-device", "virtconsole,chardev=out",
		},
	},
}

// machineFor is the machine of a kernel architecture (GOARCH name).
func machineFor(arch string) (machine, error) {
	m, ok := machines[arch]
	if !ok {
		return machine{}, fmt.Errorf("no QEMU machine for %q kernels (known: amd64, arm64)", arch)
	}
	return m, nil
}

// QEMUFor names the emulator that boots kernels of arch (GOARCH name).
func QEMUFor(arch string) string {
	return machines[arch].qemu
}

// CPUFor is the -cpu guests of arch get when Config.CPUModel is empty.
func CPUFor(arch string) string {
	return machines[arch].cpu
}

// outputDevice is the guest's device for the program's output.
func outputDevice(goarch string) string {
	return machines[goarch].outputDev
}

// checkProgram rejects a program the guest cannot run: one dynamically
// linked (the guest has no dynamic loader or libc; a Go test built with cgo,
// e.g. without CGO_ENABLED=0, would fail there with a puzzling "no such
// file") or one built for another architecture than the kernel's.
func checkProgram(program string, m machine, arch string) error {
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
	if f.Machine != m.elf {
		return fmt.Errorf("%s is built for %s, the kernel is %s (build it with GOARCH=%s)",
			program, strings.TrimPrefix(f.Machine.String(), "EM_"), arch, arch)
	}
	return nil
}
