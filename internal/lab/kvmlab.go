package lab

// The KVM lab (Options.Hypervisor = HypervisorKVM): the same four nodes,
// directory, SSH files and contract as the namespace lab, but the hosts are
// QEMU TCG guests running a Debian cloud kernel, and each runs its VM with
// the real QEMU under -accel kvm (nested SVM) with virtio-net on vhost-net:
//
//	sender-vm ═ virtio/vhost-net ═ vnet0─br0─eth0 ══ wire ══ eth0─br0─vnet0 ═ virtio/vhost-net ═ receiver-vm
//	   mgmt0 ─ vmgmt0─mgmt0(bridge)─NIC ─ ppN-sh ─┐     ┌─ ppN-rh ─ NIC─mgmt0(bridge)─vmgmt0 ─ mgmt0
//	                                    root bridge ppN-br (198.19.N.254)
//
// Each host's two NICs are taps made here: the management one in the root
// namespace on the lab's management bridge, the data one (eth0, the wire
// end) in the NAME-wire namespace, where a bridge (wire0) or the relay
// joins the two hosts. A VM's management NIC is a second virtio-net
// without vhost on the host's management bridge, so SSH never crosses br0,
// vhost-net or the wire.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"

	"github.com/pingpath/pingpath/internal/lab/kvm"
	"github.com/pingpath/pingpath/internal/lab/tapbackend"
)

// KVMOptions configure the KVM lab's machines; zero values take defaults.
type KVMOptions struct {
	// Kernel is the Debian kernel series of hosts and VMs (scripts/kernels.sh):
	// "6.12" (default), "6.1" or "5.10".
	Kernel string
	// Sizes: each host 768 MiB and 2 vCPUs, each VM 256 MiB and 1 vCPU;
	// with BCC hosts 1280 MiB and VMs 512 MiB (a BCC program's compile at
	// start peaks at about 200 MiB, and a host runs two at once).
	HostMemoryMB, HostCPUs int
	VMMemoryMB, VMCPUs     int
	// BootAttempts bounds the boots of each host and, inside it, of its VM
	// (default 3); a boot that panics, exits or is not up within its
	// timeout is retried.
	BootAttempts int
	// HostBootTimeout is one host boot until its sshd runs (default 240 s);
	// VMBootTimeout one VM boot inside it (default 300 s). A boot that
	// panics or exits is retried at once; the timeouts only catch a hung
	// one, so they are generous: on a 2-CPU machine under a load of 20, a
	// host took 60 s and a VM 145 s.
	HostBootTimeout, VMBootTimeout time.Duration
	// ExtraPackages are Debian packages added to the image (a new image is
	// built once for each distinct list).
	ExtraPackages []string
	// BCC adds Debian's BCC (kvm.BCCPackages) and the headers of the
	// kernel the machines boot to the image (a separate cached image), so
	// BCC programs such as the origin tools can run on hosts and VMs.
	BCC bool
	// Datapath is the hosts' switch, a file image/datapath-NAME of package
	// kvm: "bridge" (default: a Linux bridge br0) or "ovs" (Open vSwitch,
	// bridge br0; its image adds kvm.OVSPackages).
	Datapath string
	// Bond gives each host a second data NIC, eth1, also cabled to the
	// wire, and a kernel bond bond0 (balance-xor, layer3+4) of eth0 and
	// eth1 as the uplink. The wire is then the relay, whose ends towards
	// the hosts are port channels delivering frames on either member.
	Bond bool
	// Overlay puts a tunnel (kvm.Overlays: "geneve" or "vxlan") between
	// the hosts' underlay addresses on their uplinks; the switch's port
	// to the wire is then the tunnel, so the wire carries only
	// encapsulated frames.
	Overlay string
	// ImageCache is where images are kept (default kvm.ImageCacheDir()).
	ImageCache string
}

// KVMKernels lists the kernel series a KVM lab can run.
func KVMKernels() []string { return []string{"6.12", "6.1", "5.10"} }

