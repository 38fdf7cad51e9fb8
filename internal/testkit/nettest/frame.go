package nettest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TPIDs of VLAN tags.
const (
	TPID8021Q  = 0x8100
	TPID8021AD = 0x88a8
)

// VLANTag is one VLAN tag of a frame, outermost first in Frame.VLANs.
type VLANTag struct {
	TPID uint16 // TPID8021Q or TPID8021AD
	VID  uint16
}

// EchoFrame describes a hand-built Ethernet frame carrying an ICMP echo
// message, for tests that need what a socket cannot send (VLAN tags without
// VLAN devices, frames whose skb has no network header set).
type EchoFrame struct {
	Dst, Src     net.HardwareAddr
	VLANs        []VLANTag
	SrcIP, DstIP netip.Addr
	Type         uint8 // 8 request, 0 reply
	ID, Seq      uint16
	Payload      int
}

// Bytes encodes the Ethernet frame with valid IPv4 and ICMP checksums.
func (f EchoFrame) Bytes() []byte {
	pkt := f.IPv4()
	b := make([]byte, 0, 14+4*len(f.VLANs)+len(pkt))
	b = append(b, f.Dst...)
	b = append(b, f.Src...)
	for _, v := range f.VLANs {
		b = binary.BigEndian.AppendUint16(b, v.TPID)
		b = binary.BigEndian.AppendUint16(b, v.VID&0x0fff)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	return append(b, pkt...)
}

// IPv4 encodes only the IPv4 packet (for L3 devices such as TUN).
func (f EchoFrame) IPv4() []byte {
	icmp := make([]byte, 8+f.Payload)
	EchoRequest(icmp, f.ID, f.Seq)
	if f.Type != 8 {
		icmp[0] = f.Type
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	}
	ip := make([]byte, 20, 20+len(icmp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
	ip[8], ip[9] = 64, 1 // TTL, ICMP
	s, d := f.SrcIP.As4(), f.DstIP.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	return append(ip, icmp...)
}

// MAC returns the hardware address of interface name in n.
func (n *Netns) MAC(name string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := n.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("netns %s: finding %s: %w", n.Name, name, err)
		}
		mac = l.Attrs().HardwareAddr
		return nil
	})
	return mac, err
}

// SendFrames sends raw Ethernet frames out of interface name in n through an
// AF_PACKET socket.
func (n *Netns) SendFrames(name string, frames ...[]byte) error {
	return n.Do(func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("netns %s: %w", n.Name, err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("netns %s: opening packet socket: %w", n.Name, err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifc.Index}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("netns %s: sending frame on %s: %w", n.Name, name, err)
			}
		}
		return nil
	})
}

// Tap is a TAP (Ethernet) or TUN (IPv4) device in a namespace; the test is
// the other end: what it writes to File enters the namespace's stack as if
// received from a VM or a tunnel.
type Tap struct {
	NS    *Netns
	Name  string
	Index int
	MAC   net.HardwareAddr // TAP only
	File  *os.File
}

// NewTap creates a TAP (l3 false) or TUN (l3 true) device with addr in n,
// up, closed and removed at cleanup.
func NewTap(t testing.TB, n *Netns, addr netip.Prefix, l3 bool) *Tap {
	t.Helper()
	tp := &Tap{NS: n, Name: UniqueName("tp")}
	mode := netlink.TUNTAP_MODE_TAP
	if l3 {
		mode = netlink.TUNTAP_MODE_TUN
	}
	err := n.Do(func() error {
		dev := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: tp.Name}, Mode: mode,
			Flags: netlink.TUNTAP_NO_PI, Queues: 1, NonPersist: true}
		if err := netlink.LinkAdd(dev); err != nil {
			return fmt.Errorf("creating %s: %w", tp.Name, err)
		}
		if len(dev.Fds) == 0 {
			return fmt.Errorf("creating %s: no queue file", tp.Name)
		}
		tp.File = dev.Fds[0]
		link, err := netlink.LinkByName(tp.Name)
		if err != nil {
			return err
		}
		tp.Index, tp.MAC = link.Attrs().Index, link.Attrs().HardwareAddr
		if err := netlink.LinkSetUp(link); err != nil {
			return err
		}
		a, err := netlink.ParseAddr(addr.String())
		if err != nil {
			return err
		}
		return netlink.AddrAdd(link, a)
	})
	if err != nil {
		t.Fatalf("netns %s: %v", n.Name, err)
	}
	t.Cleanup(func() { tp.File.Close() })
	return tp
}

// AddNeighbor adds a permanent ARP entry ip → mac on the device, so replies
// leave without an ARP exchange nobody would answer.
func (tp *Tap) AddNeighbor(ip netip.Addr, mac net.HardwareAddr) error {
	return tp.NS.Do(func() error {
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: tp.Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: mac})
	})
}
