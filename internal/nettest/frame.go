package nettest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

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

// Bytes encodes the frame with valid IPv4 and ICMP checksums.
func (f EchoFrame) Bytes() []byte {
	icmp := make([]byte, 8+f.Payload)
	EchoRequest(icmp, f.ID, f.Seq)
	if f.Type != 8 {
		icmp[0] = f.Type
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	}
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(icmp)))
	ip[8], ip[9] = 64, 1 // TTL, ICMP
	s, d := f.SrcIP.As4(), f.DstIP.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	b := make([]byte, 0, 14+4*len(f.VLANs)+len(ip)+len(icmp))
	b = append(b, f.Dst...)
	b = append(b, f.Src...)
	for _, v := range f.VLANs {
		b = binary.BigEndian.AppendUint16(b, v.TPID)
		b = binary.BigEndian.AppendUint16(b, v.VID&0x0fff)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	b = append(b, ip...)
	return append(b, icmp...)
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
