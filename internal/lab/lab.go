// Package lab builds the four-node test topology on one Linux machine: a
// sender VM, its host, a receiver host and its VM, each a network namespace
// with a real OpenSSH sshd on a separate management network.
//
//	sender-vm                 sender-host                   receiver-host                 receiver-vm
//	eth0 ══ (tap|veth) ══ vnet0─br0─eth0 ══ wire (veth|relay) ══ eth0─br0─vnet0 ══ (tap|veth) ══ eth0
//	mgmt0 ───────────────── mgmt0 ───── root-namespace bridge ───── mgmt0 ───────────────────── mgmt0
//
// With --vm-link tap, each VM's eth0 and its host's vnet0 are TAP devices and
// a backend process relays frames between their file descriptors, the way
// QEMU's userspace virtio backend does. With impairments (or --wire relay) the
// hosts' eth0 are veths whose peers sit in a fifth "wire" namespace where a
// relay applies delay, jitter and loss. The background processes are hidden
// subcommands of the pingpath binary itself (pingpath lab wire,
// pingpath lab tap-backend, pingpath lab node-init) so that nothing but the
// one binary is needed; they run detached and are tracked by pid files in the
// lab directory.
//
// Everything the lab creates is named after the lab (namespaces
// "<name>-<node>", root links "pp<index>-…", management subnet
// 198.19.<index>.0/24) and recorded in DIR/lab.json before it is created, so
// Down removes it all even when Up failed half way.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Node names, in path order. They are also the SSH aliases in DIR/ssh_config.
const (
	SenderVM     = "sender-vm"
	SenderHost   = "sender-host"
	ReceiverHost = "receiver-host"
	ReceiverVM   = "receiver-vm"
)

// NodeNames lists the four nodes in path order.
func NodeNames() []string { return []string{SenderVM, SenderHost, ReceiverHost, ReceiverVM} }

// Interface names inside the node namespaces (fixed: each lab has its own
// namespaces, so they never clash).
const (
	VMInterface   = "eth0"  // a VM's NIC on the measured path
	VnetInterface = "vnet0" // the host side of a VM's link
	PhyInterface  = "eth0"  // a host's "physical" NIC, the wire end
	BridgeName    = "br0"   // a host's bridge joining vnet0 and eth0
	MgmtInterface = "mgmt0" // every node's management NIC
)

// VM link kinds (Options.VMLink).
const (
	VMLinkTap  = "tap"  // TAP devices on both sides, a userspace backend relays frames
	VMLinkVeth = "veth" // a veth pair
	// VMLinkVhost is the KVM lab's: virtio-net in the VM, served by vhost-net
	// on the host's tap vnet0 (not an option: what HypervisorKVM builds).
	VMLinkVhost = "virtio-vhost-net"
)

// Lab kinds (Options.Hypervisor).
const (
	// HypervisorNetns builds the nodes from network namespaces of this
	// machine's kernel (the default).
	HypervisorNetns = "netns"
	// HypervisorKVM builds two hosts as QEMU TCG guests, each running its VM
	// under the real QEMU with -accel kvm and vhost-net (kvmlab.go).
	HypervisorKVM = "kvm"
)

// Wire kinds (Options.Wire).
const (
	WireAuto  = "auto"  // veth when unimpaired, relay otherwise
	WireVeth  = "veth"  // the hosts' eth0 are the two ends of one veth pair
	WireRelay = "relay" // a userspace relay in the wire namespace, even with no impairment
	// WireBridge (KVM lab) joins the hosts' NICs, taps in the wire
	// namespace, with a bridge there.
	WireBridge = "bridge"
)

// Lab states recorded in lab.json.
const (
	StateBuilding = "building" // Up has started; things may be half made
	StateUp       = "up"       // Up finished; every node answered SSH
)

// StateFile is the name of the lab's state file in its directory.
const StateFile = "lab.json"

// Lab describes a lab: what it is made of and where its files are. It is
// written to DIR/lab.json by Up and read back by Load.
type Lab struct {
	Name  string `json:"name"`
	Dir   string `json:"dir"`
	Index int    `json:"index"` // picks the management subnet and root link names
	// ID is random and unique to this lab instance. Its root links carry
	// it in their alias (RootAlias), so Down deletes only links this lab
	// made: after a lab is down, another lab may reuse its index and with
	// it the same root link names.
	ID    string `json:"id,omitempty"`
	State string `json:"state"`
	// Hypervisor is the lab's kind: HypervisorKVM, or HypervisorNetns
	// (also when empty: lab.json written before there were kinds).
	Hypervisor string `json:"hypervisor,omitempty"`
	// Emulation says, when set, that the machines are emulated and their
	// timings are not production numbers; env.yaml carries it, and a run's
	// manifest should too.
	Emulation string `json:"emulation,omitempty"`
	// KVM describes the KVM lab's machines (HypervisorKVM only).
	KVM *KVMState `json:"kvm,omitempty"`

	VMLink      string        `json:"vm_link"`
	Wire        string        `json:"wire"` // WireVeth or WireRelay (never auto once planned)
	WireDelay   time.Duration `json:"wire_delay"`
	WireJitter  time.Duration `json:"wire_jitter"`
	WireLoss    float64       `json:"wire_loss"` // percent
	WireSeed    uint64        `json:"wire_seed"`
	WireNetns   string        `json:"wire_netns,omitempty"` // set when Wire is WireRelay
	DataNet     netip.Prefix  `json:"data_net"`
	MgmtNet     netip.Prefix  `json:"mgmt_net"`
	MgmtGateway netip.Addr    `json:"mgmt_gateway"` // the root namespace's address on the management bridge
	MgmtBridge  string        `json:"mgmt_bridge"`  // bridge in the root namespace

	Nodes []Node `json:"nodes"`

	SSHConfig    string `json:"ssh_config"`
	KnownHosts   string `json:"known_hosts"`
	IdentityFile string `json:"identity_file"`
	EnvFile      string `json:"env_file"`
	// SudoUser is the optional non-root login user (Options.SudoUser).
	SudoUser *SudoUser `json:"sudo_user,omitempty"`

	Created time.Time `json:"created"`
}