// KVMState describes a KVM lab's machines in lab.json.
type KVMState struct {
	Kernel       string `json:"kernel"` // uname -r of hosts and VMs
	Image        string `json:"image"`  // the image directory in the cache
	HostMemoryMB int    `json:"host_memory_mb"`
	HostCPUs     int    `json:"host_cpus"`
	VMMemoryMB   int    `json:"vm_memory_mb"`
	VMCPUs       int    `json:"vm_cpus"`
	Datapath     string `json:"datapath"`
	Bond         bool   `json:"bond,omitempty"`
	Overlay      string `json:"overlay,omitempty"`
	BCC          bool   `json:"bcc,omitempty"` // the image has BCC and the kernel's headers
	// Underlay is each host's address on its uplink (with an overlay).
	Underlay map[string]netip.Prefix `json:"underlay,omitempty"`
	// HostBoots is how many boots each host needed (more than 1: a boot
	// failed and was retried; its console is in logs/console-HOST.N.log).
	HostBoots map[string]int `json:"host_boots,omitempty"`
}

// KVMEmulation is the KVM lab's Emulation note.
const KVMEmulation = "emulated: the hosts are QEMU TCG guests (software CPUs) on one machine and the VMs run under nested KVM inside them; the kernel code paths are the production ones, the timings are not"

// kvmMachines is what prepareKVM readied before the lab is allocated.
type kvmMachines struct {
	image kvm.Image
	qemu  string
}

func (o *Options) fillKVM() error {
	if o.VMLink != "" && o.VMLink != VMLinkVhost {
		return fmt.Errorf("vm link %q: a KVM lab's VMs have virtio-net on vhost-net (--vm-link is the namespace lab's)", o.VMLink)
	}
	o.VMLink = VMLinkVhost
	k := &o.KVM
	if k.Datapath == "" {
		k.Datapath = kvm.DefaultDatapath
	}
	if !slices.Contains(kvm.Datapaths(), k.Datapath) {
		return fmt.Errorf("switch %q: want one of %s", k.Datapath, strings.Join(kvm.Datapaths(), ", "))
	}
	if k.Overlay != "" && !slices.Contains(kvm.Overlays(), k.Overlay) {
		return fmt.Errorf("overlay %q: want one of %s", k.Overlay, strings.Join(kvm.Overlays(), ", "))
	}
	if k.Bond {
		// This machine's kernel may have no bonding; the relay is the
		// switch's side of the LAG.
		switch o.Wire {
		case WireAuto:
			o.Wire = WireRelay
		case WireBridge:
			return errors.New("wire bridge: a bond needs --wire relay (or auto): the relay is the switch's port channel")
		}
	}
	if o.SudoUser {
		return errors.New("sudo user: not available in a KVM lab yet (its machines log in root only)")
	}
	switch o.Wire {
	case WireAuto:
		o.Wire = WireBridge
		if !o.impairment().Zero() {
			o.Wire = WireRelay
		}
	case WireBridge:
		if !o.impairment().Zero() {
			return errors.New("wire bridge: delay, jitter and loss need --wire relay (or auto)")
		}
	case WireRelay:
	default:
		return fmt.Errorf("wire %q: a KVM lab's wire is %q, %q or %q", o.Wire, WireAuto, WireBridge, WireRelay)
	}
	if k.Kernel == "" {
		k.Kernel = kvm.DefaultKernel
	}
	if !slices.Contains(KVMKernels(), k.Kernel) {
		return fmt.Errorf("kernel %q: want one of %s", k.Kernel, strings.Join(KVMKernels(), ", "))
	}
	hostMB, vmMB := 768, 256
	if k.BCC {
		hostMB, vmMB = 1280, 512
	}
	for _, d := range []struct {
		v   *int
		def int
	}{{&k.HostMemoryMB, hostMB}, {&k.HostCPUs, 2}, {&k.VMMemoryMB, vmMB}, {&k.VMCPUs, 1}, {&k.BootAttempts, 3}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return fmt.Errorf("kvm machine sizes and boot attempts must be positive (got %d)", *d.v)
		}
	}
	if k.HostMemoryMB < k.VMMemoryMB+384 {
		return fmt.Errorf("host memory %d MiB: want at least the VM's %d MiB + 384 MiB", k.HostMemoryMB, k.VMMemoryMB)
	}
	if k.HostBootTimeout == 0 {
		k.HostBootTimeout = 240 * time.Second
	}
	if k.VMBootTimeout == 0 {
		k.VMBootTimeout = 300 * time.Second
	}
	return nil
}

