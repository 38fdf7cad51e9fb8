package kvm

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Roles of a node in its configuration.
const (
	RoleHost = "host"
	RoleVM   = "vm"
)

// DefaultDatapath is the hosts' data path: a Linux bridge br0
// (image/datapath-bridge).
const DefaultDatapath = "bridge"

// DatapathOVS is Open vSwitch (image/datapath-ovs); its image has
// OVSPackages on top of image/packages.
const DatapathOVS = "ovs"

// OVSPackages are the Debian packages the ovs data path needs in the image
// (a separate cached image, so that the default one stays lean).
func OVSPackages() []string { return []string{"openvswitch-switch"} }

// BCCPackages are the Debian packages of an image for the origin BCC tools
// (lab up --with-bcc; with the kernel's headers, ImageSpec.Headers): a
// separate cached image, so that the default one stays lean.
func BCCPackages() []string { return []string{"bpfcc-tools", "python3-bpfcc"} }

// Datapaths lists the hosts' data paths (image/datapath-NAME).
func Datapaths() []string { return []string{DefaultDatapath, DatapathOVS} }

// Overlays lists the tunnels a data path can put between the hosts.
func Overlays() []string { return []string{"geneve", "vxlan"} }

// NodeConfig is what a node's /sbin/pingpath-init reads from fw_cfg
// opt/pingpath/node: key=value lines, every value checked here so that the
// init (which only ever uses them quoted) gets what it expects.
type NodeConfig struct {
	Role     string
	Hostname string
	MgmtAddr netip.Prefix
	MgmtMAC  net.HardwareAddr
	DataAddr netip.Prefix // VMs
	DataMAC  net.HardwareAddr
	Datapath string // hosts: a file of image/datapath-*
	// Hosts: a second data NIC (eth1, also cabled to the wire) and a
	// kernel bond of both as the uplink; an overlay (Overlays) between the
	// hosts' underlay addresses on the uplink.
	DataMAC2     net.HardwareAddr
	Bond         bool
	Overlay      string
	UnderlayAddr netip.Prefix
	UnderlayPeer netip.Addr
	// Hosts: their VM's size, how many boots the host tries and how long
	// each may take until the VM's sshd is up.
	VMMemoryMB, VMCPUs, VMAttempts int
	VMTimeoutSec                   int
}

var validHostname = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Marshal renders the configuration.
func (c NodeConfig) Marshal() ([]byte, error) {
	if c.Role != RoleHost && c.Role != RoleVM {
		return nil, fmt.Errorf("node role %q: want %q or %q", c.Role, RoleHost, RoleVM)
	}
	if !validHostname.MatchString(c.Hostname) {
		return nil, fmt.Errorf("node hostname %q: want a-z, 0-9 and '-'", c.Hostname)
	}
	if !c.MgmtAddr.IsValid() || len(c.MgmtMAC) != 6 || len(c.DataMAC) != 6 {
		return nil, fmt.Errorf("node %s: management address and both MACs are required", c.Hostname)
	}
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	kv("role", c.Role)
	kv("hostname", c.Hostname)
	kv("mgmt_addr", c.MgmtAddr.String())
	kv("mgmt_mac", c.MgmtMAC.String())
	kv("data_mac", c.DataMAC.String())
	if c.Role == RoleVM {
		if !c.DataAddr.IsValid() {
			return nil, fmt.Errorf("vm %s: no data address", c.Hostname)
		}
		kv("data_addr", c.DataAddr.String())
		return []byte(b.String()), nil
	}
	dp := c.Datapath
	if dp == "" {
		dp = DefaultDatapath
	}
	if _, err := imageFiles.ReadFile("image/datapath-" + dp); err != nil || !validHostname.MatchString(dp) {
		return nil, fmt.Errorf("host %s: unknown data path %q (want a file image/datapath-NAME)", c.Hostname, dp)
	}
	kv("datapath", dp)
	if len(c.DataMAC2) == 6 {
		kv("data_mac2", c.DataMAC2.String())
	}
	if c.Bond {
		if len(c.DataMAC2) != 6 {
			return nil, fmt.Errorf("host %s: a bond needs a second data NIC", c.Hostname)
		}
		kv("bond", "1")
	}
	if c.Overlay != "" {
		if !slices.Contains(Overlays(), c.Overlay) {
			return nil, fmt.Errorf("host %s: overlay %q: want one of %s", c.Hostname, c.Overlay, strings.Join(Overlays(), ", "))
		}
		if !c.UnderlayAddr.IsValid() || !c.UnderlayAddr.Addr().Is4() || !c.UnderlayPeer.Is4() {
			return nil, fmt.Errorf("host %s: overlay %s needs IPv4 underlay addresses", c.Hostname, c.Overlay)
		}
		kv("overlay", c.Overlay)
		kv("underlay_addr", c.UnderlayAddr.String())
		kv("underlay_peer", c.UnderlayPeer.String())
	}
	for _, p := range []struct {
		k string
		v int
	}{{"vm_memory", c.VMMemoryMB}, {"vm_cpus", c.VMCPUs}, {"vm_attempts", c.VMAttempts}, {"vm_timeout", c.VMTimeoutSec}} {
		if p.v < 0 {
			return nil, fmt.Errorf("host %s: %s %d is negative", c.Hostname, p.k, p.v)
		}
		if p.v > 0 {
			kv(p.k, strconv.Itoa(p.v))
		}
	}
	return []byte(b.String()), nil
}

// MAC returns the lab's MAC address for a NIC: locally administered,
// unique per lab index, node and NIC, so every address in every lab
// differs.
func MAC(labIndex, node, nic int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(labIndex), byte(node), byte(nic)}
}

