package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/vhost"
)

// newTraceVhostRXCommand is `pingpath trace vhost-rx`, run on a hypervisor.
func newTraceVhostRXCommand() *cobra.Command {
	return newTraceVhostCommand(record.ToolVhostRX,
		"Trace packets the vnet sends into a VM: tun → vhost → irqfd → KVM interrupt (replaces tun_tx_to_kvm_irq.py)",
		`For every ICMP echo packet the vnet device transmits toward the guest, timestamps
s1_tun_xmit (tun_net_xmit), s2_vhost_recv (vhost-net takes the skb, or the user space
backend reads it), s3_vhost_signal (vhost_add_used_and_signal_n), s4_irqfd
(irqfd_wakeup) and s5_kvm_irq (interrupt injection), correlated by skb, vhost task,
eventfd and GSI. total = s5 − s1 (segment E on the receiver host, L on the sender
host). Each record carries the packet's ICMP id/seq. Stages this host cannot
observe are listed as unavailable in the header, with the reason.`)
}

// newTraceVhostTXCommand is `pingpath trace vhost-tx`, run on a hypervisor.
func newTraceVhostTXCommand() *cobra.Command {
	return newTraceVhostCommand(record.ToolVhostTX,
		"Trace packets a VM sends: guest kick → vhost handle_tx → tun → netif_receive_skb (replaces kvm_vhost_tun_latency_*.py)",
		`For every ICMP echo packet a guest sends through the vnet, timestamps kick
(ioeventfd_write), handle_tx (handle_tx_kick), tun_sendmsg (or the user space backend's
write on the tun fd) and netif_receive (netif_receive_skb on the vnet), correlated by
vhost work and worker task. total = netif_receive − kick (segment B_1 on the sender
host, I_1 on the receiver host). Each record carries the packet's ICMP id/seq.`)
}

func newTraceVhostCommand(tool, short, long string) *cobra.Command {
	var iface, procRoot string
	var timeout, armWindow time.Duration
	cmd := &cobra.Command{
		Use:   tool + " --vm-interface vnetN [--src-ip S --dst-ip D]",
		Short: short,
		Long:  long,
		Example: "  pingpath trace " + tool + " --vm-interface vnet0 --format text\n" +
			"  pingpath trace " + tool + " --vm-interface vnet0 --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --duration 60s > " + tool + ".jsonl",
		Args: cobra.NoArgs,
	}
	tf := addTracerFlags(cmd)
	ep := addEndpointFlags(cmd, false)
	f := cmd.Flags()
	f.StringVar(&iface, "vm-interface", "", "the VM's vnet (tap) interface on this host (required)")
	f.StringVar(&procRoot, "proc", "/proc", "procfs root used to discover the VM's process and vhost threads")
	f.DurationVar(&timeout, "chain-timeout", 2*time.Second, "finish a packet (and write what was seen of it) this long after its last stage")
	f.DurationVar(&armWindow, "arm-window", vhost.DefaultArmWindow, "how long a vhost worker that took a traced packet stays armed: its signal, eventfd, irqfd and injection are seen only within this of the take (raise it on hosts whose CPUs stall for longer, e.g. emulated ones)")
	_ = cmd.MarkFlagRequired("vm-interface")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := tf.validate(); err != nil {
			return err
		}
		if armWindow < time.Millisecond || armWindow > 10*time.Second {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--arm-window %s: out of range 1ms..10s", armWindow)}
		}
		cfg := vhost.Config{Tool: tool, Interface: iface, ProcRoot: procRoot, Timeout: timeout, BTF: tf.opts.BTF, ArmWindow: armWindow}
		if err := ep.parse(&cfg.SrcIP, &cfg.DstIP); err != nil {
			return err
		}
		t, err := vhost.New(cfg)
		if err != nil {
			return tracerError(err)
		}
		return tracer.Run(cmd.Context(), t, tf.options(cmd))
	}
	return cmd
}