// IsKVM reports whether the lab is a KVM lab.
func (l *Lab) IsKVM() bool { return l.Hypervisor == HypervisorKVM }

// Node is one of the four machines.
type Node struct {
	Name     string     `json:"name"`            // SenderVM, ...; also the SSH alias
	Role     string     `json:"role"`            // "vm" or "host"
	Side     string     `json:"side"`            // "sender" or "receiver"
	Netns    string     `json:"netns,omitempty"` // namespace lab only
	Hostname string     `json:"hostname"`        // what `hostname` prints in SSH sessions
	MgmtIP   netip.Addr `json:"mgmt_ip"`
	// MgmtRootLink is the root-namespace end of the node's management veth.
	MgmtRootLink string `json:"mgmt_root_link"`
	// DataIP is the VM's address on the measured path (VMs only).
	DataIP netip.Addr `json:"data_ip,omitzero"`
	// Interfaces: VMs have Interface (eth0); hosts have Vnet, Phy and Bridge.
	Interface string `json:"interface,omitempty"`
	Vnet      string `json:"vnet_interface,omitempty"`
	Phy       string `json:"phy_interface,omitempty"`
	Bridge    string `json:"bridge,omitempty"`
	// HostKey is the node's public SSH host key in authorized_keys format.
	HostKey string `json:"host_key"`
}

// IsVM reports whether the node is a guest.
func (n *Node) IsVM() bool { return n.Role == "vm" }

// Node returns the node with the given name.
func (l *Lab) Node(name string) (*Node, error) {
	for i := range l.Nodes {
		if l.Nodes[i].Name == name {
			return &l.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("lab %s has no node %q (nodes: %v)", l.Name, name, NodeNames())
}

// Namespaces lists every network namespace of the lab (the four nodes, then
// the wire namespace when there is one).
func (l *Lab) Namespaces() []string {
	var out []string
	for _, n := range l.Nodes {
		if n.Netns != "" {
			out = append(out, n.Netns)
		}
	}
	if l.WireNetns != "" {
		out = append(out, l.WireNetns)
	}
	return out
}

// RootLinks lists the links the lab makes in the root namespace, the
// management bridge last.
func (l *Lab) RootLinks() []string {
	var out []string
	for _, n := range l.Nodes {
		if n.MgmtRootLink != "" {
			out = append(out, n.MgmtRootLink)
		}
	}
	return append(out, l.MgmtBridge)
}

// RootAlias is the interface alias of the lab's root-namespace links; it
// marks them as this lab's (see ID).
func (l *Lab) RootAlias() string { return "pingpath-lab " + l.Name + " " + l.ID }

// path returns a file in the lab directory.
func (l *Lab) path(elem ...string) string {
	return filepath.Join(append([]string{l.Dir}, elem...)...)
}

// runDir holds pid files; logDir holds the background processes' logs.
func (l *Lab) runDir() string { return l.path("run") }
func (l *Lab) logDir() string { return l.path("logs") }

// LogFile returns the log of a background process ("sshd-sender-vm", "wire",
// "tap-sender", ...).
func (l *Lab) LogFile(proc string) string { return filepath.Join(l.logDir(), proc+".log") }

// ErrNoLab is returned by Load when the directory holds no lab.
var ErrNoLab = errors.New("no lab")

// Load reads DIR/lab.json.
func Load(dir string) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("loading lab: %w", err)
	}
	p := filepath.Join(abs, StateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading lab: %w in %s (no %s)", ErrNoLab, abs, StateFile)
	}
	if err != nil {
		return nil, fmt.Errorf("loading lab: %w", err)
	}
	var l Lab
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("loading lab: parsing %s: %w", p, err)
	}
	if l.Name == "" || len(l.Nodes) != 4 {
		return nil, fmt.Errorf("loading lab: %s: not a lab state file (no name or not four nodes)", p)
	}
	l.Dir = abs
	return &l, nil
}

// save writes lab.json atomically.
func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding lab state: %w", err)
	}
	return writeFileAtomic(l.path(StateFile), append(b, '\n'), 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

// checkName validates a lab name: it prefixes namespace names and hostnames.
func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("lab name %q: want 1-24 characters a-z, 0-9 and '-', starting with a letter or digit", name)
	}
	return nil
}