// fw_cfg names the guest's init reads (below /sys/firmware/qemu_fw_cfg/by_name).
const (
	FwNode           = "opt/pingpath/node"
	FwHostKey        = "opt/pingpath/ssh_host_key"
	FwAuthorizedKeys = "opt/pingpath/authorized_keys"
	// A host's VM's files, passed on by the host.
	FwVMNode    = "opt/pingpath/vm/node"
	FwVMHostKey = "opt/pingpath/vm/ssh_host_key"
	FwVMAuthKey = "opt/pingpath/vm/authorized_keys"
)

// WriteHostFiles writes a host's fw_cfg files into dir (and its VM's) and
// returns the fw_cfg name → file map for Host.FwCfg.
func WriteHostFiles(dir string, host, vm NodeConfig, hostKey, vmKey, authorizedKeys []byte) (map[string]string, error) {
	hb, err := host.Marshal()
	if err != nil {
		return nil, err
	}
	vb, err := vm.Marshal()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		FwNode: hb, FwHostKey: hostKey, FwAuthorizedKeys: authorizedKeys,
		FwVMNode: vb, FwVMHostKey: vmKey, FwVMAuthKey: authorizedKeys,
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(name, "opt/pingpath/"), "/", "-"))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		out[name] = p
	}
	return out, nil
}

// OuterCPU is the hosts' CPU model under TCG: AMD SVM with nested paging so
// that kvm_amd loads, and no CMPXCHG16B, whose TCG emulation in QEMU 7.2
// corrupts RFLAGS in 6.12's SLUB fast path (see tools/vmexec/vm).
const OuterCPU = "qemu64,+svm,+npt,-cx16"

// KernelArgs is the hosts' and VMs' kernel command line. panic=-1 with
// QEMU's -no-reboot turns a panic into QEMU exiting; no_timer_check skips
// the IO-APIC timer probe that a busy TCG host sometimes fails;
// mitigations=off spares the emulated CPUs the speculation barriers (MSR
// writes, buffer clears) on every kernel entry, which under TCG and nested
// SVM are costly emulated operations, not timing-relevant protections.
const KernelArgs = "console=ttyS0 quiet panic=-1 no_timer_check mitigations=off"

// Hosts run multi-threaded TCG. About one 6.12 boot in ten then dies early
// with "Oops: int3" at a static-key site and "Fatal exception in
// interrupt": the kernel patches such sites with text_poke_bp (int3 first,
// then the bytes, then the first byte, with an IPI sync_core on every CPU in
// between), and a vCPU of QEMU 7.2's multi-threaded TCG still executed a
// stale translation holding the int3 after the patch was done (the Oops's
// code dump shows the final bytes). Single-threaded TCG avoids it, but
// then the nested VM made no progress at all (nothing on its console in
// 300 s), so the lab keeps thread=multi and retries a failed boot. See
// docs/lab.md.
//
// tbSizeMB is TCG's translated-code cache per host. QEMU 7.2's default
// (1 GiB) makes each host's RSS about half a GiB larger than its RAM once
// the cache has filled; 256 MiB holds a booted host's working set.
const tbSizeMB = 256

// Host is one hypervisor host's QEMU (TCG, on this machine).
type Host struct {
	Name     string // QEMU's -name
	Image    Image
	MemoryMB int
	CPUs     int
	Console  string // file receiving the serial console
	DataFd   int    // tap descriptor in the child for eth0 (the wire)
	// DataFd2 (when > 0) is a second data NIC's tap (eth1, the wire too;
	// the members of a bond), with DataMAC2.
	DataFd2   int
	DataMAC2  net.HardwareAddr
	MgmtFd    int // tap descriptor in the child for the management NIC
	DataMAC   net.HardwareAddr
	MgmtMAC   net.HardwareAddr
	FwCfg     map[string]string
	ExtraArgs []string
}

// QEMUBinary runs the hosts.
const QEMUBinary = "qemu-system-x86_64"

// Args is QEMU's command line for the host. Never -accel kvm on this
// machine: the Debian kernels die in KVM's instruction emulation there and
// QEMU then hangs.
func (h Host) Args() []string {
	args := []string{
		"-name", h.Name,
		"-accel", "tcg,thread=multi,tb-size=" + strconv.Itoa(tbSizeMB), "-M", "pc", "-cpu", OuterCPU,
		"-m", strconv.Itoa(h.MemoryMB), "-smp", strconv.Itoa(h.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:" + optValue(h.Console),
		"-kernel", h.Image.Vmlinuz, "-initrd", h.Image.Initrd, "-append", KernelArgs,
		"-drive", "file=" + optValue(h.Image.Disk) + ",if=virtio,format=raw,readonly=on",
		// A hardware RNG: without one the guest's crng takes a minute to
		// initialise under emulation, and sshd waits for it.
		"-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng",
		"-netdev", "tap,id=data,fd=" + strconv.Itoa(h.DataFd),
		"-device", "virtio-net-pci,netdev=data,mac=" + h.DataMAC.String() + ",romfile=",
		"-netdev", "tap,id=mgmt,fd=" + strconv.Itoa(h.MgmtFd),
		"-device", "virtio-net-pci,netdev=mgmt,mac=" + h.MgmtMAC.String() + ",romfile=",
	}
	if h.DataFd2 > 0 {
		args = append(args, "-netdev", "tap,id=data2,fd="+strconv.Itoa(h.DataFd2),
			"-device", "virtio-net-pci,netdev=data2,mac="+h.DataMAC2.String()+",romfile=")
	}
	for _, n := range slices.Sorted(maps.Keys(h.FwCfg)) {
		args = append(args, "-fw_cfg", "name="+n+",file="+optValue(h.FwCfg[n]))
	}
	return append(args, h.ExtraArgs...)
}

// optValue escapes a value inside a QEMU option list, where ',' separates
// options and ',,' is a literal comma.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }
