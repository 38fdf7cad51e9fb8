// Package nettest builds throwaway network topologies for tests — named
// network namespaces joined by veth pairs with IPv4 addresses — using only
// netlink and setns (no iproute2), and sends ICMP echo requests and UDP from
// inside a namespace with Go sockets (no ping binary). It works in the
// kernel-matrix guest's busybox userland.
//
// Everything created gets a unique name (pid + random suffix) and is removed
// by t.Cleanup.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netns is a named network namespace created for a test.
type Netns struct {
	Name   string // name under /run/netns (usable with `ip netns exec`)
	handle netns.NsHandle
	// Inode identifies the namespace (what tracers report as netns).
	Inode uint64
}

// UniqueName returns prefix + pid + random hex, short enough for an
// interface name when prefix is ≤ 4 characters (IFNAMSIZ is 16).
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%d%s", prefix, os.Getpid()%100000, hex.EncodeToString(b[:]))
}

// NewNetns creates a named namespace with loopback up and removes it at
// cleanup.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	n, err := CreateNetns(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Errorf("removing netns %s: %v", n.Name, err)
		}
	})
	return n
}

// CreateNetns creates a named namespace with loopback up; the caller must
// Delete it. Benchmarks and non-test tools use it; tests use NewNetns.
func CreateNetns(prefix string) (*Netns, error) {
	name := UniqueName(prefix)
	var n *Netns
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("reading current netns: %w", err)
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // switches this thread into it
		if err != nil {
			return fmt.Errorf("creating netns %s: %w", name, err)
		}
		defer func() { _ = netns.Set(orig) }()
		var st unix.Stat_t
		if err := unix.Fstat(int(h), &st); err != nil {
			return fmt.Errorf("stat netns %s: %w", name, err)
		}
		n = &Netns{Name: name, handle: h, Inode: st.Ino}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("netns %s: finding lo: %w", name, err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("netns %s: setting lo up: %w", name, err)
		}
		return nil
	})
	return n, err
}

// Delete removes the namespace (its links go with it).
func (n *Netns) Delete() error {
	n.handle.Close()
	if err := netns.DeleteNamed(n.Name); err != nil {
		return fmt.Errorf("deleting netns %s: %w", n.Name, err)
	}
	return nil
}

// onLockedThread runs fn on a fresh OS thread that is thrown away afterwards
// (the goroutine exits while still locked), so a failed switch back can never
// leave another goroutine in the wrong namespace.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// Do runs fn with the calling thread inside the namespace. Sockets created
// in fn belong to the namespace and may be used from any goroutine after.
func (n *Netns) Do(fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("entering netns %s: %w", n.Name, err)
		}
		return fn()
	})
}

// Start starts cmd inside the namespace (the child inherits the namespace of
// the thread that forks it).
func (n *Netns) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// Handle returns the namespace's file descriptor handle (for netlink calls
// that take a namespace).
func (n *Netns) Handle() netns.NsHandle { return n.handle }

// Link is one end of a veth pair.
type Link struct {
	NS      *Netns
	Name    string
	Index   int
	Addr    netip.Prefix
	VLAN    int    // 0: address on the veth itself; else on NS's VLAN sub-interface
	VLANDev string // name of the VLAN sub-interface carrying Addr
}

// Veth creates a veth pair between a and b, named uniquely, addresses addrA
// on a's end and addrB on b's end (either may be the zero Prefix), both up.
func Veth(t testing.TB, a *Netns, addrA netip.Prefix, b *Netns, addrB netip.Prefix) (*Link, *Link) {
	t.Helper()
	la, lb, err := CreateVeth(a, addrA, b, addrB, 0)
	if err != nil {
		t.Fatal(err)
	}
	return la, lb
}

