package vhostnet

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Echo is an ICMPv4 echo request or reply in an Ethernet frame, what the
// driver's "guest" sends and receives.
type Echo struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr // IPv4
	ID, Seq        uint16
	Reply          bool // echo reply (type 0) rather than request (type 8)
	Payload        []byte
}

const (
	ethLen      = 14
	ipv4Len     = 20
	icmpLen     = 8
	icmpEcho    = 8
	icmpReply   = 0
	protoICMP   = 1
	etherTypeV4 = 0x0800
)

// Frame encodes the echo as an Ethernet frame with valid IPv4 and ICMP
// checksums.
func (e Echo) Frame() []byte {
	f := make([]byte, ethLen+ipv4Len+icmpLen+len(e.Payload))
	copy(f[0:6], e.DstMAC)
	copy(f[6:12], e.SrcMAC)
	binary.BigEndian.PutUint16(f[12:], etherTypeV4)
	ip := f[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+icmpLen+len(e.Payload)))
	binary.BigEndian.PutUint16(ip[4:], e.Seq) // IP ID: any value
	ip[6] = 0x40                              // don't fragment
	ip[8] = 64
	ip[9] = protoICMP
	src, dst := e.Src.As4(), e.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ipv4Len]))
	icmp := ip[ipv4Len:]
	icmp[0] = icmpEcho
	if e.Reply {
		icmp[0] = icmpReply
	}
	binary.BigEndian.PutUint16(icmp[4:], e.ID)
	binary.BigEndian.PutUint16(icmp[6:], e.Seq)
	copy(icmp[icmpLen:], e.Payload)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return f
}

// ParseEcho decodes an Ethernet frame holding an ICMPv4 echo request or
// reply; ok is false for anything else (ARP, IPv6 neighbour discovery, ...)
// and for frames whose checksums are wrong.
func ParseEcho(f []byte) (e Echo, ok bool) {
	if len(f) < ethLen+ipv4Len+icmpLen || binary.BigEndian.Uint16(f[12:]) != etherTypeV4 {
		return e, false
	}
	ip := f[ethLen:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ip[9] != protoICMP || ihl < ipv4Len || total > len(ip) || total < ihl+icmpLen || checksum(ip[:ihl]) != 0 {
		return e, false
	}
	icmp := ip[ihl:total]
	if (icmp[0] != icmpEcho && icmp[0] != icmpReply) || checksum(icmp) != 0 {
		return e, false
	}
	e = Echo{
		DstMAC:  net.HardwareAddr(append([]byte(nil), f[0:6]...)),
		SrcMAC:  net.HardwareAddr(append([]byte(nil), f[6:12]...)),
		Src:     netip.AddrFrom4([4]byte(ip[12:16])),
		Dst:     netip.AddrFrom4([4]byte(ip[16:20])),
		ID:      binary.BigEndian.Uint16(icmp[4:]),
		Seq:     binary.BigEndian.Uint16(icmp[6:]),
		Reply:   icmp[0] == icmpReply,
		Payload: append([]byte(nil), icmp[icmpLen:]...),
	}
	return e, true
}

// checksum is the Internet checksum (RFC 1071); over data that includes a
// correct checksum field it is 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
