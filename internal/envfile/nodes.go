package envfile

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/role"
)

// Node is one of the four machines of an environment, with its SSH options
// already merged (per-node values over the global ones).
type Node struct {
	Role    string // role.SenderVM, ...
	Field   string // where it is in the file, e.g. "sender.vm"
	SSH     string // destination as configured
	Options SSHOptions
	// VM only.
	IP        string
	Interface string
	// Untraced: no tracer runs on this VM, and it is never asked for root
	// (its sudo mode is none whatever the file says). Without SSH an
	// untraced receiver VM is not contacted at all.
	Untraced bool
	// BTF is the node's kernel BTF file ("" for /sys/kernel/btf/vmlinux).
	BTF string
	// Host only.
	VnetInterface string
	PhyInterfaces []string
}

// Contacted tells whether pingpath connects to the node at all: not to an
// untraced receiver VM without ssh (it only answers pings).
func (n Node) Contacted() bool { return n.SSH != "" }

// IsVM tells a guest from a hypervisor.
func (n Node) IsVM() bool {
	return role.IsVM(n.Role)
}

// Nodes returns the four nodes, receivers first: receiver VM, receiver host,
// sender host, sender VM (the order tracers are started in). Their options
// are merged and defaulted (sudo none, remote_dir /var/cache/pingpath).
func (e *Environment) Nodes() []Node {
	opts := func(o SSHOptions) SSHOptions {
		m := Merge(e.SSH, o)
		m.Sudo = cmp.Or(m.Sudo, SudoNone)
		m.RemoteDir = cmp.Or(m.RemoteDir, DefaultRemoteDir)
		return m
	}
	vm := func(r, field string, v VM) Node {
		n := Node{Role: r, Field: field, SSH: v.SSH, Options: opts(v.Options), IP: v.IP, Interface: v.Interface,
			Untraced: v.Untraced, BTF: v.BTF}
		if n.Untraced {
			n.Options.Sudo = SudoNone
		}
		return n
	}
	host := func(r, field string, h Host) Node {
		return Node{Role: r, Field: field, SSH: h.SSH, Options: opts(h.Options),
			VnetInterface: h.VnetInterface, PhyInterfaces: SplitInterfaces(h.PhyInterface), BTF: h.BTF}
	}
	return []Node{
		vm(role.ReceiverVM, "receiver.vm", e.Receiver.VM),
		host(role.ReceiverHost, "receiver.host", e.Receiver.Host),
		host(role.SenderHost, "sender.host", e.Sender.Host),
		vm(role.SenderVM, "sender.vm", e.Sender.VM),
	}
}

// MachineKey names the machine a destination reaches, host:port whatever
// the user (the port from the destination, else the node's options, else
// globalPort, else 22): two nodes with one key are one machine. ok is
// false for a destination that does not parse.
func MachineKey(dest string, o SSHOptions, globalPort int) (key string, ok bool) {
	d, err := ParseDestination(dest)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("%s:%d", d.Host, cmp.Or(d.Port, o.Port, globalPort, 22)), true
}

// PairName is pair i's name: its own, or "pair-N" (N from 1).
func (p Pair) PairName(i int) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("pair-%d", i+1)
}

// NamedPair is one pair as an environment of its own.
type NamedPair struct {
	Name string
	Env  *Environment // Sender and Receiver set, no Pairs
}

// SplitPairs returns each pair as an environment of its own (the file's
// options, tools and measurement, with that pair's sender and receiver),
// so that what handles one pair handles each; a file without pairs is its
// own only pair, "pair-1".
func (e *Environment) SplitPairs() []NamedPair {
	if len(e.Pairs) == 0 {
		return []NamedPair{{Name: Pair{}.PairName(0), Env: e}}
	}
	out := make([]NamedPair, len(e.Pairs))
	for i, p := range e.Pairs {
		one := *e
		one.Pairs = nil
		one.Sender, one.Receiver = p.Sender, p.Receiver
		out[i] = NamedPair{Name: p.PairName(i), Env: &one}
	}
	return out
}

// Merge returns global with every field that node sets replacing it.
func Merge(global, node SSHOptions) SSHOptions {
	out := global
	out.User = cmp.Or(node.User, global.User)
	out.IdentityFile = cmp.Or(node.IdentityFile, global.IdentityFile)
	out.Jump = cmp.Or(node.Jump, global.Jump)
	out.KnownHosts = cmp.Or(node.KnownHosts, global.KnownHosts)
	out.Config = cmp.Or(node.Config, global.Config)
	out.Sudo = cmp.Or(node.Sudo, global.Sudo)
	out.ConnectTimeout = cmp.Or(node.ConnectTimeout, global.ConnectTimeout)
	out.RemoteDir = cmp.Or(node.RemoteDir, global.RemoteDir)
	out.Port = cmp.Or(node.Port, global.Port)
	out.Agent = cmp.Or(node.Agent, global.Agent)
	out.InsecureIgnoreHostKey = global.InsecureIgnoreHostKey || node.InsecureIgnoreHostKey
	return out
}

