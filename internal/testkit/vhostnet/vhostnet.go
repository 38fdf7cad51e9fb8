// Package vhostnet is a minimal userspace vhost-net driver: it plays the
// part QEMU plays for a KVM guest's virtio-net NIC, so that the kernel's
// vhost-net data path runs for real without a VM. It owns one RX and one TX
// split virtqueue in an mmap'd buffer that is also the "guest memory" of the
// vhost memory table, and attaches a tap device as the backend.
//
// With it, a frame the tap transmits (tun_net_xmit) is copied by the vhost
// worker (handle_rx) into a buffer we posted, lands in the used ring and is
// announced on the call eventfd (vhost_signal → eventfd_signal); a frame we
// put in the TX ring and kick is picked up by handle_tx and handed to the
// tap (tun_sendmsg), exactly the paths the vhost-rx and vhost-tx tracers
// watch. Only KVM's irqfd/interrupt injection is missing.
//
// The driver negotiates VIRTIO_F_VERSION_1 and VHOST_NET_F_VIRTIO_NET_HDR:
// vhost itself adds and strips the 12-byte virtio-net header, so the tap
// needs no IFF_VNET_HDR and frames in and out of this package are plain
// Ethernet frames.
package vhostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vhost ioctls (linux/vhost.h); VHOST_VIRTIO is 0xAF.
const (
	ioctlGetFeatures  = 0x8008af00 // _IOR(0xAF, 0x00, __u64)
	ioctlSetFeatures  = 0x4008af00 // _IOW(0xAF, 0x00, __u64)
	ioctlSetOwner     = 0x0000af01 // _IO(0xAF, 0x01)
	ioctlSetMemTable  = 0x4008af03 // _IOW(0xAF, 0x03, struct vhost_memory)
	ioctlSetVringNum  = 0x4008af10 // _IOW(0xAF, 0x10, struct vhost_vring_state)
	ioctlSetVringAddr = 0x4028af11 // _IOW(0xAF, 0x11, struct vhost_vring_addr)
	ioctlSetVringBase = 0x4008af12 // _IOW(0xAF, 0x12, struct vhost_vring_state)
	ioctlSetVringKick = 0x4008af20 // _IOW(0xAF, 0x20, struct vhost_vring_file)
	ioctlSetVringCall = 0x4008af21 // _IOW(0xAF, 0x21, struct vhost_vring_file)
	ioctlNetSetBack   = 0x4008af30 // _IOW(0xAF, 0x30, struct vhost_vring_file)
)

// Feature bits.
const (
	FeatureVhostNetHdr = 1 << 27 // VHOST_NET_F_VIRTIO_NET_HDR: vhost adds/strips the virtio-net header
	FeatureVersion1    = 1 << 32 // VIRTIO_F_VERSION_1
)

// HeaderLen is the virtio-net header (virtio_net_hdr_v1) vhost puts in
// front of every frame in our buffers.
const HeaderLen = 12

// Queue indexes of vhost-net.
const (
	rxIndex = 0 // VHOST_NET_VQ_RX
	txIndex = 1 // VHOST_NET_VQ_TX
)

// Split virtqueue layout constants.
const (
	descSize      = 16
	descFlagWrite = 2 // VRING_DESC_F_WRITE: device writes this buffer
	bufSize       = 2048
	ringArea      = 4096 // desc table, avail and used ring of one queue
)

// Options size the driver. Zero values take the defaults.
type Options struct {
	QueueSize int // descriptors per queue, a power of two up to 128 (default 64)
}

// Device is one vhost-net instance with its tap backend.
type Device struct {
	fd  int
	mem []byte // guest memory: rings, then RX buffers, then TX buffers
	rx  *queue
	tx  *queue
	tap *os.File
}

// queue is one split virtqueue inside Device.mem.
type queue struct {
	index     int
	size      int
	mem       []byte
	ringOff   int // offset of the desc table in mem; avail and used follow
	bufOff    int // offset of this queue's buffers in mem
	kick      int // eventfd we write to notify vhost
	call      int // eventfd vhost signals
	availIdx  uint16
	usedIdx   uint16 // next used entry to consume
	freeSlots []uint16
	// callTaken: someone else consumes the call eventfd's count (a KVM
	// irqfd), so a wait for it polls the used ring instead.
	callTaken bool
}

