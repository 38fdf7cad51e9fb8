// Package qexit ends a QEMU guest with a chosen exit status. QEMU started
// with "-device isa-debug-exit,iobase=0xf4,iosize=0x04" quits as soon as the
// guest writes a byte v to port 0xf4, with exit status (v<<1)|1, so the host
// can tell "the guest reported status v" (odd) from "QEMU stopped for another
// reason" (even, e.g. 0 after a reboot with -no-reboot).
//
// The guest kernel has no /dev/port (CONFIG_DEVPORT is off in Debian's cloud
// kernels), so the byte is written with ioperm + OUTB from this process.
package qexit

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Port is the isa-debug-exit I/O port the VM runner configures.
const Port = 0xf4

// MaxCode is the largest status Exit can report: QEMU's status is
// (code<<1)|1 and must fit in a byte.
const MaxCode = 127

// Exit flushes the given terminals (output QEMU has not yet read would be
// lost when it quits) and makes QEMU exit with (code<<1)|1. Codes above
// MaxCode or below 0 are reported as MaxCode. It returns only on error,
// e.g. when not running as root in a guest with that device.
func Exit(code int, drain ...int) error {
	if code < 0 || code > MaxCode {
		code = MaxCode
	}
	// I/O permissions from ioperm belong to the calling OS thread: without
	// the lock the goroutine may resume on another thread after the
	// syscall, and its OUTB then faults (SIGSEGV, "Attempted to kill init").
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, fd := range drain {
		// TCSBRK with a non-zero argument is tcdrain: wait until the UART sent it all.
		_ = unix.IoctlSetInt(fd, unix.TCSBRK, 1)
	}
	// The UART's FIFO still holds the last bytes after tcdrain returns.
	time.Sleep(20 * time.Millisecond)
	if err := ioperm(Port); err != nil {
		return fmt.Errorf("enabling I/O port %#x: %w", Port, err)
	}
	outb(Port, uint8(code))
	// QEMU exits on the write; getting here means there is no such device.
	return fmt.Errorf("writing %d to I/O port %#x did not end the VM (no isa-debug-exit device?)", code, Port)
}
