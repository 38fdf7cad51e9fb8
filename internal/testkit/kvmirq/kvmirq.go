// Package kvmirq is a KVM virtual machine reduced to what receives an
// interrupt through an irqfd: /dev/kvm, a VM with the in-kernel irqchip,
// one vCPU (its local APIC is the destination) and one GSI routed as an
// MSI. It never runs the vCPU and has no memory: the kernel's irqfd path
// does not need either. Given the call eventfd of a vhost-net queue
// (internal/testkit/vhostnet), every vhost_signal then runs the production
// injection path a KVM guest's virtio-net sees:
//
//	vhost_signal → eventfd_signal → irqfd_wakeup (in the vhost worker) →
//	kvm_arch_set_irq_inatomic → kvm_irq_delivery_to_apic_fast →
//	__apic_accept_irq (kvm:kvm_apic_accept_irq) → svm/vmx_deliver_interrupt
//
// or, when the fast path refuses, irqfd_inject in a kworker → kvm_set_irq
// (kvm:kvm_set_irq) → kvm_set_msi (kvm:kvm_msi_set_irq) → the APIC.
//
// Without hardware virtualization the kernel-matrix guests get it from
// QEMU's emulated AMD SVM (-cpu qemu64,+svm,+npt; kvm_amd loads under TCG).
package kvmirq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls, from include/uapi/linux/kvm.h (KVMIO = 0xAE) and
// include/uapi/asm-generic/ioctl.h: _IO(t, nr) = t<<8 | nr, _IOW(t, nr,
// size) = 1<<30 | sizeof<<16 | t<<8 | nr. They have kept their numbers since
// they were introduced (the uapi is stable).
const (
	ioctlGetAPIVersion  = 0xae00     // KVM_GET_API_VERSION: _IO(KVMIO, 0x00)
	ioctlCreateVM       = 0xae01     // KVM_CREATE_VM: _IO(KVMIO, 0x01)
	ioctlCheckExtension = 0xae03     // KVM_CHECK_EXTENSION: _IO(KVMIO, 0x03)
	ioctlCreateVCPU     = 0xae41     // KVM_CREATE_VCPU: _IO(KVMIO, 0x41)
	ioctlCreateIRQChip  = 0xae60     // KVM_CREATE_IRQCHIP: _IO(KVMIO, 0x60)
	ioctlSetGSIRouting  = 0x4008ae6a // KVM_SET_GSI_ROUTING: _IOW(KVMIO, 0x6a, struct kvm_irq_routing) (8 bytes: nr, flags, entries[])
	ioctlIRQFD          = 0x4020ae76 // KVM_IRQFD: _IOW(KVMIO, 0x76, struct kvm_irqfd) (32 bytes)
	ioctlGetLAPIC       = 0x8400ae8e // KVM_GET_LAPIC: _IOR(KVMIO, 0x8e, struct kvm_lapic_state) (KVM_APIC_REG_SIZE = 0x400 bytes); _IOR = 2<<30
	ioctlSetLAPIC       = 0x4400ae8f // KVM_SET_LAPIC: _IOW(KVMIO, 0x8f, struct kvm_lapic_state)
)

// Constants of linux/kvm.h.
const (
	apiVersion     = 12 // KVM_API_VERSION
	capIRQRouting  = 25 // KVM_CAP_IRQ_ROUTING
	capIRQFD       = 32 // KVM_CAP_IRQFD
	routingTypeMSI = 2  // KVM_IRQ_ROUTING_MSI
)

// MSI as the x86 local APIC decodes it: address 0xFEE00000 with the
// destination APIC ID in bits 12-19 (0: vCPU 0, physical destination
// mode), data = the vector with fixed delivery and edge trigger.
const (
	msiAddress = 0xfee00000
	// GSI is the routing entry the irqfd triggers: the first above the 24
	// IOAPIC pins KVM_CREATE_IRQCHIP sets up, as QEMU allocates MSI routes.
	GSI = 24
	// Vector is the interrupt vector the MSI carries (any of 0x20-0xfe).
	Vector = 0x41
)

// routingEntry is struct kvm_irq_routing_entry (48 bytes) with the msi
// member of its union (struct kvm_irq_routing_msi, padded to the union's 32).
type routingEntry struct {
	gsi, typ, flags, pad              uint32
	addressLo, addressHi, data, devid uint32
	_                                 [4]uint32
}

// routing is struct kvm_irq_routing with one entry.
type routing struct {
	nr, flags uint32
	entry     routingEntry
}

// irqfdArg is struct kvm_irqfd.
type irqfdArg struct {
	fd, gsi, flags, resamplefd uint32
	_                          [16]byte
}

// VM is a KVM VM with an in-kernel irqchip, one vCPU and GSI routed as an
// MSI to vCPU 0.
type VM struct {
	kvm, vm, vcpu int
}