func (q *queue) availOff() int { return q.ringOff + q.size*descSize }

// usedOff is after the avail ring (flags, idx, ring[size], used_event),
// aligned to 4 as vhost requires. For 128 entries everything ends at 3340,
// inside ringArea.
func (q *queue) usedOff() int { return (q.availOff() + 6 + 2*q.size + 3) &^ 3 }

func (q *queue) setDesc(i uint16, addr uint64, length uint32, flags uint16) {
	d := q.mem[q.ringOff+int(i)*descSize:]
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], 0)
}

// publish puts descriptor head i in the avail ring and makes it visible to
// the device (flags and idx are one 32-bit word, stored atomically after the
// descriptor and ring entry are written).
func (q *queue) publish(i uint16) {
	a := q.availOff()
	binary.LittleEndian.PutUint16(q.mem[a+4+2*int(q.availIdx%uint16(q.size)):], i)
	q.availIdx++
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.mem[a])), uint32(q.availIdx)<<16)
}

// used returns the used entries the device added since the last call.
func (q *queue) used() []usedElem {
	u := q.usedOff()
	idx := uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.mem[u]))) >> 16)
	var out []usedElem
	for ; q.usedIdx != idx; q.usedIdx++ {
		e := q.mem[u+4+8*int(q.usedIdx%uint16(q.size)):]
		out = append(out, usedElem{id: uint16(binary.LittleEndian.Uint32(e[0:])), len: binary.LittleEndian.Uint32(e[4:])})
	}
	return out
}

type usedElem struct {
	id  uint16
	len uint32
}

func (q *queue) buf(i uint16) []byte {
	off := q.bufOff + int(i)*bufSize
	return q.mem[off : off+bufSize]
}

func (q *queue) kickDevice() error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(q.kick, one[:]); err != nil {
		return fmt.Errorf("kicking queue %d: %w", q.index, err)
	}
	return nil
}

// callTakenPoll is how often a queue whose call eventfd is taken looks at
// its used ring.
const callTakenPoll = 2 * time.Millisecond

// waitCall waits until vhost signals the call eventfd, then clears it. When
// the eventfd is taken, it waits callTakenPoll at most (the caller looks at
// the used ring again).
func (q *queue) waitCall(timeout time.Duration) (bool, error) {
	if q.callTaken {
		timeout = min(timeout, callTakenPoll)
	}
	fds := []unix.PollFd{{Fd: int32(q.call), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("waiting for queue %d's call eventfd: %w", q.index, err)
		}
		if n == 0 {
			return false, nil
		}
		var b [8]byte
		_, _ = unix.Read(q.call, b[:])
		return true, nil
	}
}