// Destination is a parsed [user@]host[:port].
type Destination struct {
	User string
	Host string
	Port int // 0 when not given
}

// ParseDestination parses [user@]host[:port]; an IPv6 host with a port is
// written [addr]:port.
func ParseDestination(s string) (Destination, error) {
	var d Destination
	if strings.ContainsAny(s, " \t\n'\"`$;|&<>\\") {
		return d, fmt.Errorf("%q: invalid characters in ssh destination", s)
	}
	if strings.Count(s, "@") > 1 {
		return d, fmt.Errorf("%q: more than one @ in ssh destination", s)
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		d.User, s = s[:i], s[i+1:]
		if d.User == "" {
			return d, fmt.Errorf("empty user in ssh destination")
		}
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return d, fmt.Errorf("%q: bad port", port)
		}
		d.Host, d.Port = host, p
	} else {
		d.Host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	if d.Host == "" || strings.HasPrefix(d.Host, "-") {
		return d, fmt.Errorf("%q: bad host in ssh destination", s)
	}
	return d, nil
}

// Target is everything needed to open an SSH connection to one node: the
// destination after ssh_config alias resolution and option merging.
type Target struct {
	Name                  string // as configured (alias or destination), for messages
	Host                  string
	Port                  int
	User                  string
	IdentityFiles         []string
	KnownHosts            []string // known_hosts files; default ~/.ssh/known_hosts
	Agent                 bool
	InsecureIgnoreHostKey bool
	ConnectTimeout        time.Duration
	Jump                  *Target
}

// Addr is host:port.
func (t *Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Resolve turns a node's destination and options into a Target, reading the
// ssh_config file named by the options (if any) for Host aliases.
func Resolve(dest string, o SSHOptions) (*Target, error) {
	var cfg *SSHConfig
	if o.Config != "" {
		var err error
		if cfg, err = ReadSSHConfig(ExpandHome(o.Config)); err != nil {
			return nil, err
		}
	}
	return resolve(dest, o, cfg, 0)
}

func resolve(dest string, o SSHOptions, cfg *SSHConfig, depth int) (*Target, error) {
	if depth > 3 {
		return nil, fmt.Errorf("resolving %s: jump hosts nested too deep", dest)
	}
	d, err := ParseDestination(dest)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", dest, err)
	}
	h := HostConfig{}
	if cfg != nil {
		h = cfg.Lookup(d.Host)
	}
	t := &Target{Name: dest, Host: d.Host, InsecureIgnoreHostKey: o.InsecureIgnoreHostKey}
	if h.HostName != "" {
		t.Host = h.HostName
	}
	t.User = cmp.Or(d.User, o.User, h.User)
	if t.User == "" {
		if u, err := user.Current(); err == nil {
			t.User = u.Username
		} else {
			t.User = "root"
		}
	}
	t.Port = cmp.Or(d.Port, o.Port, h.Port, 22)
	if o.IdentityFile != "" {
		t.IdentityFiles = append(t.IdentityFiles, ExpandHome(o.IdentityFile))
	}
	for _, f := range h.IdentityFiles {
		t.IdentityFiles = append(t.IdentityFiles, ExpandHome(f))
	}
	switch {
	case o.KnownHosts != "":
		t.KnownHosts = []string{ExpandHome(o.KnownHosts)}
	case len(h.KnownHosts) > 0:
		for _, f := range h.KnownHosts {
			t.KnownHosts = append(t.KnownHosts, ExpandHome(f))
		}
	default:
		t.KnownHosts = []string{ExpandHome("~/.ssh/known_hosts")}
	}
	if h.StrictHostKeyChecking == "no" || h.StrictHostKeyChecking == "off" {
		// Follows the user's own ssh_config: OpenSSH would also accept any key.
		t.InsecureIgnoreHostKey = true
	}
	t.Agent = os.Getenv("SSH_AUTH_SOCK") != ""
	if o.Agent != nil {
		t.Agent = *o.Agent && t.Agent
	}
	t.ConnectTimeout, _ = time.ParseDuration(cmp.Or(o.ConnectTimeout, DefaultConnectTimeout))
	jump := o.Jump
	if jump == "" && h.ProxyJump != "" && h.ProxyJump != "none" {
		jump = strings.Split(h.ProxyJump, ",")[0]
	}
	if jump != "" {
		jo := o
		jo.Jump = ""
		// The jump host's port comes from its destination or its
		// ssh_config entry, not from the target's options.
		jo.Port = 0
		if t.Jump, err = resolve(jump, jo, cfg, depth+1); err != nil {
			return nil, err
		}
	}
	return t, nil
}