// prepareKVM finds QEMU and readies the kernel and the image (building it
// the first time).
func prepareKVM(ctx context.Context, o *Options) (*kvmMachines, error) {
	qemu, err := exec.LookPath(kvm.QEMUBinary)
	if err != nil {
		return nil, fmt.Errorf("kvm lab: %w (install qemu-system-x86)", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, fmt.Errorf("kvm lab: %w", err)
	}
	k, err := kvm.EnsureKernel(ctx, o.KVM.Kernel, o.Log)
	if err != nil {
		return nil, err
	}
	cache := o.KVM.ImageCache
	if cache == "" {
		if cache, err = kvm.ImageCacheDir(); err != nil {
			return nil, err
		}
	}
	pkgs := o.KVM.ExtraPackages
	if o.KVM.Datapath == kvm.DatapathOVS {
		pkgs = append(slices.Clone(pkgs), kvm.OVSPackages()...)
	}
	spec := kvm.ImageSpec{Kernel: k, ExtraPackages: pkgs}
	if o.KVM.BCC {
		spec.ExtraPackages = append(slices.Clone(spec.ExtraPackages), kvm.BCCPackages()...)
		h, err := kvm.EnsureHeaders(ctx, k, o.Log)
		if err != nil {
			return nil, err
		}
		spec.Headers = &h
	}
	img, err := kvm.EnsureImage(ctx, cache, spec, o.Log)
	if err != nil {
		return nil, err
	}
	return &kvmMachines{image: img, qemu: qemu}, nil
}

// planKVM turns the planned nodes into machines: no namespaces of their
// own, and a management tap (named like the namespace lab's root veth end)
// only for the hosts, which bridge their VM's management NIC themselves.
func (l *Lab) planKVM(o *Options) {
	l.Emulation = KVMEmulation
	for i := range l.Nodes {
		n := &l.Nodes[i]
		n.Netns = ""
		if n.IsVM() {
			n.MgmtRootLink = ""
		} else if o.KVM.Bond {
			n.Phy = strings.Join(bondMembers, ",") // the tracer watches the members
		}
	}
	l.KVM = &KVMState{
		HostMemoryMB: o.KVM.HostMemoryMB, HostCPUs: o.KVM.HostCPUs,
		VMMemoryMB: o.KVM.VMMemoryMB, VMCPUs: o.KVM.VMCPUs, Datapath: o.KVM.Datapath,
		Bond: o.KVM.Bond, Overlay: o.KVM.Overlay, BCC: o.KVM.BCC, HostBoots: map[string]int{},
	}
	if o.KVM.Overlay != "" {
		l.KVM.Underlay = map[string]netip.Prefix{
			SenderHost: underlayAddr(l.DataNet, 1), ReceiverHost: underlayAddr(l.DataNet, 2),
		}
	}
}

// bondMembers are a bonded host's data NICs, both cabled to the wire.
var bondMembers = []string{"eth0", "eth1"}

// underlayAddr is the i-th host's underlay address (with an overlay): in
// the last /24 of the data network, which the VMs' addresses (.1.1, .2.1)
// never reach.
func underlayAddr(data netip.Prefix, i uint32) netip.Prefix {
	size := uint32(1) << (32 - data.Bits())
	return netip.PrefixFrom(addrAt(data, size-256+i), 24)
}

// wirePorts are a host's taps in the wire namespace: one, or one per bond
// member (the relay's port channel towards the host).
func (l *Lab) wirePorts(h Node) []string {
	if l.KVM == nil || !l.KVM.Bond {
		return []string{wireEnd(h)}
	}
	return []string{wireEnd(h), wireEnd(h) + "1"}
}

// qemuDaemon names a host's QEMU among the lab's background processes.
func qemuDaemon(host string) string { return "qemu-" + host }

// hostOf returns the host a node runs on (a host runs on itself).
func (l *Lab) hostOf(n Node) string {
	if !n.IsVM() {
		return n.Name
	}
	if n.Side == "receiver" {
		return ReceiverHost
	}
	return SenderHost
}

// kvmDir holds the machines' fw_cfg files (the node configurations and
// their keys); Down removes it.
func (l *Lab) kvmDir() string { return l.path("kvm") }

// wireBridge joins the hosts' wire taps in the wire namespace.
const wireBridge = "wire0"

// buildKVM makes the lab's machines: configurations, wire, hosts (retried
// when a boot fails), then waits for the VMs and every sshd.
func (l *Lab) buildKVM(ctx context.Context, o *Options, m *kvmMachines) error {
	l.KVM.Kernel, l.KVM.Image = m.image.Release, m.image.Dir
	if err := l.save(); err != nil {
		return err
	}
	step := stepLogger(o.Log, time.Millisecond)
	if err := step("ssh keys", l.writeSSHFiles); err != nil {
		return err
	}
	var fw map[string]map[string]string
	if err := step("machine configurations", func() (err error) { fw, err = l.writeMachineConfigs(o); return err }); err != nil {
		return err
	}
	if err := step("wire ("+l.Wire+")", l.createKVMWire); err != nil {
		return err
	}
	var mu sync.Mutex
	err := step("hosts booted", func() error {
		g, gctx := errgroup.WithContext(ctx)
		for _, h := range []*Node{&l.Nodes[1], &l.Nodes[2]} {
			g.Go(func() error {
				boots, err := l.bootHost(gctx, o, m, h, fw[h.Name], 1)
				mu.Lock()
				l.KVM.HostBoots[h.Name] = boots
				mu.Unlock()
				return err
			})
		}
		err := g.Wait()
		return errors.Join(err, l.save())
	})
	if err != nil {
		return err
	}
	// The VMs boot before the relay starts: a host whose kernel dies while
	// its VM boots is booted again with fresh taps, which a running relay
	// would not know (it holds the old ones).
	vmTimeout := time.Duration(o.KVM.BootAttempts)*o.KVM.VMBootTimeout + 30*time.Second
	if err := step("vms booted (nested kvm)", func() error {
		g, gctx := errgroup.WithContext(ctx)
		for _, h := range []*Node{&l.Nodes[1], &l.Nodes[2]} {
			g.Go(func() error {
				for {
					err := l.waitConsole(gctx, h.Name, vmTimeout, func(c kvm.Console) (bool, error) {
						if c.VMFailed {
							return false, fmt.Errorf("its VM did not boot in %d attempts", o.KVM.BootAttempts)
						}
						return c.VMReady, nil
					})
					if err == nil {
						return nil
					}
					mu.Lock()
					boots := l.KVM.HostBoots[h.Name]
					mu.Unlock()
					if !errors.Is(err, errHostDied) || boots >= o.KVM.BootAttempts || gctx.Err() != nil {
						return fmt.Errorf("host %s: %w (console: %s)", h.Name, err, l.consoleLog(h.Name))
					}
					// The TCG text-patching race (see kvm.Host) can kill a host
					// after its sshd came up too: boot it once more.
					fmt.Fprintf(o.Log, "  host %s: died while its VM booted: %v\n", h.Name, err)
					if err := l.stopHost(h); err != nil {
						return err
					}
					_ = os.Rename(l.consoleLog(h.Name), l.LogFile(fmt.Sprintf("console-%s.%d", h.Name, boots)))
					boots, err = l.bootHost(gctx, o, m, h, fw[h.Name], boots+1)
					mu.Lock()
					l.KVM.HostBoots[h.Name] = boots
					mu.Unlock()
					if err != nil {
						return err
					}
				}
			})
		}
		return errors.Join(g.Wait(), l.save())
	}); err != nil {
		return err
	}
	if l.Wire == WireRelay {
		if err := step("wire relay", func() error { return l.startWire(o) }); err != nil {
			return err
		}
	}
	if err := step("sshd (four nodes)", func() error { return l.waitAllSSH(ctx, o.ReadyTimeout) }); err != nil {
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

// consoleLog is a host's serial console (with its VM's progress lines).
func (l *Lab) consoleLog(host string) string { return l.LogFile("console-" + host) }

// writeMachineConfigs writes each host's fw_cfg files (its own and its
// VM's configuration and keys) under DIR/kvm/HOST and returns them by host.
func (l *Lab) writeMachineConfigs(o *Options) (map[string]map[string]string, error) {
	authorized, err := os.ReadFile(l.path("ssh", "authorized_keys"))
	if err != nil {
		return nil, fmt.Errorf("reading the lab's authorized_keys: %w", err)
	}
	out := map[string]map[string]string{}
	for _, pair := range [][2]int{{1, 0}, {2, 3}} {
		host, vm := &l.Nodes[pair[0]], &l.Nodes[pair[1]]
		hostKey, err := os.ReadFile(filepath.Join(l.nodeSSHDir(host.Name), "ssh_host_ed25519_key"))
		if err != nil {
			return nil, err
		}
		vmKey, err := os.ReadFile(filepath.Join(l.nodeSSHDir(vm.Name), "ssh_host_ed25519_key"))
		if err != nil {
			return nil, err
		}
		mgmt := func(n *Node) netip.Prefix { return netip.PrefixFrom(n.MgmtIP, l.MgmtNet.Bits()) }
		hc := kvm.NodeConfig{
			Role: kvm.RoleHost, Hostname: host.Hostname, MgmtAddr: mgmt(host),
			MgmtMAC: kvm.MAC(l.Index, pair[0]+1, 2), DataMAC: kvm.MAC(l.Index, pair[0]+1, 1),
			Datapath: o.KVM.Datapath, VMMemoryMB: o.KVM.VMMemoryMB, VMCPUs: o.KVM.VMCPUs,
			VMAttempts: o.KVM.BootAttempts, VMTimeoutSec: int(o.KVM.VMBootTimeout / time.Second),
			Bond: o.KVM.Bond, Overlay: o.KVM.Overlay,
		}
		if o.KVM.Bond {
			hc.DataMAC2 = kvm.MAC(l.Index, pair[0]+1, 3)
		}
		if o.KVM.Overlay != "" {
			peer := l.Nodes[3-pair[0]].Name // the other host
			hc.UnderlayAddr, hc.UnderlayPeer = l.KVM.Underlay[host.Name], l.KVM.Underlay[peer].Addr()
		}
		vc := kvm.NodeConfig{
			Role: kvm.RoleVM, Hostname: vm.Hostname, MgmtAddr: mgmt(vm),
			MgmtMAC: kvm.MAC(l.Index, pair[1]+1, 2), DataMAC: kvm.MAC(l.Index, pair[1]+1, 1),
			DataAddr: netip.PrefixFrom(vm.DataIP, l.DataNet.Bits()),
		}
		files, err := kvm.WriteHostFiles(filepath.Join(l.kvmDir(), host.Name), hc, vc, hostKey, vmKey, authorized)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", host.Name, err)
		}
		out[host.Name] = files
	}
	return out, nil
}

// createKVMWire readies the wire namespace: a bridge joining the hosts'
// taps, or nothing (the relay opens them itself once the hosts run).
func (l *Lab) createKVMWire() error {
	if l.Wire != WireBridge {
		return nil
	}
	return withHandle(l.WireNetns, func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: wireBridge}}); err != nil {
			return fmt.Errorf("creating %s in %s: %w", wireBridge, l.WireNetns, err)
		}
		return linkUp(h, wireBridge, netip.Prefix{}, "")
	})
}

