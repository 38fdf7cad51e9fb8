// Package qexit ends a QEMU guest with a chosen exit status, so that the
// host can tell "the guest reported status v" (QEMU exits with the odd
// status (v<<1)|1) from "QEMU stopped for another reason" (an even status,
// e.g. 0 after a reboot with -no-reboot).
//
//   - x86_64: QEMU started with "-device isa-debug-exit,iobase=0xf4,iosize=0x04"
//     quits as soon as the guest writes a byte v to port 0xf4, with exit
//     status (v<<1)|1. The guest kernel has no /dev/port (CONFIG_DEVPORT is
//     off in Debian's cloud kernels), so the byte is written with ioperm +
//     OUTB from this process.
//   - arm64: QEMU started with "-semihosting-config
//     enable=on,target=native,userspace=on" quits on the semihosting call
//     SYS_EXIT (HLT #0xf000 with ADP_Stopped_ApplicationExit) with the
//     subcode as its exit status; this process passes (v<<1)|1 itself.
package qexit

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Port is the isa-debug-exit I/O port the VM runner configures on x86_64.
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
	return quit(code)
}
