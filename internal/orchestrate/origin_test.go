package orchestrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// TestRunOriginTools drives fake origin BCC scripts (same names, readiness
// lines and SIGINT behaviour as the real ones) and checks their real flags
// and log names.
func TestRunOriginTools(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	py := testenv.RequireProgram(t, "python3")
	td, _ := filepath.Abs("testdata")
	tools := fmt.Sprintf(`tools:
  python: %s
  kernel_icmp_rtt: %s/kernel_icmp_rtt.py
  icmp_drop_detector: %s/icmp_drop_detector.py
  tun_tx_to_kvm_irq: %s/tun_tx_to_kvm_irq.py
  kvm_vhost_tun_latency: %s/kvm_vhost_tun_latency_no_discovery.py
`, py, td, td, td, td)
	f := newFakeEnv(t, nil, tools)
	o := f.runOptions(t)
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusComplete {
		t.Fatalf("status %s: %+v", res.Manifest.Status, res.Manifest.Failures)
	}
	// S = 127.0.0.2 (sender VM), R = 127.0.0.1 (receiver VM).
	want := map[string]string{
		"send-vm-icmp.log":       "--src-ip 127.0.0.2 --dst-ip 127.0.0.1 --direction tx --disable-kernel-stacks",
		"recv-vm-icmp.log":       "--src-ip 127.0.0.2 --dst-ip 127.0.0.1 --interface lo --direction rx --disable-kernel-stacks",
		"send-host-icmp.log":     "--src-ip 127.0.0.2 --dst-ip 127.0.0.1 --rx-iface lo --tx-iface lo --verbose",
		"recv-host-icmp.log":     "--src-ip 127.0.0.2 --dst-ip 127.0.0.1 --rx-iface lo --tx-iface lo --verbose",
		"send-host-vhost-rx.log": "--device lo --src-ip 127.0.0.1 --dst-ip 127.0.0.2 --protocol icmp",
		"recv-host-vhost-rx.log": "--device lo --src-ip 127.0.0.2 --dst-ip 127.0.0.1 --protocol icmp",
		"send-host-kvm-tun.log":  "--device lo --flow proto=icmp,src=127.0.0.2,dst=127.0.0.1",
		"recv-host-kvm-tun.log":  "--device lo --flow proto=icmp,src=127.0.0.1,dst=127.0.0.2",
	}
	for file, args := range want {
		b, err := os.ReadFile(filepath.Join(o.OutDir, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		s := string(b)
		if !strings.Contains(s, "argv: "+args+"\n") {
			t.Errorf("%s: wrong flags:\n%s\nwant argv: %s", file, s, args)
		}
		// Stopped by SIGINT (KeyboardInterrupt), output unbuffered and kept.
		if !strings.Contains(s, "Detaching...") {
			t.Errorf("%s: not stopped with SIGINT or output lost:\n%s", file, s)
		}
		// Exactly one: timeout(1) without --foreground also signals its
		// process group, so the tool got a second SIGINT now and then
		// (1 in 25 here), in its summary.
		if !strings.Contains(s, "SIGINTs: 1\n") {
			t.Errorf("%s: not exactly one SIGINT:\n%s", file, s)
		}
	}
	for _, n := range res.Manifest.Nodes {
		for _, tr := range n.Tracers {
			cmd := strings.Join(tr.Command, " ")
			if !tr.Origin || tr.State != "ok" || !strings.Contains(cmd, "env PYTHONUNBUFFERED=1 timeout --foreground -s INT -k 10 ") {
				t.Errorf("%s: %+v", n.Role, tr)
			}
		}
	}
	if n := res.Manifest.Nodes[0]; n.Role != manifest.RoleReceiverVM || len(n.Tracers) != 1 {
		t.Fatalf("manifest nodes: %+v", res.Manifest.Nodes)
	}
	noProcessLeft(t, "fake_origin", 0)
	noProcessLeft(t, td+"/k", 0)
}