// bootHost boots a host until its sshd runs, retrying a failed boot with
// fresh taps; first is the number of this boot (boots before it count
// against o.KVM.BootAttempts). It returns the number of boots tried.
func (l *Lab) bootHost(ctx context.Context, o *Options, m *kvmMachines, h *Node, fw map[string]string, first int) (int, error) {
	var errs []error
	for attempt := first; ; attempt++ {
		t := time.Now()
		err := l.startHost(o, m, h, fw)
		if err == nil {
			err = l.waitConsole(ctx, h.Name, o.KVM.HostBootTimeout, func(c kvm.Console) (bool, error) { return c.NodeReady, nil })
		}
		if err == nil {
			fmt.Fprintf(o.Log, "  host %s up (boot %d, %s)\n", h.Name, attempt, time.Since(t).Round(100*time.Millisecond))
			return attempt, nil
		}
		errs = append(errs, fmt.Errorf("boot %d: %w", attempt, err))
		fmt.Fprintf(o.Log, "  host %s: boot %d failed: %v\n", h.Name, attempt, err)
		if serr := l.stopHost(h); serr != nil {
			return attempt, errors.Join(append(errs, serr)...)
		}
		// Keep the failed boot's console for the record.
		_ = os.Rename(l.consoleLog(h.Name), l.LogFile(fmt.Sprintf("console-%s.%d", h.Name, attempt)))
		if attempt >= o.KVM.BootAttempts || ctx.Err() != nil {
			return attempt, fmt.Errorf("host %s did not boot: %w", h.Name, errors.Join(errs...))
		}
	}
}