// Open sets up vhost-net on /dev/vhost-net with tap as its backend. The tap
// must be a TAP (IFF_TAP|IFF_NO_PI) device opened without IFF_VNET_HDR, such
// as the one internal/lab/tapbackend.Create returns; the Device takes ownership of it. All RX
// buffers are posted before Open returns.
func Open(tap *os.File, opt Options) (d *Device, err error) {
	if opt.QueueSize == 0 {
		opt.QueueSize = 64
	}
	if opt.QueueSize > 128 || opt.QueueSize&(opt.QueueSize-1) != 0 {
		return nil, fmt.Errorf("vhost-net queue size %d: want a power of two up to 128", opt.QueueSize)
	}
	fd, err := unix.Open("/dev/vhost-net", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/vhost-net: %w", err)
	}
	d = &Device{fd: fd, tap: tap}
	// A failing return sets d to nil: the cleanup keeps its own reference.
	dev := d
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()
	if err := ioctlPtr(fd, ioctlSetOwner, nil); err != nil {
		return nil, fmt.Errorf("VHOST_SET_OWNER: %w", err)
	}
	var features uint64
	if err := ioctlPtr(fd, ioctlGetFeatures, unsafe.Pointer(&features)); err != nil {
		return nil, fmt.Errorf("VHOST_GET_FEATURES: %w", err)
	}
	want := uint64(FeatureVhostNetHdr | FeatureVersion1)
	if features&want != want {
		return nil, fmt.Errorf("vhost-net offers features %#x, lacks %#x", features, want&^features)
	}
	if err := ioctlPtr(fd, ioctlSetFeatures, unsafe.Pointer(&want)); err != nil {
		return nil, fmt.Errorf("VHOST_SET_FEATURES %#x: %w", want, err)
	}
	size := 2*ringArea + 2*opt.QueueSize*bufSize
	d.mem, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes of guest memory: %w", size, err)
	}
	if err := d.setMemTable(); err != nil {
		return nil, err
	}
	d.rx = &queue{index: rxIndex, size: opt.QueueSize, mem: d.mem, ringOff: 0, bufOff: 2 * ringArea}
	d.tx = &queue{index: txIndex, size: opt.QueueSize, mem: d.mem, ringOff: ringArea, bufOff: 2*ringArea + opt.QueueSize*bufSize}
	for _, q := range []*queue{d.rx, d.tx} {
		if err := d.setupQueue(q); err != nil {
			return nil, err
		}
	}
	for i := 0; i < opt.QueueSize; i++ {
		d.tx.freeSlots = append(d.tx.freeSlots, uint16(i))
		d.postRX(uint16(i))
	}
	for _, q := range []*queue{d.rx, d.tx} {
		f := vringFile{index: uint32(q.index), fd: int32(tap.Fd())}
		if err := ioctlPtr(fd, ioctlNetSetBack, unsafe.Pointer(&f)); err != nil {
			return nil, fmt.Errorf("VHOST_NET_SET_BACKEND queue %d: %w", q.index, err)
		}
	}
	if err := d.rx.kickDevice(); err != nil {
		return nil, err
	}
	return d, nil
}

type vringState struct{ index, num uint32 }

type vringFile struct {
	index uint32
	fd    int32
}

type vringAddr struct {
	index, flags                       uint32
	desc, used, avail, logGuestAddress uint64
}

type memRegion struct {
	guestPhysAddr, memorySize, userspaceAddr, flagsPadding uint64
}

type memTable struct {
	nregions, padding uint32
	region            memRegion
}

func (d *Device) hva(off int) uint64 { return uint64(uintptr(unsafe.Pointer(&d.mem[off]))) }

// setMemTable makes the whole mapping guest memory, at guest physical 0, so
// that a descriptor's address is simply an offset into d.mem.
func (d *Device) setMemTable() error {
	t := memTable{nregions: 1, region: memRegion{memorySize: uint64(len(d.mem)), userspaceAddr: d.hva(0)}}
	if err := ioctlPtr(d.fd, ioctlSetMemTable, unsafe.Pointer(&t)); err != nil {
		return fmt.Errorf("VHOST_SET_MEM_TABLE: %w", err)
	}
	return nil
}

func (d *Device) setupQueue(q *queue) error {
	var err error
	if q.kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("making queue %d's kick eventfd: %w", q.index, err)
	}
	if q.call, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("making queue %d's call eventfd: %w", q.index, err)
	}
	steps := []struct {
		name string
		req  uint
		arg  unsafe.Pointer
	}{
		{"VHOST_SET_VRING_NUM", ioctlSetVringNum, unsafe.Pointer(&vringState{index: uint32(q.index), num: uint32(q.size)})},
		{"VHOST_SET_VRING_BASE", ioctlSetVringBase, unsafe.Pointer(&vringState{index: uint32(q.index)})},
		{"VHOST_SET_VRING_ADDR", ioctlSetVringAddr, unsafe.Pointer(&vringAddr{
			index: uint32(q.index), desc: d.hva(q.ringOff), avail: d.hva(q.availOff()), used: d.hva(q.usedOff()),
		})},
		{"VHOST_SET_VRING_KICK", ioctlSetVringKick, unsafe.Pointer(&vringFile{index: uint32(q.index), fd: int32(q.kick)})},
		{"VHOST_SET_VRING_CALL", ioctlSetVringCall, unsafe.Pointer(&vringFile{index: uint32(q.index), fd: int32(q.call)})},
	}
	for _, s := range steps {
		if err := ioctlPtr(d.fd, s.req, s.arg); err != nil {
			return fmt.Errorf("%s queue %d: %w", s.name, q.index, err)
		}
	}
	return nil
}

