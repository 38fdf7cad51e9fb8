package vhostnet

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// OpenTap creates a TAP device called name inside network namespace ns
// (the tun driver puts a new device in the namespace of the thread that
// creates it) and returns its file, ready for Open. The device disappears
// when the file is closed. It is created down and without addresses.
func OpenTap(ns netns.NsHandle, name string) (*os.File, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("creating tap %s: getting the current netns: %w", name, err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("creating tap %s: entering netns: %w", name, err)
	}
	f, err := createTap(name)
	if rerr := netns.Set(orig); rerr != nil {
		// Leave this thread locked: it is in the wrong namespace and the
		// runtime will end it when the goroutine exits.
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("creating tap %s: returning to the original netns: %w", name, rerr)
	}
	runtime.UnlockOSThread()
	return f, err
}

func createTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating tap %s: opening /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating tap %s: TUNSETIFF: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
