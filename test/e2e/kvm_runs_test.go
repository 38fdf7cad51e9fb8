package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
)

// kvmRunsFrames is how many unrelated UDP datagrams the sender VM sends
// through its host in TestKVMRunsPerFrame.
const kvmRunsFrames = 2000

// TestKVMRunsPerFrame counts the BPF program runs one host's tracers (host,
// vhost-rx, vhost-tx, started as `pingpath run` starts them) make for a
// frame the host bridges from its VM to the wire that is none of the pings:
// unrelated UDP from the sender VM to the receiver VM's discard port. The
// KVM lab's hosts run Debian 6.12 with fentry, kprobes and vhost-net, the
// rungs a production hypervisor takes, where this machine has tracepoints
// only; their run times are emulated (TCG), the counts are exact (each
// tracer's own per-hook run counters, in its trailer). Every packet the
// host's kernel handles meanwhile runs the hooks too (SSH to the host, the
// ICMP errors the receiver VM sends back), so the figures are upper bounds;
// the test logs them beside the frames counted on the uplink
// (docs/observer-effect.md, "Runs per frame on a production-like host").
func TestKVMRunsPerFrame(t *testing.T) {
	if os.Getenv(kvmE2EVar) == "" {
		t.Skipf("the KVM lab takes minutes: set %s=1 (make test-kvm-e2e) to run it", kvmE2EVar)
	}
	requireLab(t)
	l := labtest.UpKVM(t, lab.Options{})
	// A short run pushes pingpath to every node.
	kvmRun(t, l, "push", 3)
	host, err := l.Node(lab.SenderHost)
	if err != nil {
		t.Fatal(err)
	}
	svm, _ := l.Node(lab.SenderVM)
	rvm, _ := l.Node(lab.ReceiverVM)
	bin := strings.TrimSpace(sshNode(t, l, lab.SenderHost, "ls -t /var/cache/pingpath/pingpath-* | head -n 1"))
	if bin == "" {
		t.Fatal("no pingpath pushed to the sender host")
	}
	ips := fmt.Sprintf("--src-ip %s --dst-ip %s", svm.DataIP, rvm.DataIP)
	tools := map[string]string{
		"host":     fmt.Sprintf("host --vm-interface %s --phy-interface %s %s", host.Vnet, host.Phy, ips),
		"vhost-rx": fmt.Sprintf("vhost-rx --vm-interface %s %s", host.Vnet, ips),
		"vhost-tx": fmt.Sprintf("vhost-tx --vm-interface %s %s", host.Vnet, ips),
	}
	var start []string
	for name, args := range tools {
		// The flood is meant to cost: --max-cpu must not stop a tracer.
		start = append(start, fmt.Sprintf("nohup %s trace %s --max-cpu 10000 --max-duration 20m --output /tmp/rpf-%s.jsonl </dev/null 2>/tmp/rpf-%s.err >/dev/null &",
			bin, args, name, name))
	}
	sshNode(t, l, lab.SenderHost, strings.Join(start, "\n")+"\n"+
		"for i in $(seq 900); do n=$(grep -l '^ready ' /tmp/rpf-*.err 2>/dev/null | wc -l); [ \"$n\" = 3 ] && exit 0; sleep 1; done; tail -n 3 /tmp/rpf-*.err; exit 1")
	counter := fmt.Sprintf("cat /sys/class/net/%s/statistics/tx_packets", host.Phy)
	tx0 := atoi(t, sshNode(t, l, lab.SenderHost, counter))
	sshNode(t, l, lab.SenderVM, fmt.Sprintf("for i in $(seq %d); do echo x >/dev/udp/%s/9; done 2>/dev/null; true", kvmRunsFrames, rvm.DataIP))
	frames := atoi(t, sshNode(t, l, lab.SenderHost, counter)) - tx0
	// "[t]race": the pattern must not match this shell's own command line.
	sshNode(t, l, lab.SenderHost, "pkill -INT -f ' [t]race .*--output /tmp/rpf-'; for i in $(seq 120); do pgrep -f ' [t]race .*--output /tmp/rpf-' >/dev/null || exit 0; sleep 1; done; exit 1")
	if frames < kvmRunsFrames {
		t.Fatalf("%d datagrams sent, %d frames out of %s", kvmRunsFrames, frames, host.Phy)
	}

	dir := t.TempDir()
	var lines []string
	total := 0.0
	perFrame := map[string]float64{}
	for name := range tools {
		path := filepath.Join(dir, name+".jsonl")
		if err := os.WriteFile(path, []byte(sshNode(t, l, lab.SenderHost, "cat /tmp/rpf-"+name+".jsonl")), 0o644); err != nil {
			t.Fatal(err)
		}
		s := readStream(t, path)
		if s.Trailer == nil || s.Trailer.Cost == nil {
			t.Fatalf("%s: no trailer with its cost", name)
		}
		for _, p := range s.Header.Probes {
			if p.Available {
				lines = append(lines, fmt.Sprintf("  %-8s probe %-16s %s %s", name, p.Stage, p.Method, p.Target))
			}
		}
		for hook, c := range s.Trailer.Cost.Hooks {
			per := float64(c.Runs) / float64(frames)
			total += per
			perFrame[name+" "+hook] = per
			lines = append(lines, fmt.Sprintf("  %-8s hook  %-16s %8d runs  %.2f per frame  (%d emitted an event)", name, hook, c.Runs, per, c.MatchedRuns))
		}
	}
	slices.Sort(lines)
	t.Logf("%d frames out of %s for %d datagrams; program runs of the sender host's tracers (every packet of the host, not only the frames):\n%s\n  all hooks: %.2f runs per frame",
		frames, host.Phy, kvmRunsFrames, strings.Join(lines, "\n"), total)
	// What the rungs of such a host promise for a frame from the VM to the
	// wire: one run each of host ingress and egress and of vhost-tx's
	// receive hook; no run of vhost-rx's S1 (tun_net_xmit fires on the tun
	// device only, where this machine's net_dev_start_xmit fires on every
	// device), and no consume_skb hook at all with vhost-net's S2.
	for _, h := range []string{"host ingress", "host egress", "vhost-tx netif_receive"} {
		if v := perFrame[h]; v < 1 || v > 1.5 {
			t.Errorf("%s: %.2f runs per frame, want one (and a little for the host's other packets)", h, v)
		}
	}
	if v := perFrame["vhost-rx tun_xmit"]; v > 0.1 {
		t.Errorf("vhost-rx S1: %.2f runs per frame sent to the wire, want about none", v)
	}
	if _, ok := perFrame["vhost-rx skb_consumed"]; ok {
		t.Error("vhost-rx ran a consume_skb hook beside tun_recvmsg")
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
