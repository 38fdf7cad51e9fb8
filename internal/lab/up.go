package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab/kvm"
	"github.com/pingpath/pingpath/internal/lab/tapbackend"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

// Defaults for Options.
var (
	DefaultDataNet  = netip.MustParsePrefix("198.18.0.0/16")
	DefaultMgmtPool = netip.MustParsePrefix("198.19.0.0/16")
)

// DefaultName is the lab name when none is given.
const DefaultName = "pingpath"

// Options say what lab Up builds.
type Options struct {
	Dir  string // lab directory (created if missing); required
	Name string // prefixes the namespaces; default DefaultName

	// Hypervisor is the lab's kind: HypervisorNetns (default) or
	// HypervisorKVM, whose machines KVM configures (kernel, sizes, image).
	Hypervisor string
	KVM        KVMOptions

	VMLink     string        // VMLinkTap (default) or VMLinkVeth
	Wire       string        // WireAuto (default), WireVeth or WireRelay
	WireDelay  time.Duration // one-way, each direction
	WireJitter time.Duration
	WireLoss   float64 // percent
	WireSeed   uint64
	// WireClock is the relay's receipt clock (wire.ClockKernel by default).
	WireClock wire.Clock

	// DataNet holds the VMs' addresses: sender VM at .1.1, receiver VM at
	// .2.1 of it (198.18.1.1 and 198.18.2.1 by default). Each lab's data
	// network is its own L2 segment, so labs may share it.
	DataNet netip.Prefix
	// MgmtPool is a /16 from which each lab takes a /24 for its management
	// network in the root namespace (198.19.0.0/16 by default).
	MgmtPool netip.Prefix

	// Binary is the pingpath executable the background processes run
	// (default: this process's executable).
	Binary string
	// Sshd is the OpenSSH server (default /usr/sbin/sshd).
	Sshd string
	// ReadyTimeout bounds the wait for every sshd to answer (default 15s).
	ReadyTimeout time.Duration
	// SudoUser adds a non-root login user that may sudo (see SudoUser), and
	// env.yaml logs in as it.
	SudoUser bool
	// KeepOnFailure leaves a half-built lab in place when Up fails, for
	// debugging; by default Up tears it down again.
	KeepOnFailure bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// ErrOptions marks an error in Options (a usage error on the command line).
var ErrOptions = errors.New("invalid lab options")

func (o *Options) setDefaults() error {
	if err := o.fill(); err != nil {
		return fmt.Errorf("%w: %w", ErrOptions, err)
	}
	return nil
}

func (o *Options) fill() error {
	if o.Dir == "" {
		return errors.New("lab directory: not set (--dir)")
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := checkName(o.Name); err != nil {
		return err
	}
	if o.Hypervisor == "" {
		o.Hypervisor = HypervisorNetns
	}
	if o.Wire == "" {
		o.Wire = WireAuto
	}
	im := o.impairment()
	if err := im.Validate(); err != nil {
		return err
	}
	switch o.Hypervisor {
	case HypervisorNetns:
		if err := o.fillNetns(); err != nil {
			return err
		}
	case HypervisorKVM:
		if err := o.fillKVM(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("hypervisor %q: want %q or %q", o.Hypervisor, HypervisorNetns, HypervisorKVM)
	}
	return o.fillCommon()
}

// fillNetns checks the namespace lab's VM link and wire.
func (o *Options) fillNetns() error {
	if o.KVM.Bond || o.KVM.Overlay != "" || o.KVM.Datapath != "" && o.KVM.Datapath != kvm.DefaultDatapath {
		return errors.New("switch, bond and overlay: the namespace lab has a Linux bridge and one NIC per host (they are the KVM lab's: --hypervisor kvm)")
	}
	if o.KVM.BCC {
		return errors.New("with bcc: the namespace lab's nodes share this machine's kernel and software (it is the KVM lab's image: --hypervisor kvm)")
	}
	if o.VMLink == "" {
		o.VMLink = VMLinkTap
	}
	if o.VMLink != VMLinkTap && o.VMLink != VMLinkVeth {
		return fmt.Errorf("vm link %q: want %q or %q", o.VMLink, VMLinkTap, VMLinkVeth)
	}
	im := o.impairment()
	switch o.Wire {
	case WireAuto:
		o.Wire = WireVeth
		if !im.Zero() {
			o.Wire = WireRelay
		}
	case WireVeth:
		if !im.Zero() {
			return errors.New("wire veth: delay, jitter and loss need --wire relay (or auto)")
		}
	case WireRelay:
	default:
		return fmt.Errorf("wire %q: want %q, %q or %q", o.Wire, WireAuto, WireVeth, WireRelay)
	}
	return nil
}

// fillCommon fills and checks what both kinds of lab share.
func (o *Options) fillCommon() error {
	if o.WireClock == "" {
		o.WireClock = wire.ClockKernel
	}
	if o.WireClock != wire.ClockUser && o.WireClock != wire.ClockKernel {
		return fmt.Errorf("wire clock %q: want %q or %q", o.WireClock, wire.ClockUser, wire.ClockKernel)
	}
	if !o.DataNet.IsValid() {
		o.DataNet = DefaultDataNet
	}
	if !o.MgmtPool.IsValid() {
		o.MgmtPool = DefaultMgmtPool
	}
	if !o.DataNet.Addr().Is4() || o.DataNet.Bits() > 22 {
		return fmt.Errorf("data network %s: want an IPv4 prefix of /22 or wider", o.DataNet)
	}
	if !o.MgmtPool.Addr().Is4() || o.MgmtPool.Bits() != 16 {
		return fmt.Errorf("management pool %s: want an IPv4 /16", o.MgmtPool)
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the pingpath binary: %w", err)
		}
		o.Binary = exe
	}
	if !filepath.IsAbs(o.Binary) {
		abs, err := filepath.Abs(o.Binary)
		if err != nil {
			return err
		}
		o.Binary = abs
	}
	if o.Sshd == "" {
		o.Sshd = "/usr/sbin/sshd"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Second
		if o.Hypervisor == HypervisorKVM {
			o.ReadyTimeout = 60 * time.Second
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

func (o *Options) impairment() wire.Impairment {
	return wire.Impairment{Delay: o.WireDelay, Jitter: o.WireJitter, Loss: o.WireLoss, Seed: o.WireSeed}
}

// ErrExists is returned by Up when the directory already holds a lab or the
// lab's namespaces already exist.
var ErrExists = errors.New("lab already exists")

// addrAt returns the address at offset off inside prefix p.
func addrAt(p netip.Prefix, off uint32) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// newID returns a random lab ID (see Lab.ID).
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// plan fills in the lab's description for a given management index.
func plan(o *Options, dir string, index int) *Lab {
	mgmt := netip.PrefixFrom(addrAt(o.MgmtPool, uint32(index)<<8), 24)
	l := &Lab{
		Name: o.Name, Dir: dir, Index: index, ID: newID(), State: StateBuilding,
		Hypervisor: o.Hypervisor, VMLink: o.VMLink, Wire: o.Wire,
		WireDelay: o.WireDelay, WireJitter: o.WireJitter, WireLoss: o.WireLoss, WireSeed: o.WireSeed,
		DataNet: o.DataNet, MgmtNet: mgmt, MgmtGateway: addrAt(mgmt, 254),
		MgmtBridge: fmt.Sprintf("pp%d-br", index),
		Created:    time.Now().UTC().Truncate(time.Second),
	}
	l.SSHConfig = l.path("ssh_config")
	l.KnownHosts = l.path("known_hosts")
	l.IdentityFile = l.path("id_ed25519")
	l.EnvFile = l.path("env.yaml")
	if o.Wire == WireRelay || o.Hypervisor == HypervisorKVM {
		l.WireNetns = o.Name + "-wire"
	}
	short := map[string]string{SenderVM: "svm", SenderHost: "sh", ReceiverHost: "rh", ReceiverVM: "rvm"}
	for i, name := range NodeNames() {
		n := Node{
			Name: name, Netns: o.Name + "-" + name, Hostname: o.Name + "-" + name,
			MgmtIP: addrAt(mgmt, uint32(i+1)), MgmtRootLink: fmt.Sprintf("pp%d-%s", index, short[name]),
		}
		n.Side, n.Role = "sender", "vm"
		if name == ReceiverHost || name == ReceiverVM {
			n.Side = "receiver"
		}
		if name == SenderHost || name == ReceiverHost {
			n.Role = "host"
			n.Vnet, n.Phy, n.Bridge = VnetInterface, PhyInterface, BridgeName
		} else {
			n.Interface = VMInterface
			n.DataIP = addrAt(o.DataNet, 0x0101)
			if n.Side == "receiver" {
				n.DataIP = addrAt(o.DataNet, 0x0201)
			}
		}
		l.Nodes = append(l.Nodes, n)
	}
	if o.SudoUser {
		l.SudoUser = l.planSudoUser()
	}
	if o.Hypervisor == HypervisorKVM {
		l.planKVM(o)
	}
	return l
}

// Up builds a lab and returns when every node's sshd answers. On failure it
// removes what it made (unless Options.KeepOnFailure).
func Up(ctx context.Context, o Options) (*Lab, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab up needs root (network namespaces, TAP devices, sshd)")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab directory %s: %w", o.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return nil, fmt.Errorf("%w in %s (run pingpath lab down --dir %s first)", ErrExists, dir, dir)
	}
	if err := checkNameFree(o.Name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Sshd); err != nil && o.Hypervisor == HypervisorNetns {
		return nil, fmt.Errorf("sshd: %w (install openssh-server)", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "run"), filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating lab directory: %w", err)
		}
	}
	start := time.Now()
	var machines *kvmMachines
	if o.Hypervisor == HypervisorKVM {
		// Kernel and image first: a first build takes minutes and needs no lab.
		if machines, err = prepareKVM(ctx, &o); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "  %-28s %s\n", "kernel and image", time.Since(start).Round(100*time.Microsecond))
		start = time.Now()
	}
	l, err := allocate(&o, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "  %-28s %s\n", fmt.Sprintf("index %d, namespaces", l.Index), time.Since(start).Round(100*time.Microsecond))
	build := l.build
	if machines != nil {
		build = func(ctx context.Context, o *Options) error { return l.buildKVM(ctx, o, machines) }
	}
	if err := build(ctx, &o); err != nil {
		if o.KeepOnFailure {
			return l, fmt.Errorf("bringing up lab %s: %w (left in place: --keep-on-failure)", l.Name, err)
		}
		if derr := l.Down(context.WithoutCancel(ctx)); derr != nil {
			return nil, fmt.Errorf("bringing up lab %s: %w (and tearing it down: %v)", l.Name, err, derr)
		}
		return nil, fmt.Errorf("bringing up lab %s: %w", l.Name, err)
	}
	fmt.Fprintf(o.Log, "lab %s up in %s\n", l.Name, time.Since(start).Round(time.Millisecond))
	return l, nil
}

// checkNameFree fails when a lab with this name has namespaces already.
func checkNameFree(name string) error {
	for _, node := range append(NodeNames(), "wire") {
		if ns := name + "-" + node; netnsExists(ns) {
			return fmt.Errorf("%w: network namespace %s exists (another lab named %q is up; pick another --name)", ErrExists, ns, name)
		}
	}
	return nil
}

// lockFile serialises index and name allocation between concurrent
// `lab up`s.
const lockFile = "/run/pingpath-lab.lock"

// allocate claims a free management index (by creating its root bridge)
// and the lab's name (by creating its namespaces) and writes lab.json, all
// under a machine-wide lock, so two concurrent `lab up`s never pick the same
// subnet or name, and a failed one never tears down another lab's
// namespaces.
func allocate(o *Options, dir string) (*Lab, error) {
	lf, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", lockFile, err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lockFile, err)
	}
	if err := checkNameFree(o.Name); err != nil {
		return nil, err
	}
	used, err := usedMgmtIndexes(o.MgmtPool)
	if err != nil {
		return nil, err
	}
	for idx := 1; idx <= 253; idx++ {
		if used[idx] {
			continue
		}
		l := plan(o, dir, idx)
		if rootLinksExist(l) {
			continue // a lab being torn down still holds some of them
		}
		if err := l.save(); err != nil {
			return nil, err
		}
		if err := l.createMgmtBridge(); err != nil {
			return nil, errors.Join(err, l.Down(context.Background()))
		}
		if err := l.createNamespaces(); err != nil {
			return nil, errors.Join(err, l.Down(context.Background()))
		}
		return l, nil
	}
	return nil, fmt.Errorf("no free management subnet in %s (every /24 is in use)", o.MgmtPool)
}

func rootLinksExist(l *Lab) bool {
	for _, name := range l.RootLinks() {
		if _, err := netlink.LinkByName(name); err == nil {
			return true
		}
	}
	return false
}

// usedMgmtIndexes returns the /24s of pool that have an address in the root
// namespace.
func usedMgmtIndexes(pool netip.Prefix) (map[int]bool, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && pool.Contains(ip) {
			used[int(ip.As4()[2])] = true
		}
	}
	return used, nil
}