// startHost makes the host's taps and starts its QEMU with them. QEMU runs
// in the wire namespace (it opens no sockets, and Down then finds it there
// even if its pid file was never written); the taps are not persistent, so
// they vanish with it.
func (l *Lab) startHost(o *Options, m *kvmMachines, h *Node, fw map[string]string) error {
	mgmt, err := tapbackend.Create(h.MgmtRootLink)
	if err != nil {
		return err
	}
	defer mgmt.Close()
	if err := l.markRootLink(h.MgmtRootLink); err != nil {
		return err
	}
	disableIPv6On(h.MgmtRootLink)
	root, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer root.Close()
	if err := linkUp(root, h.MgmtRootLink, netip.Prefix{}, l.MgmtBridge); err != nil {
		return err
	}
	var data []*os.File
	defer func() {
		for _, f := range data {
			f.Close()
		}
	}()
	for _, end := range l.wirePorts(*h) {
		err := InNetns(l.WireNetns, func() error {
			f, err := tapbackend.Create(end)
			if err == nil {
				data = append(data, f)
			}
			return err
		})
		if err != nil {
			return err
		}
		err = withHandle(l.WireNetns, func(nh *netlink.Handle) error {
			if l.Wire == WireBridge {
				return linkUp(nh, end, netip.Prefix{}, wireBridge)
			}
			if err := linkUp(nh, end, netip.Prefix{}, ""); err != nil {
				return err
			}
			link, err := nh.LinkByName(end)
			if err == nil {
				err = nh.SetPromiscOn(link)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("wire end %s: %w", end, err)
		}
	}
	idx := slices.IndexFunc(l.Nodes, func(n Node) bool { return n.Name == h.Name })
	host := kvm.Host{
		Name: h.Hostname, Image: m.image, MemoryMB: l.KVM.HostMemoryMB, CPUs: l.KVM.HostCPUs,
		Console: l.consoleLog(h.Name), DataFd: 3, MgmtFd: 4,
		DataMAC: kvm.MAC(l.Index, idx+1, 1), MgmtMAC: kvm.MAC(l.Index, idx+1, 2), FwCfg: fw,
	}
	files := []*os.File{data[0], mgmt}
	if len(data) > 1 {
		host.DataFd2, host.DataMAC2 = 5, kvm.MAC(l.Index, idx+1, 3)
		files = append(files, data[1])
	}
	_ = os.Remove(host.Console)
	_, err = l.start(daemon{
		name: qemuDaemon(h.Name), netns: l.WireNetns, files: files,
		argv: append([]string{m.qemu}, host.Args()...),
	})
	return err
}

// stopHost kills a host's QEMU and waits until its taps are gone, so that a
// new boot can make them again.
func (l *Lab) stopHost(h *Node) error {
	pids, err := l.pids()
	if err != nil {
		return err
	}
	if pid := pids[qemuDaemon(h.Name)]; pid != 0 {
		if err := killAndWait([]int{pid}, 3*time.Second); err != nil {
			return fmt.Errorf("stopping host %s: %w", h.Name, err)
		}
	}
	// The kernel unregisters a closed tap in deferred work: seconds on a
	// loaded machine (3 s was too short once at load 20).
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err1 := netlink.LinkByName(h.MgmtRootLink)
		left := 0
		_ = withHandle(l.WireNetns, func(nh *netlink.Handle) error {
			for _, end := range l.wirePorts(*h) {
				if _, err := nh.LinkByName(end); err == nil {
					left++
				}
			}
			return nil
		})
		if err1 != nil && left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s: its taps outlived its QEMU", h.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errHostDied marks a host whose kernel died (its console shows a panic or
// an Oops).
var errHostDied = errors.New("the host's kernel died")

// waitConsole polls a host's console until done reports true, the console
// shows a failure (errHostDied), its QEMU exits, or timeout passes.
func (l *Lab) waitConsole(ctx context.Context, host string, timeout time.Duration, done func(kvm.Console) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	path := l.consoleLog(host)
	var c kvm.Console
	for {
		var err error
		c, err = kvm.ReadConsole(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if c.Failed != "" {
			return fmt.Errorf("console: %s: %w", c.Failed, errHostDied)
		}
		if ok, err := done(c); ok || err != nil {
			return err
		}
		if l.daemonExited(qemuDaemon(host)) {
			return fmt.Errorf("qemu exited (%s; %s)", lastProgress(c), l.LogFile(qemuDaemon(host)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not up after %s (%s)", timeout, lastProgress(c))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func lastProgress(c kvm.Console) string {
	if len(c.Progress) == 0 {
		return "no progress line on the console"
	}
	return "last: " + c.Progress[len(c.Progress)-1]
}

// kvmSSHTimeout bounds one SSH banner read from an emulated machine.
const kvmSSHTimeout = 15 * time.Second

// waitAllSSH waits for every node's sshd banner.
func (l *Lab) waitAllSSH(ctx context.Context, timeout time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range l.Nodes {
		g.Go(func() error {
			if err := waitSSH(gctx, n.MgmtIP, timeout, kvmSSHTimeout); err != nil {
				return fmt.Errorf("node %s: %w (console: %s)", n.Name, err, l.consoleLog(l.hostOf(n)))
			}
			return nil
		})
	}
	return g.Wait()
}

// Describe says in a line what the hosts' data path is made of.
func (s *KVMState) Describe() string {
	d := "switch " + s.Datapath + " br0, uplink "
	if s.Bond {
		d += "bond0 (balance-xor of " + strings.Join(bondMembers, " and ") + ")"
	} else {
		d += bondMembers[0]
	}
	if s.Overlay != "" {
		d += fmt.Sprintf(", overlay %s (VNI 42) %s <-> %s", s.Overlay,
			s.Underlay[SenderHost].Addr(), s.Underlay[ReceiverHost].Addr())
	}
	return d
}
