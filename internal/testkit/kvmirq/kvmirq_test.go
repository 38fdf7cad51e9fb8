package kvmirq

import (
	"testing"
	"unsafe"
)

// The structs passed to KVM ioctls must have the uapi sizes the ioctl
// numbers encode (and KVM reads).
func TestUAPISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"struct kvm_irq_routing_entry", unsafe.Sizeof(routingEntry{}), 48},
		{"struct kvm_irq_routing (one entry)", unsafe.Sizeof(routing{}), 8 + 48},
		{"struct kvm_irqfd", unsafe.Sizeof(irqfdArg{}), 32},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	// _IOW(0xAE, nr, size) = 1<<30 | size<<16 | 0xAE<<8 | nr
	iow := func(nr, size uintptr) uintptr { return 1<<30 | size<<16 | 0xae<<8 | nr }
	if ioctlIRQFD != iow(0x76, unsafe.Sizeof(irqfdArg{})) || ioctlSetGSIRouting != iow(0x6a, 8) || ioctlSetLAPIC != iow(0x8f, 0x400) {
		t.Error("ioctl numbers do not match the struct sizes")
	}
}
