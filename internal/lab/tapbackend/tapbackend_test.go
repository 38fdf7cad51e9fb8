package tapbackend

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// TestBackendRelays puts two TAPs in a private network namespace, runs the
// backend between them, and checks that a frame the kernel transmits on one
// arrives, unchanged, as a received frame on the other, in both
// directions, and that the counters say so.
func TestBackendRelays(t *testing.T) {
	testenv.RequireRoot(t)
	done := make(chan error, 1)
	go func() {
		// This thread gets a namespace of its own and is discarded after
		// (never unlocked), so the TAPs vanish with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		done <- relayInNetns(t)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("timed out")
	}
}

func relayInNetns(t *testing.T) error {
	vm, err := Create("vm0")
	if err != nil {
		return err
	}
	defer vm.Close()
	host, err := Create("host0")
	if err != nil {
		return err
	}
	defer host.Close()
	for _, name := range []string{"vm0", "host0"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return err
		}
	}
	b := &Backend{VM: int(vm.Fd()), Host: int(host.Fd())}
	ran := make(chan error, 1)
	go func() { ran <- b.Run() }()
	// Deleting the devices wakes the blocked reads, which then fail:
	// that is how the backend ends when its VM link is torn down.
	defer func() {
		for _, name := range []string{"vm0", "host0"} {
			if l, err := netlink.LinkByName(name); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
		select {
		case err := <-ran:
			if err == nil {
				t.Error("backend ended without an error")
			}
		case <-time.After(5 * time.Second):
			t.Error("backend still running after its devices were deleted")
		}
	}()

	for _, dir := range []struct{ from, to string }{{"vm0", "host0"}, {"host0", "vm0"}} {
		in, err := packetSocket(dir.to)
		if err != nil {
			return err
		}
		defer unix.Close(in)
		out, err := packetSocket(dir.from)
		if err != nil {
			return err
		}
		defer unix.Close(out)
		frame := make([]byte, 60)
		copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5}) // local experimental ethertype
		copy(frame[14:], "pingpath tap backend test "+dir.from)
		if _, err := unix.Write(out, frame); err != nil {
			return err
		}
		buf := make([]byte, 2048)
		for {
			n, err := unix.Read(in, buf)
			if err != nil {
				return errors.New("no frame relayed from " + dir.from + " to " + dir.to + ": " + err.Error())
			}
			if bytes.Equal(buf[:n], frame) {
				break
			}
		}
	}
	// The relay counts a frame after writing it, so the receiver can see
	// the frame before the counter moves: poll until both have counted.
	deadline := time.Now().Add(5 * time.Second)
	for b.ToHost.Frames.Load() < 1 || b.ToVM.Frames.Load() < 1 {
		if time.Now().After(deadline) {
			t.Errorf("counters after 5s: to host %d, to vm %d frames", b.ToHost.Frames.Load(), b.ToVM.Frames.Load())
			break
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// packetSocket opens a packet socket bound to ifname that receives the
// frames the interface receives, with a 2 s timeout.
func packetSocket(ifname string) (int, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	const ethPAll = 0x0300 // htons(ETH_P_ALL)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: ethPAll, Ifindex: l.Attrs().Index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func TestCreateBadName(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := Create("this-name-is-far-too-long-for-linux"); err == nil {
		t.Fatal("want an error for a name longer than IFNAMSIZ")
	}
}
