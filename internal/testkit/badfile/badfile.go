// Package badfile makes, for tests, the files a reader of user input must
// refuse without blocking on them: a FIFO and a symlink to a device.
package badfile

import (
	"os"
	"syscall"
	"testing"
)

// FIFO creates a named pipe at path (nobody ever writes to it: opening it
// for reading blocks).
func FIFO(t testing.TB, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// DeviceLink creates at path a symlink to /dev/urandom (endless data).
func DeviceLink(t testing.TB, path string) string {
	t.Helper()
	if err := os.Symlink("/dev/urandom", path); err != nil {
		t.Fatal(err)
	}
	return path
}