func (l *Lab) createMgmtBridge() error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.MgmtBridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("creating management bridge %s: %w", l.MgmtBridge, err)
	}
	if err := l.markRootLink(l.MgmtBridge); err != nil {
		return err
	}
	disableIPv6On(l.MgmtBridge)
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(l.MgmtGateway, l.MgmtNet.Bits()))}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("addressing %s: %w", l.MgmtBridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing up %s: %w", l.MgmtBridge, err)
	}
	return nil
}

// markRootLink sets the alias that marks a root link just created as this
// lab's (see Lab.ID). The kernel ignores an alias in the request that
// creates a link, hence a second step; if it fails, the link is removed
// here, since Down would take an unmarked link for another lab's.
func (l *Lab) markRootLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetAlias(link, l.RootAlias())
		if err != nil {
			_ = netlink.LinkDel(link)
		}
	}
	if err != nil {
		return fmt.Errorf("marking %s as lab %s's: %w", name, l.Name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// disableIPv6On turns IPv6 off on a root-namespace link so it sends no
// router solicitations or MLD reports. Best effort.
func disableIPv6On(link string) {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("1"), 0o644)
}

// build makes everything after the management bridge.
func (l *Lab) build(ctx context.Context, o *Options) error {
	step := stepLogger(o.Log, 100*time.Microsecond)
	if err := step("ssh keys and configs", l.writeSSHFiles); err != nil {
		return err
	}
	if l.SudoUser != nil {
		if err := step("sudo user", l.createSudoUser); err != nil {
			return err
		}
	}
	if err := step("management links", l.createMgmtLinks); err != nil {
		return err
	}
	if err := step("host bridges and wire", l.createDataPath); err != nil {
		return err
	}
	if err := step("vm links ("+l.VMLink+")", func() error { return l.createVMLinks(o) }); err != nil {
		return err
	}
	if l.Wire == WireRelay {
		if err := step("wire relay", func() error { return l.startWire(o) }); err != nil {
			return err
		}
	}
	if err := step("sshd", func() error { return l.startSSHDs(ctx, o) }); err != nil {
		return err
	}
	if err := step("data path operational", func() error { return l.waitOperational(3 * time.Second) }); err != nil {
		return err
	}
	if err := l.checkDaemons(); err != nil {
		return err
	}
	if err := step("env.yaml", l.writeEnvFile); err != nil {
		return err
	}
	l.State = StateUp
	return l.save()
}

// stepLogger returns a function that runs one step of Up and logs its
// duration, rounded to round.
func stepLogger(log io.Writer, round time.Duration) func(what string, fn func() error) error {
	return func(what string, fn func() error) error {
		t := time.Now()
		if err := fn(); err != nil {
			return err
		}
		fmt.Fprintf(log, "  %-28s %s\n", what, time.Since(t).Round(round))
		return nil
	}
}

// createNamespaces makes the node (and wire) namespaces with loopback up
// and IPv6 off, so the lab's links carry only the traffic a test sends.
func (l *Lab) createNamespaces() error {
	for _, name := range l.Namespaces() {
		err := createNetns(name, func() error {
			for _, f := range []string{"all", "default"} {
				_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644)
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(lo)
		})
		if err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
	}
	return nil
}

// withHandle runs fn with a netlink handle inside the named namespace.
func withHandle(nsName string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsName, err)
	}
	defer h.Close()
	return fn(h)
}

