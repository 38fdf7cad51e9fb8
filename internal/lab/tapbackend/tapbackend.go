// Package tapbackend is the lab's stand-in for QEMU's userspace virtio-net
// backend. The lab's VM NIC (eth0 in the VM namespace) and its host-side
// vnet0 are both TAP devices; the backend holds one file descriptor of each
// and copies every frame from one to the other. So a frame the guest sends is
// transmitted by tun_net_xmit(eth0), read by the backend, written to vnet0
// (tun_get_user → netif_rx in the host namespace) and bridged on; a frame the
// host bridge sends to the VM goes tun_net_xmit(vnet0) → backend read →
// write to eth0 → the guest's stack. These are the kernel events the host
// tracers look for on a real hypervisor, minus vhost and KVM.
package tapbackend

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Create makes a TAP device (no packet-info header) in the calling thread's
// network namespace and returns its file descriptor as a blocking file. The
// device is not persistent: it disappears when the last descriptor closes,
// the way a hypervisor's tap vanishes with its VM.
func Create(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun for %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating tap %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// Counters are per-direction frame counts.
type Counters struct {
	Frames atomic.Uint64
	Bytes  atomic.Uint64
	Errors atomic.Uint64 // failed writes (the frame is dropped, like a full virtqueue)
}

// Backend relays frames between a VM-side and a host-side TAP descriptor.
type Backend struct {
	VM, Host int // raw, blocking file descriptors
	// ToHost counts guest → host frames, ToVM host → guest.
	ToHost, ToVM Counters
}

// maxFrame is larger than any frame a TAP without offloads delivers
// (MTU 1500 + Ethernet header; 64 KiB allows a jumbo MTU too).
const maxFrame = 65536

// Run relays in both directions until a read fails (the descriptor was
// closed or the device deleted) and returns that error. One goroutine per
// direction, each on its own OS thread doing blocking reads, so a frame costs
// one read and one write system call and no scheduler round trip.
func (b *Backend) Run() error {
	errc := make(chan error, 2)
	go func() { errc <- pump(b.VM, b.Host, &b.ToHost) }()
	go func() { errc <- pump(b.Host, b.VM, &b.ToVM) }()
	return <-errc
}

func pump(from, to int, c *Counters) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, maxFrame)
	for {
		n, err := unix.Read(from, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading tap fd %d: %w", from, err)
		}
		if n == 0 {
			return fmt.Errorf("tap fd %d: end of file", from)
		}
		for {
			_, err = unix.Write(to, buf[:n])
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			// The other side is down (no carrier) or out of memory: drop
			// the frame like a NIC would.
			c.Errors.Add(1)
			continue
		}
		c.Frames.Add(1)
		c.Bytes.Add(uint64(n))
	}
}
