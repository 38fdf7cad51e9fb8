package qexit

import "fmt"

// appExit is ADP_Stopped_ApplicationExit, the SYS_EXIT reason whose subcode
// QEMU takes as its exit status.
const appExit = 0x20026

// semihostExit makes the semihosting call SYS_EXIT with the parameter
// block at block (reason, subcode).
//
//go:noescape
func semihostExit(block *[2]uint64)

func quit(code int) error {
	block := [2]uint64{appExit, uint64(code)<<1 | 1}
	semihostExit(&block)
	// QEMU exits on the call; getting here means semihosting is off (the
	// kernel would then have killed this process with SIGILL or SIGTRAP).
	return fmt.Errorf("semihosting SYS_EXIT %d did not end the VM (QEMU without -semihosting-config userspace=on?)", code)
}
