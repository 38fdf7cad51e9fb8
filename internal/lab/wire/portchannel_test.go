package wire

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// testEtherType marks the test's frames (IEEE local experimental), so that
// whatever else the kernel sends on the veths is ignored.
const testEtherType = 0x88b5

// TestPortChannel relays between one interface and a port channel of two
// (a bonded host's members): frames towards the port channel leave on its
// members in turn, frames from either member reach the other end, and none
// goes from one member to the other.
func TestPortChannel(t *testing.T) {
	testenv.RequireRoot(t)
	relayNS := nettest.NewNetns(t, "rly")
	a, b1, b2 := nettest.NewNetns(t, "pa"), nettest.NewNetns(t, "pb"), nettest.NewNetns(t, "pc")
	ra, pa := nettest.Veth(t, relayNS, netip.Prefix{}, a, netip.Prefix{})
	rb1, pb1 := nettest.Veth(t, relayNS, netip.Prefix{}, b1, netip.Prefix{})
	rb2, pb2 := nettest.Veth(t, relayNS, netip.Prefix{}, b2, netip.Prefix{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := Relay{A: ra.Name, B: rb1.Name + "," + rb2.Name}
	go func() { done <- relayNS.Do(func() error { return r.Run(ctx) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	sa, sb1, sb2 := testSocket(t, a, pa), testSocket(t, b1, pb1), testSocket(t, b2, pb2)
	// The relay's sockets open asynchronously: send until the first frame
	// comes through, then count a fixed number.
	deadline := time.Now().Add(10 * time.Second)
	for {
		sendTest(t, sa, 0)
		if recvTest(sb1, 50*time.Millisecond)+recvTest(sb2, 50*time.Millisecond) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no frame came through the relay")
		}
	}
	drain := func(fds ...int) {
		for _, fd := range fds {
			for recvTest(fd, 100*time.Millisecond) > 0 {
			}
		}
	}
	drain(sb1, sb2, sa)

	const n = 10
	for i := range n {
		sendTest(t, sa, byte(i))
	}
	got1, got2 := countTest(sb1, n), countTest(sb2, n)
	if got1+got2 != n || got1 != n/2 {
		t.Errorf("towards the port channel: %d frames on the first member, %d on the second; want %d each", got1, got2, n/2)
	}
	for i := range n / 2 {
		sendTest(t, sb1, byte(i))
		sendTest(t, sb2, byte(i))
	}
	if got := countTest(sa, n); got != n {
		t.Errorf("from the port channel: %d of %d frames arrived", got, n)
	}
	if got := recvTest(sb1, 200*time.Millisecond) + recvTest(sb2, 200*time.Millisecond); got != 0 {
		t.Errorf("%d frames went from one member to the other", got)
	}

	// The second member's port goes down (a pulled cable, the switch's
	// side): every frame towards the port channel leaves on the first.
	if err := relayNS.Do(func() error { return exec.Command("ip", "link", "set", rb2.Name, "down").Run() }); err != nil {
		t.Fatalf("taking %s down: %v", rb2.Name, err)
	}
	for i := range n {
		sendTest(t, sa, byte(i))
	}
	if got1, got2 := countTest(sb1, n), recvTest(sb2, 200*time.Millisecond); got1 != n || got2 != 0 {
		t.Errorf("with the second member down: %d of %d frames on the first member, %d on the second", got1, n, got2)
	}
	// Back up, it carries frames both ways again.
	if err := relayNS.Do(func() error { return exec.Command("ip", "link", "set", rb2.Name, "up").Run() }); err != nil {
		t.Fatalf("taking %s up: %v", rb2.Name, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for recvTest(sb2, 50*time.Millisecond) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second member carried no frame after it came back up")
		}
		sendTest(t, sa, 0)
	}
	drain(sb1, sb2, sa)
	sendTest(t, sb2, 0)
	if got := countTest(sa, 1); got != 1 {
		t.Errorf("from the second member after it came back up: %d of 1 frame arrived", got)
	}
}

// testSocket opens a packet socket for the test's EtherType on link l of ns.
func testSocket(t *testing.T, ns *nettest.Netns, l *nettest.Link) int {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(l.Name)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(testEtherType)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(testEtherType), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func sendTest(t *testing.T, fd int, b byte) {
	t.Helper()
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, testEtherType >> 8, testEtherType & 0xff, b})
	if _, err := unix.Write(fd, frame); err != nil {
		t.Fatal(err)
	}
}

// recvTest returns 1 when a test frame arrives on fd within wait, else 0.
func recvTest(fd int, wait time.Duration) int {
	tv := unix.NsecToTimeval(wait.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 128)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n >= 14 {
			return 1
		}
	}
}

// countTest counts the test frames arriving on fd until none came for a
// while, at most max.
func countTest(fd, max int) int {
	got := 0
	for got < max+1 && recvTest(fd, 2*time.Second) == 1 {
		got++
	}
	return got
}
