// Package vhosttest gives tests a ready vhost-net path: a namespace with a
// tap that is the backend of an internal/vhostnet Device, addressed so that
// echo requests sent from the Device's TX ring are answered by the
// namespace's kernel into its RX ring.
package vhosttest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab/tapbackend"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/vhostnet"
)

// Peer is a test fixture: a namespace holding a tap (TapAddr) that is the
// backend of a vhost-net Device playing a guest NIC (GuestMAC, GuestAddr).
// The namespace has a permanent neighbour entry for the guest, so no ARP is
// needed before the first reply.
type Peer struct {
	NS        *nettest.Netns
	TapName   string
	Dev       *vhostnet.Device
	TapAddr   netip.Addr
	GuestAddr netip.Addr
	GuestMAC  net.HardwareAddr
	TapMAC    net.HardwareAddr
	id        uint16
}

// NewPeer builds the fixture and removes it at cleanup. It needs root,
// /dev/vhost-net and the tun module (the kernel-matrix guest has them).
func NewPeer(t testing.TB) *Peer {
	t.Helper()
	ns := nettest.NewNetns(t, "vhn")
	p := &Peer{
		NS:        ns,
		TapName:   nettest.UniqueName("vht"),
		TapAddr:   netip.MustParseAddr("10.213.0.1"),
		GuestAddr: netip.MustParseAddr("10.213.0.2"),
		GuestMAC:  net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		id:        uint16(os.Getpid()),
	}
	// The tun driver puts a new device in the namespace of the thread that
	// creates it.
	var tap *os.File
	err := ns.Do(func() (err error) { tap, err = tapbackend.Create(p.TapName); return err })
	if err != nil {
		t.Fatal(err)
	}
	p.Dev, err = vhostnet.Open(tap, vhostnet.Options{})
	if err != nil {
		tap.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Dev.Close() })
	// Only NETLINK_ROUTE: the guest kernels have xfrm_user as a module that is
	// not loaded, and NewHandleAt asks for every family by default.
	h, err := netlink.NewHandleAt(ns.Handle(), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(p.TapName)
	if err != nil {
		t.Fatalf("finding tap %s: %v", p.TapName, err)
	}
	p.TapMAC = l.Attrs().HardwareAddr
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.TapAddr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("adding %s to %s: %v", addr, p.TapName, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("setting %s up: %v", p.TapName, err)
	}
	neigh := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: p.GuestAddr.AsSlice(), HardwareAddr: p.GuestMAC, State: netlink.NUD_PERMANENT}
	if err := h.NeighAdd(neigh); err != nil {
		t.Fatalf("adding neighbour %s: %v", p.GuestAddr, err)
	}
	return p
}

// Ping sends one echo request from the guest side and waits for its reply,
// skipping other frames (IPv6 neighbour discovery and the like).
func (p *Peer) Ping(seq uint16, payload []byte, timeout time.Duration) (vhostnet.Echo, error) {
	req := vhostnet.Echo{SrcMAC: p.GuestMAC, DstMAC: p.TapMAC, Src: p.GuestAddr, Dst: p.TapAddr, ID: p.id, Seq: seq, Payload: payload}
	if err := p.Dev.Send(req.Frame()); err != nil {
		return vhostnet.Echo{}, err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		frames, err := p.Dev.Receive(time.Until(deadline))
		if err != nil {
			return vhostnet.Echo{}, err
		}
		for _, f := range frames {
			if e, ok := vhostnet.ParseEcho(f); ok && e.Reply && e.ID == p.id && e.Seq == seq {
				if !bytes.Equal(e.Payload, payload) {
					return e, fmt.Errorf("reply payload %q, want %q", e.Payload, payload)
				}
				return e, nil
			}
		}
	}
	return vhostnet.Echo{}, fmt.Errorf("no echo reply id %d seq %d within %s", p.id, seq, timeout)
}
