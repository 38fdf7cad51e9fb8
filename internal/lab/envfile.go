package lab

import (
	"cmp"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pingpath/pingpath/internal/envfile"
)

// Environment returns the lab as an environment file: the nodes by their
// SSH aliases in DIR/ssh_config, with the lab's key and known_hosts.
func (l *Lab) Environment() *envfile.Environment {
	side := func(vm, host *Node) envfile.Side {
		return envfile.Side{
			VM:   envfile.VM{SSH: vm.Name, IP: vm.DataIP.String(), Interface: vm.Interface},
			Host: envfile.Host{SSH: host.Name, VnetInterface: host.Vnet, PhyInterface: host.Phy},
		}
	}
	env := &envfile.Environment{
		Environment: "lab-" + l.Name,
		SSH: envfile.SSHOptions{
			User: "root", Config: l.SSHConfig, KnownHosts: l.KnownHosts, IdentityFile: l.IdentityFile,
		},
		Sender:      side(&l.Nodes[0], &l.Nodes[1]),
		Receiver:    side(&l.Nodes[3], &l.Nodes[2]),
		Measurement: envfile.Measurement{PingCount: 20, Interval: "200ms", Duration: "60s"},
		Emulation:   l.Emulation,
		Lab: &envfile.Lab{Kind: cmp.Or(l.Hypervisor, HypervisorNetns), VMLink: l.VMLink, Wire: l.Wire,
			WireLoss: l.WireLoss, WireDelay: durationOrEmpty(l.WireDelay), WireJitter: durationOrEmpty(l.WireJitter)},
	}
	if l.Hypervisor == HypervisorKVM {
		// An sshd in an emulated machine, busy with the tracers' BPF
		// verification, took over 10 s (the default) to finish a
		// handshake on a 2-CPU machine at load 20.
		env.SSH.ConnectTimeout = kvmConnectTimeout
	}
	if l.SudoUser != nil {
		// As sudoersRules has it: passwordless on the VMs, password on the hosts.
		env.SSH.User = l.SudoUser.Name
		for _, s := range []*envfile.Side{&env.Sender, &env.Receiver} {
			s.VM.Options.Sudo, s.Host.Options.Sudo = envfile.SudoPasswordless, envfile.SudoPassword
		}
	}
	return env
}

// kvmConnectTimeout is the KVM lab's ssh connect_timeout in env.yaml.
const kvmConnectTimeout = "60s"

// writeEnvFile writes DIR/env.yaml.
func (l *Lab) writeEnvFile() error {
	b, err := yaml.Marshal(l.Environment())
	if err != nil {
		return fmt.Errorf("encoding env.yaml: %w", err)
	}
	head := fmt.Sprintf("# pingpath lab %q: the four nodes by their aliases in %s\n", l.Name, l.SSHConfig)
	if l.Emulation != "" {
		head += "# EMULATED machines: do not read their timings as production numbers (see emulation)\n"
	}
	return writeFileAtomic(l.EnvFile, append([]byte(head), b...), 0o644)
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