// vethInto creates a veth pair whose ends live in namespaces nsA and nsB
// (nsA "" is the root namespace) with the given names.
func vethInto(nsA, nameA, nsB, nameB string) error {
	return vethIndexed(nsA, netlink.LinkAttrs{Name: nameA}, nsB, nameB)
}

// vethIndexed is vethInto with more attributes for end A (an explicit
// interface index, an alias).
func vethIndexed(nsA string, a netlink.LinkAttrs, nsB, nameB string) error {
	nameA := a.Name
	peer, err := netns.GetFromName(nsB)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", nsB, err)
	}
	defer peer.Close()
	v := &netlink.Veth{LinkAttrs: a, PeerName: nameB, PeerNamespace: netlink.NsFd(peer)}
	add := func(h *netlink.Handle) error {
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("creating veth %s/%s - %s/%s: %w", nsOrRoot(nsA), nameA, nsB, nameB, err)
		}
		return nil
	}
	if nsA == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		return add(h)
	}
	return withHandle(nsA, add)
}

func nsOrRoot(ns string) string {
	if ns == "" {
		return "root"
	}
	return ns
}

// linkUp brings a link up, optionally with an address and a master bridge.
func linkUp(h *netlink.Handle, name string, addr netip.Prefix, master string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if addr.IsValid() {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
			return fmt.Errorf("adding %s to %s: %w", addr, name, err)
		}
	}
	if master != "" {
		br, err := h.LinkByName(master)
		if err != nil {
			return fmt.Errorf("finding bridge %s: %w", master, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("adding %s to %s: %w", name, master, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	return nil
}

// createMgmtLinks gives every node a veth onto the root management bridge.
func (l *Lab) createMgmtLinks() error {
	root, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer root.Close()
	for _, n := range l.Nodes {
		if err := vethInto("", n.MgmtRootLink, n.Netns, MgmtInterface); err != nil {
			return err
		}
		if err := l.markRootLink(n.MgmtRootLink); err != nil {
			return err
		}
		disableIPv6On(n.MgmtRootLink)
		if err := linkUp(root, n.MgmtRootLink, netip.Prefix{}, l.MgmtBridge); err != nil {
			return err
		}
		err := withHandle(n.Netns, func(h *netlink.Handle) error {
			return linkUp(h, MgmtInterface, netip.PrefixFrom(n.MgmtIP, l.MgmtNet.Bits()), "")
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// createDataPath makes each host's br0 and the wire between the hosts'
// eth0: one veth pair, or two pairs into the wire namespace.
func (l *Lab) createDataPath() error {
	sh, rh := l.Nodes[1], l.Nodes[2]
	for _, h := range []Node{sh, rh} {
		err := withHandle(h.Netns, func(nh *netlink.Handle) error {
			if err := nh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}}); err != nil {
				return fmt.Errorf("creating %s: %w", BridgeName, err)
			}
			return linkUp(nh, BridgeName, netip.Prefix{}, "")
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", h.Name, err)
		}
	}
	if l.Wire == WireVeth {
		// Both hosts' eth0 would get the same index in their fresh
		// namespaces. The kernel then treats the pair's carrier change as
		// non-urgent and attaches its transmit queue up to a second later
		// (linkwatch), dropping the first frames; distinct indexes avoid
		// that. waitOperational below still checks.
		if err := vethIndexed(sh.Netns, netlink.LinkAttrs{Name: PhyInterface, Index: wireVethIndex}, rh.Netns, PhyInterface); err != nil {
			return err
		}
	} else {
		for _, host := range []Node{sh, rh} {
			if err := vethInto(l.WireNetns, wireEnd(host), host.Netns, PhyInterface); err != nil {
				return err
			}
		}
		err := withHandle(l.WireNetns, func(h *netlink.Handle) error {
			for _, end := range []Node{sh, rh} {
				if err := linkUp(h, wireEnd(end), netip.Prefix{}, ""); err != nil {
					return err
				}
				link, err := h.LinkByName(wireEnd(end))
				if err == nil {
					err = h.SetPromiscOn(link)
				}
				if err != nil {
					return fmt.Errorf("promiscuous mode on %s: %w", wireEnd(end), err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("wire namespace: %w", err)
		}
	}
	for _, h := range []Node{sh, rh} {
		if err := withHandle(h.Netns, func(nh *netlink.Handle) error {
			return linkUp(nh, PhyInterface, netip.Prefix{}, BridgeName)
		}); err != nil {
			return fmt.Errorf("node %s: %w", h.Name, err)
		}
	}
	return nil
}

// wireVethIndex is the sender host's eth0 index with a veth wire: above
// anything a fresh namespace has.
const wireVethIndex = 100

// waitOperational waits until each veth of the data path is operationally
// up. The kernel attaches a veth's transmit queue in the same deferred work
// (linkwatch) that sets the operational state, and drops what is sent
// before; a first ping lost that way would cost a 1 s ARP retry.
func (l *Lab) waitOperational(timeout time.Duration) error {
	type link struct{ netns, name string }
	var links []link
	for _, n := range l.Nodes {
		switch {
		case !n.IsVM():
			links = append(links, link{n.Netns, n.Phy})
			if l.VMLink == VMLinkVeth {
				links = append(links, link{n.Netns, n.Vnet})
			}
		case l.VMLink == VMLinkVeth:
			links = append(links, link{n.Netns, n.Interface})
		}
	}
	if l.WireNetns != "" {
		links = append(links, link{l.WireNetns, wireEnd(l.Nodes[1])}, link{l.WireNetns, wireEnd(l.Nodes[2])})
	}
	deadline := time.Now().Add(timeout)
	for _, k := range links {
		err := withHandle(k.netns, func(h *netlink.Handle) error {
			for {
				ln, err := h.LinkByName(k.name)
				if err != nil {
					return fmt.Errorf("finding %s: %w", k.name, err)
				}
				if ln.Attrs().OperState == netlink.OperUp {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s in %s: operational state %s after %s, want up", k.name, k.netns, ln.Attrs().OperState, timeout)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// wireEnd names the wire namespace's end of a host's eth0.
func wireEnd(host Node) string { return "to-" + host.Side }

// createVMLinks joins each VM's eth0 to its host's vnet0 and starts the TAP
// backends when the link is a TAP pair.
func (l *Lab) createVMLinks(o *Options) error {
	for _, pair := range [][2]Node{{l.Nodes[0], l.Nodes[1]}, {l.Nodes[3], l.Nodes[2]}} {
		vm, host := pair[0], pair[1]
		var files []*os.File
		if l.VMLink == VMLinkVeth {
			if err := vethInto(vm.Netns, VMInterface, host.Netns, VnetInterface); err != nil {
				return err
			}
		} else {
			var vmTap, hostTap *os.File
			err := InNetns(vm.Netns, func() (err error) { vmTap, err = tapbackend.Create(VMInterface); return err })
			if err != nil {
				return fmt.Errorf("node %s: %w", vm.Name, err)
			}
			defer vmTap.Close()
			err = InNetns(host.Netns, func() (err error) { hostTap, err = tapbackend.Create(VnetInterface); return err })
			if err != nil {
				return fmt.Errorf("node %s: %w", host.Name, err)
			}
			defer hostTap.Close()
			files = []*os.File{vmTap, hostTap}
		}
		if err := withHandle(vm.Netns, func(h *netlink.Handle) error {
			return linkUp(h, VMInterface, netip.PrefixFrom(vm.DataIP, l.DataNet.Bits()), "")
		}); err != nil {
			return fmt.Errorf("node %s: %w", vm.Name, err)
		}
		if err := withHandle(host.Netns, func(h *netlink.Handle) error {
			return linkUp(h, VnetInterface, netip.Prefix{}, BridgeName)
		}); err != nil {
			return fmt.Errorf("node %s: %w", host.Name, err)
		}
		if files != nil {
			// The backend runs in the host namespace, like QEMU on a
			// hypervisor; it gets the two TAP descriptors as fds 3 and 4.
			_, err := l.start(daemon{
				name: "tap-" + vm.Side, netns: host.Netns, files: files,
				argv: []string{o.Binary, "lab", "tap-backend", "--dir", l.Dir, "--name", vm.Side, "--vm-fd", "3", "--host-fd", "4"},
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// startWire starts the relay in the wire namespace.
func (l *Lab) startWire(o *Options) error {
	_, err := l.start(daemon{
		name: "wire", netns: l.WireNetns,
		argv: []string{o.Binary, "lab", "wire", "--dir", l.Dir,
			"--a", strings.Join(l.wirePorts(l.Nodes[1]), ","), "--b", strings.Join(l.wirePorts(l.Nodes[2]), ","),
			"--delay", l.WireDelay.String(), "--jitter", l.WireJitter.String(),
			"--loss", strconv.FormatFloat(l.WireLoss, 'g', -1, 64),
			"--seed", strconv.FormatUint(l.WireSeed, 10), "--clock", string(o.WireClock)},
	})
	return err
}

// startSSHDs starts sshd in every node (each in a UTS namespace of its own
// with the node's hostname) and waits until all of them answer.
func (l *Lab) startSSHDs(ctx context.Context, o *Options) error {
	if err := os.MkdirAll(privsepDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating sshd privilege separation directory: %w", err)
	}
	for i := range l.Nodes {
		n := &l.Nodes[i]
		_, err := l.start(daemon{
			name: "sshd-" + n.Name, netns: n.Netns, cloneflags: syscall.CLONE_NEWUTS,
			argv: l.sshdArgv(o.Binary, o.Sshd, n),
		})
		if err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range l.Nodes {
		g.Go(func() error {
			if err := waitSSH(gctx, n.MgmtIP, o.ReadyTimeout, 500*time.Millisecond); err != nil {
				return fmt.Errorf("node %s: %w (log: %s)", n.Name, err, l.LogFile("sshd-"+n.Name))
			}
			return nil
		})
	}
	return g.Wait()
}