// TakeRXCall returns the RX queue's call eventfd (the one vhost signals
// after delivering frames) for a consumer such as a KVM irqfd
// (internal/testkit/kvmirq), which plays the guest's interrupt: irqfd_wakeup
// consumes the count, so from then on Receive polls the used ring instead
// of waiting for the eventfd. The Device still owns and closes the fd.
func (d *Device) TakeRXCall() int {
	d.rx.callTaken = true
	return d.rx.call
}

// postRX hands RX buffer i (a device-writable descriptor) to vhost.
func (d *Device) postRX(i uint16) {
	d.rx.setDesc(i, uint64(d.rx.bufOff+int(i)*bufSize), bufSize, descFlagWrite)
	d.rx.publish(i)
}

// Receive waits up to timeout for vhost to deliver frames into the RX ring
// (it signals the RX call eventfd after filling used entries) and returns
// them without the virtio-net header. The buffers are posted again, so
// Receive can be called in a loop. It returns no frames and no error when
// nothing arrived in time.
func (d *Device) Receive(timeout time.Duration) ([][]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		if frames := d.drainRX(); len(frames) > 0 {
			return frames, d.rx.kickDevice()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		if _, err := d.rx.waitCall(left); err != nil {
			return nil, err
		}
	}
}

func (d *Device) drainRX() [][]byte {
	var frames [][]byte
	for _, u := range d.rx.used() {
		if int(u.id) >= d.rx.size || u.len < HeaderLen || u.len > bufSize {
			continue
		}
		b := d.rx.buf(u.id)
		frames = append(frames, append([]byte(nil), b[HeaderLen:u.len]...))
		d.postRX(u.id)
	}
	return frames
}

// Send puts an Ethernet frame in the TX ring and kicks vhost, which hands
// it to the tap (the tap's network stack then receives it). It reclaims TX
// buffers vhost has finished with; it fails when all are in flight.
func (d *Device) Send(frame []byte) error {
	if len(frame)+HeaderLen > bufSize {
		return fmt.Errorf("frame of %d bytes does not fit a %d-byte buffer", len(frame), bufSize)
	}
	d.reclaimTX()
	if len(d.tx.freeSlots) == 0 {
		return errors.New("vhost-net TX ring full: vhost has not consumed earlier frames")
	}
	i := d.tx.freeSlots[len(d.tx.freeSlots)-1]
	d.tx.freeSlots = d.tx.freeSlots[:len(d.tx.freeSlots)-1]
	b := d.tx.buf(i)
	clear(b[:HeaderLen])
	copy(b[HeaderLen:], frame)
	d.tx.setDesc(i, uint64(d.tx.bufOff+int(i)*bufSize), uint32(HeaderLen+len(frame)), 0)
	d.tx.publish(i)
	return d.tx.kickDevice()
}

// WaitSent waits up to timeout until vhost has consumed every frame given
// to Send (returned them in the TX used ring).
func (d *Device) WaitSent(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d.reclaimTX()
		if len(d.tx.freeSlots) == d.tx.size {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("vhost did not consume %d TX frames within %s", d.tx.size-len(d.tx.freeSlots), timeout)
		}
		if _, err := d.tx.waitCall(left); err != nil {
			return err
		}
	}
}

func (d *Device) reclaimTX() {
	for _, u := range d.tx.used() {
		if int(u.id) < d.tx.size {
			d.tx.freeSlots = append(d.tx.freeSlots, u.id)
		}
	}
}

// Close releases vhost-net (which stops its worker), the tap, the eventfds
// and the memory.
func (d *Device) Close() error {
	var errs []error
	if d.fd >= 0 {
		errs = append(errs, unix.Close(d.fd))
		d.fd = -1
	}
	for _, q := range []*queue{d.rx, d.tx} {
		if q != nil {
			unix.Close(q.kick)
			unix.Close(q.call)
		}
	}
	if d.tap != nil {
		errs = append(errs, d.tap.Close())
		d.tap = nil
	}
	if d.mem != nil {
		errs = append(errs, unix.Munmap(d.mem))
		d.mem = nil
	}
	return errors.Join(errs...)
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}