// CreateVeth creates the pair (see Veth), with the addresses on 802.1Q
// sub-interfaces (VLAN id vid) of both ends when vid > 0; links disappear with
// their namespaces.
func CreateVeth(a *Netns, addrA netip.Prefix, b *Netns, addrB netip.Prefix, vid int) (*Link, *Link, error) {
	nameA, nameB := UniqueName("va"), UniqueName("vb")
	err := a.Do(func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB,
			PeerNamespace: netlink.NsFd(int(b.handle))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating veth %s/%s: %w", nameA, nameB, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	la := &Link{NS: a, Name: nameA, Addr: addrA, VLAN: vid}
	lb := &Link{NS: b, Name: nameB, Addr: addrB, VLAN: vid}
	for _, l := range []*Link{la, lb} {
		if err := l.configure(); err != nil {
			return nil, nil, err
		}
	}
	// Packets sent before the carrier is up wait for ARP's 1 s retransmit.
	for _, l := range []*Link{la, lb} {
		if err := l.waitRunning(5 * time.Second); err != nil {
			return nil, nil, err
		}
	}
	return la, lb, nil
}

// waitRunning waits until the link has carrier (IFF_RUNNING).
func (l *Link) waitRunning(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var running bool
		err := l.NS.Do(func() error {
			link, err := netlink.LinkByName(l.Name)
			if err != nil {
				return err
			}
			running = link.Attrs().RawFlags&unix.IFF_RUNNING != 0
			return nil
		})
		if err != nil {
			return fmt.Errorf("netns %s: reading %s: %w", l.NS.Name, l.Name, err)
		}
		if running {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %s: %s has no carrier after %v", l.NS.Name, l.Name, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *Link) configure() error {
	return l.NS.Do(func() error {
		link, err := netlink.LinkByName(l.Name)
		if err != nil {
			return fmt.Errorf("netns %s: finding %s: %w", l.NS.Name, l.Name, err)
		}
		l.Index = link.Attrs().Index
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("netns %s: setting %s up: %w", l.NS.Name, l.Name, err)
		}
		target := link
		if l.VLAN != 0 {
			l.VLANDev = fmt.Sprintf("%s.%d", l.Name[:min(len(l.Name), 10)], l.VLAN)
			v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: l.VLANDev, ParentIndex: l.Index}, VlanId: l.VLAN}
			if err := netlink.LinkAdd(v); err != nil {
				return fmt.Errorf("netns %s: creating vlan %s: %w", l.NS.Name, l.VLANDev, err)
			}
			if target, err = netlink.LinkByName(l.VLANDev); err != nil {
				return err
			}
			if err := netlink.LinkSetUp(target); err != nil {
				return fmt.Errorf("netns %s: setting %s up: %w", l.NS.Name, l.VLANDev, err)
			}
		}
		if !l.Addr.IsValid() {
			return nil
		}
		addr, err := netlink.ParseAddr(l.Addr.String())
		if err != nil {
			return err
		}
		// No DAD or kernel delays for IPv4; the address is usable at once.
		if err := netlink.AddrAdd(target, addr); err != nil {
			return fmt.Errorf("netns %s: adding %s to %s: %w", l.NS.Name, l.Addr, target.Attrs().Name, err)
		}
		return nil
	})
}

// Pair is two namespaces joined by one veth pair: the usual "two VMs" of a
// tracer test.
type Pair struct {
	A, B         *Netns
	LinkA, LinkB *Link
}

// NewPair creates two namespaces joined by a veth with addrA/addrB (e.g.
// 10.200.0.1/24 and 10.200.0.2/24). Addresses may repeat across pairs: each
// pair lives in its own namespaces.
func NewPair(t testing.TB, addrA, addrB string) *Pair {
	t.Helper()
	return newPair(t, addrA, addrB, 0)
}

// NewVLANPair is NewPair with the addresses on VLAN vid sub-interfaces. It
// skips the test outside the kernel-matrix guest when the kernel has no
// 802.1Q support (CONFIG_VLAN_8021Q), and fails inside it.
func NewVLANPair(t testing.TB, addrA, addrB string, vid int) *Pair {
	t.Helper()
	RequireVLAN(t)
	return newPair(t, addrA, addrB, vid)
}

// RequireVLAN skips the test outside the kernel-matrix guest when the kernel
// has no 802.1Q support (CONFIG_VLAN_8021Q), and fails it inside the guest,
// where every kernel must have it.
func RequireVLAN(t testing.TB) {
	t.Helper()
	if VLANSupported(t) {
		return
	}
	if !testenv.InGuest() {
		t.Skip("kernel without 802.1Q VLAN devices (CONFIG_VLAN_8021Q)")
	}
	testenv.Require(t, false, "802.1Q VLAN devices (CONFIG_VLAN_8021Q)")
}

// VLANSupported reports whether VLAN devices can be created, by creating one
// on a dummy device in a scratch namespace.
func VLANSupported(t testing.TB) bool {
	t.Helper()
	n := NewNetns(t, "ppv")
	err := n.Do(func() error {
		d := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d0"}}
		if err := netlink.LinkAdd(d); err != nil {
			return err
		}
		link, err := netlink.LinkByName("d0")
		if err != nil {
			return err
		}
		return netlink.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "d0.7", ParentIndex: link.Attrs().Index}, VlanId: 7})
	})
	return err == nil
}

func newPair(t testing.TB, addrA, addrB string, vid int) *Pair {
	t.Helper()
	pa, err := netip.ParsePrefix(addrA)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := netip.ParsePrefix(addrB)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{A: NewNetns(t, "ppa"), B: NewNetns(t, "ppb")}
	p.LinkA, p.LinkB, err = CreateVeth(p.A, pa, p.B, pb, vid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
