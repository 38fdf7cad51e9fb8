package cli

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/host"
)

// newTraceHostCommand is `pingpath trace host`, run on a hypervisor host.
func newTraceHostCommand() *cobra.Command {
	var vmIfaces, phyIfaces, role string
	var pairs []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "host --src-ip S --dst-ip D --vm-interface VNET --phy-interface NIC[,NIC]",
		Short: "Trace pings through a hypervisor host and localize drops (replaces icmp_drop_detector.py)",
		Long: `Timestamps each ping where its echo request enters and leaves this host and where
its echo reply enters and leaves again (req_in, req_out, rep_in, rep_out;
docs/record-format.md), between the VM's vnet device and the physical NIC(s),
through any bridge or OVS. Run it with the same --src-ip (the pinging VM) and
--dst-ip (the pinged VM) on both hosts: the role (sender or receiver) is found per
ping from where the request enters. List every bond slave in --phy-interface; a
reply may return on any. VLAN tags and VXLAN/Geneve on the physical side are looked
through. A ping not complete --timeout after its last event is a drop record naming
the last point seen and, when this host's kernel freed the packet, the drop reason.
One tracer serves several VM pairs on this host: add each further pair with
--pair SRC,DST and list every pair's VM device in --vm-interface; each record
names its pair ("pair": index into the header's "pairs").`,
		Example: `  pingpath trace host --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --vm-interface vnet0 --phy-interface eth0 --format text
  # on both hosts; with a bond, list every slave:
  pingpath trace host --src-ip 10.0.0.5 --dst-ip 10.0.1.7 --vm-interface tap3f2a9c1e-4b --phy-interface ens1f0,ens1f1 > host.jsonl
  # two pairs whose VMs share this host:
  pingpath trace host --src-ip 10.0.0.5 --dst-ip 10.0.1.7 --pair 10.0.0.6,10.0.1.9 --vm-interface vnet3,vnet4 --phy-interface eth0`,
		Args: cobra.NoArgs,
	}
	tf := addTracerFlags(cmd)
	ep := addEndpointFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&vmIfaces, "vm-interface", "", "the VM's vnet/tap device on this host, comma-separated if several (required)")
	f.StringVar(&phyIfaces, "phy-interface", "", "physical NIC(s) or bond slaves, comma-separated (required)")
	f.DurationVar(&timeout, "timeout", time.Second, "a ping idle this long without completing is a drop")
	f.StringVar(&role, "role", "auto", "auto, sender (the pinging VM is here) or receiver (the pinged VM is here)")
	f.StringArrayVar(&pairs, "pair", nil, "a further VM pair SRC,DST this tracer serves too (repeatable; at most 7)")
	for _, name := range []string{"vm-interface", "phy-interface"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := tf.validate(); err != nil {
			return err
		}
		cfg := host.Config{VMInterfaces: envfile.SplitInterfaces(vmIfaces), PhyInterfaces: envfile.SplitInterfaces(phyIfaces), Timeout: timeout, Role: role}
		if err := ep.parse(&cfg.SrcIP, &cfg.DstIP); err != nil {
			return err
		}
		for _, p := range pairs {
			src, dst, ok := strings.Cut(p, ",")
			a, err1 := netip.ParseAddr(src)
			b, err2 := netip.ParseAddr(dst)
			if !ok || err1 != nil || err2 != nil {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--pair %q: want SRC,DST (two IPv4 addresses)", p)}
			}
			cfg.MorePairs = append(cfg.MorePairs, tracer.AddrPair{Src: a, Dst: b})
		}
		t, err := host.New(cfg)
		if err != nil {
			return tracerError(err)
		}
		return tracer.Run(cmd.Context(), t, tf.options(cmd))
	}
	return cmd
}
