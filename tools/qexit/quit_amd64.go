package qexit

import "golang.org/x/sys/unix"

// outb writes val to an x86 I/O port (needs ioperm first).
func outb(port uint16, val uint8)

func ioperm(port int) error { return unix.Ioperm(port, 1, 1) }
