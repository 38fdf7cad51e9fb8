// Package envfile reads and writes the environment file (env.yaml) that
// describes the four nodes of a measurement: the origin workflow's YAML shape
// (environment; sender and receiver, each with vm {ssh, ip} and host {ssh,
// vnet_interface, phy_interface}; tools; measurement) extended with SSH
// options, globally or per node.
package envfile

// Environment is the whole file.
type Environment struct {
	Environment string     `yaml:"environment"`
	SSH         SSHOptions `yaml:"ssh,omitempty"` // defaults for every node
	Sender      Side       `yaml:"sender"`
	Receiver    Side       `yaml:"receiver"`
	// Pairs, instead of Sender and Receiver, lists several VM pairs
	// (pingpath watch): their VMs and hosts may be shared, a machine
	// being whatever is reached at the same ssh host and port.
	Pairs       []Pair      `yaml:"pairs,omitempty"`
	Tools       Tools       `yaml:"tools,omitempty"`
	Measurement Measurement `yaml:"measurement,omitempty"`
	// Emulation, when set, says the machines are emulated (the KVM lab's
	// QEMU TCG hosts), so their timings are not production numbers; a
	// run's manifest should carry it on.
	Emulation string `yaml:"emulation,omitempty"`
	// Lab, when set, says the nodes are a pingpath lab and how it was built
	// (written by `pingpath lab up`); a run's manifest carries it on, so the
	// reports can name the lab kind and compare can show wire settings.
	Lab *Lab `yaml:"lab,omitempty"`
}

// Lab describes a pingpath lab: its kind and the wire between its hosts.
type Lab struct {
	Kind       string  `yaml:"kind"`                  // "netns" or "kvm" (lab up --hypervisor)
	VMLink     string  `yaml:"vm_link,omitempty"`     // tap, veth, vhost
	Wire       string  `yaml:"wire,omitempty"`        // veth, relay, bridge
	WireDelay  string  `yaml:"wire_delay,omitempty"`  // Go duration, one way
	WireJitter string  `yaml:"wire_jitter,omitempty"` // Go duration
	WireLoss   float64 `yaml:"wire_loss,omitempty"`   // percent, each direction
}

// Pair is one sender VM → receiver VM pair of Environment.Pairs.
type Pair struct {
	// Name labels the pair in metrics and reports (default "pair-N").
	Name     string `yaml:"name,omitempty"`
	Sender   Side   `yaml:"sender"`
	Receiver Side   `yaml:"receiver"`
}

// Side is one VM and the host it runs on.
type Side struct {
	VM   VM   `yaml:"vm"`
	Host Host `yaml:"host"`
}

// VM is a guest: how to reach it and the address pinged.
type VM struct {
	SSH       string     `yaml:"ssh"`                 // alias (with ssh.config) or [user@]host[:port]
	IP        string     `yaml:"ip"`                  // the VM's address on the measured path
	Interface string     `yaml:"interface,omitempty"` // guest NIC (optional; default: the one holding ip)
	Options   SSHOptions `yaml:"ssh_options,omitempty"`
	// Untraced says no tracer may run in this VM (a tenant's VM, no root,
	// no BTF, another OS): the receiver VM then only answers pings (its
	// ssh may be left out), the sender VM only runs ping as the login
	// user. The hosts' tracers bound the VM's whole time instead.
	Untraced bool `yaml:"untraced,omitempty"`
	// BTF is a kernel BTF file on the node for a kernel without
	// /sys/kernel/btf/vmlinux (see Host.BTF).
	BTF string `yaml:"btf,omitempty"`
}

// Host is a hypervisor.
type Host struct {
	SSH           string     `yaml:"ssh"`
	VnetInterface string     `yaml:"vnet_interface"` // the VM's tap/vnet device on this host
	PhyInterface  string     `yaml:"phy_interface"`  // physical NIC(s), comma-separated for bonds
	Options       SSHOptions `yaml:"ssh_options,omitempty"`
	// BTF is the path, on the node, of a BTF file describing its running
	// kernel (pahole --btf_encode_detached from the debuginfo, or a
	// BTFHub-style archive entry), for kernels built without
	// /sys/kernel/btf/vmlinux; the tracers get it as --btf.
	BTF string `yaml:"btf,omitempty"`
}

// SSHOptions configure how a node is reached. Per-node values override the
// global ones field by field.
type SSHOptions struct {
	User         string `yaml:"user,omitempty"`
	Port         int    `yaml:"port,omitempty"`
	IdentityFile string `yaml:"identity_file,omitempty"`
	Agent        *bool  `yaml:"agent,omitempty"` // use $SSH_AUTH_SOCK
	Jump         string `yaml:"jump,omitempty"`  // jump host, [user@]host[:port] or alias
	KnownHosts   string `yaml:"known_hosts,omitempty"`
	Config       string `yaml:"config,omitempty"` // an OpenSSH ssh_config file whose Host aliases the ssh fields may name
	// Sudo: "" or "none" (already root), "passwordless" (sudo -n), "password" (asked once, never logged).
	Sudo string `yaml:"sudo,omitempty"`
	// InsecureIgnoreHostKey turns host key checking off. Never the default.
	InsecureIgnoreHostKey bool   `yaml:"insecure_ignore_host_key,omitempty"`
	ConnectTimeout        string `yaml:"connect_timeout,omitempty"` // Go duration, default 10s
	RemoteDir             string `yaml:"remote_dir,omitempty"`      // where pingpath is pushed, default /var/cache/pingpath
}

// Tools names the origin Python scripts on the nodes, when the user wants
// them run instead of (or beside) pingpath's own tracers.
type Tools struct {
	KernelICMPRTT      string `yaml:"kernel_icmp_rtt,omitempty"`
	ICMPDropDetector   string `yaml:"icmp_drop_detector,omitempty"`
	TunTxToKVMIRQ      string `yaml:"tun_tx_to_kvm_irq,omitempty"`
	KVMVhostTunLatency string `yaml:"kvm_vhost_tun_latency,omitempty"`
	Python             string `yaml:"python,omitempty"` // default python3
}

// Measurement says how long and how hard to ping.
type Measurement struct {
	Duration  string `yaml:"duration,omitempty"`   // Go duration; the tracers' --duration backstop
	PingCount int    `yaml:"ping_count,omitempty"` // default 20
	Interval  string `yaml:"interval,omitempty"`   // Go duration, default 200ms
}