// SkipUnlessX86 skips a test on other architectures than x86_64: the VM
// Open builds is an x86 one (in-kernel IOAPIC and LAPIC); an arm64 VM would
// need a vGIC, and the kernel matrix's arm64 guests have no EL2 for KVM. Not
// a missing kernel feature, so it skips in CI too.
func SkipUnlessX86(t testing.TB) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("kvmirq's irqfd VM is x86 only (this guest is %s)", runtime.GOARCH)
	}
}

// Open creates the VM. It fails (wrapping unix.ENOENT) when /dev/kvm does
// not exist: no kvm module, or a CPU without virtualization.
func Open() (*VM, error) {
	v := &VM{kvm: -1, vm: -1, vcpu: -1}
	ok := false
	defer func() {
		if !ok {
			v.Close()
		}
	}()
	var err error
	if v.kvm, err = unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("opening /dev/kvm: %w", err)
	}
	if n, err := ioctl(v.kvm, ioctlGetAPIVersion, 0); err != nil || n != apiVersion {
		return nil, fmt.Errorf("KVM_GET_API_VERSION: %d (want %d), %v", n, apiVersion, err)
	}
	for _, c := range []struct {
		name string
		cap  uintptr
	}{{"KVM_CAP_IRQFD", capIRQFD}, {"KVM_CAP_IRQ_ROUTING", capIRQRouting}} {
		if n, err := ioctl(v.kvm, ioctlCheckExtension, c.cap); err != nil || n <= 0 {
			return nil, fmt.Errorf("KVM_CHECK_EXTENSION %s: %d, %v", c.name, n, err)
		}
	}
	// KVM_CREATE_VM failed once in 40-odd runs of a 5.10 guest at load 30
	// (error not recorded); it also starts kernel threads, which a pending
	// signal can interrupt. A second and third try cost nothing.
	var errs []error
	for try := 0; try < 3 && v.vm < 0; try++ {
		fd, err := ioctl(v.kvm, ioctlCreateVM, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v.vm = fd
	}
	if v.vm < 0 {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", errors.Join(errs...))
	}
	// The irqchip before the vCPU, so that the vCPU gets an in-kernel
	// local APIC.
	if _, err := ioctl(v.vm, ioctlCreateIRQChip, 0); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	if v.vcpu, err = ioctl(v.vm, ioctlCreateVCPU, 0); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU 0: %w", err)
	}
	if err := v.enableAPIC(); err != nil {
		return nil, err
	}
	// KVM_SET_GSI_ROUTING replaces the whole table: the IOAPIC pins are
	// not used here, GSI alone is routed.
	r := routing{nr: 1, entry: routingEntry{gsi: GSI, typ: routingTypeMSI, addressLo: msiAddress, data: Vector}}
	if _, err := ioctl(v.vm, ioctlSetGSIRouting, uintptr(unsafe.Pointer(&r))); err != nil {
		return nil, fmt.Errorf("KVM_SET_GSI_ROUTING (GSI %d → MSI vector %#x): %w", GSI, Vector, err)
	}
	ok = true
	return v, nil
}

// Local APIC registers (offsets in struct kvm_lapic_state's regs, as in
// the APIC's MMIO page).
const (
	apicSVR       = 0xf0  // spurious-interrupt vector register
	apicSVREnable = 0x100 // its APIC software enable bit
)

// enableAPIC sets the vCPU's APIC software enable bit, as a guest's kernel
// does at boot: a reset APIC is software-disabled, and KVM's
// __apic_accept_irq then drops a fixed interrupt before the vendor's
// deliver_interrupt (svm_deliver_interrupt), one of the injection stages
// the vhost-rx tracer watches.
func (v *VM) enableAPIC() error {
	var regs [0x400]byte
	if _, err := ioctl(v.vcpu, ioctlGetLAPIC, uintptr(unsafe.Pointer(&regs))); err != nil {
		return fmt.Errorf("KVM_GET_LAPIC: %w", err)
	}
	svr := binary.LittleEndian.Uint32(regs[apicSVR:])
	binary.LittleEndian.PutUint32(regs[apicSVR:], svr|apicSVREnable)
	if _, err := ioctl(v.vcpu, ioctlSetLAPIC, uintptr(unsafe.Pointer(&regs))); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC (software enable): %w", err)
	}
	return nil
}

// AttachIRQFD makes a signal of eventfd inject GSI (KVM_IRQFD): irqfd_wakeup
// then consumes the eventfd's count, so its other readers never see it.
func (v *VM) AttachIRQFD(eventfd int) error {
	a := irqfdArg{fd: uint32(eventfd), gsi: GSI}
	if _, err := ioctl(v.vm, ioctlIRQFD, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_IRQFD (eventfd %d → GSI %d): %w", eventfd, GSI, err)
	}
	return nil
}

// Close releases the vCPU and the VM (which removes its irqfds) and /dev/kvm.
func (v *VM) Close() error {
	var errs []error
	for _, fd := range []*int{&v.vcpu, &v.vm, &v.kvm} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

func ioctl(fd int, req, arg uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}
