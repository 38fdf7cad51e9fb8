package kvm_test

// Tests of the whole KVM lab: real QEMU TCG hosts, real nested KVM VMs with
// vhost-net, real sshd in all four. One lab serves TestKVMLab's subtests
// (about 1.5 minutes on a 2-CPU machine, plus about 5 minutes the first
// time a machine builds the image); TestKVMLabKilledUp kills a `lab up`
// while its hosts boot (about 15 s).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
)

// wireDelay is the one-way delay of the test lab's wire. Under TCG a
// VM-to-VM ping takes 5-70 ms without it, so it has to be large to show.
const wireDelay = 40 * time.Millisecond

func TestKVMLab(t *testing.T) {
	l := labtest.UpKVM(t, lab.Options{WireDelay: wireDelay})
	t.Logf("kvm lab %s up: kernel %s, host boots %v", l.Name, l.KVM.Kernel, l.KVM.HostBoots)
	if l.Emulation == "" || !strings.Contains(mustRead(t, l.EnvFile), "emulation: ") {
		t.Errorf("neither lab.json nor env.yaml say the machines are emulated")
	}
	ctx := context.Background()
	clients := map[string]*ssh.Client{}

	parent := t
	t.Run("SSHWithCheckedHostKeys", func(t *testing.T) {
		for _, n := range l.Nodes {
			c, err := l.Dial(ctx, n.Name)
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			parent.Cleanup(func() { c.Close() }) // the later subtests use it
			clients[n.Name] = c
			if got := strings.TrimSpace(run(t, c, "hostname")); got != n.Hostname {
				t.Errorf("%s: hostname %q, want %q", n.Name, got, n.Hostname)
			}
		}
		// A key other than the one in known_hosts is refused.
		cfg, err := l.SSHClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		other, _ := ssh.NewPublicKey(pub)
		cfg.HostKeyCallback = ssh.FixedHostKey(other)
		if c, err := ssh.Dial("tcp", l.Nodes[0].MgmtIP.String()+":22", cfg); err == nil {
			c.Close()
			t.Error("ssh accepted a host key that is not the node's")
		}
		// OpenSSH with the lab's ssh_config (StrictHostKeyChecking yes).
		if _, err := exec.LookPath("ssh"); err == nil {
			out, err := exec.Command("ssh", "-F", l.SSHConfig, lab.ReceiverVM, "cat /proc/sys/kernel/hostname").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != l.Nodes[3].Hostname {
				t.Errorf("ssh -F %s receiver-vm: %v: %s", l.SSHConfig, err, out)
			}
		}
	})
	if len(clients) != 4 {
		t.Fatal("not every node answered SSH")
	}

	t.Run("VMToVMPingAcrossBridgesAndWire", func(t *testing.T) {
		rvm := l.Nodes[3]
		out := run(t, clients[lab.SenderVM], "ping -c 10 -i 0.2 -W 5 "+rvm.DataIP.String())
		rtt := parsePing(t, out)
		// Both VMs' MACs were learned by both hosts' br0: the frames crossed
		// the sender host's bridge, the wire and the receiver host's bridge.
		for _, host := range []string{lab.SenderHost, lab.ReceiverHost} {
			fdb := run(t, clients[host], "bridge fdb show br br0")
			for _, vm := range []string{lab.SenderVM, lab.ReceiverVM} {
				mac := strings.TrimSpace(run(t, clients[vm], "cat /sys/class/net/eth0/address"))
				if !strings.Contains(fdb, mac) {
					t.Errorf("%s's br0 has not learned %s's MAC %s:\n%s", host, vm, mac, fdb)
				}
			}
		}
		t.Run("WireDelayShowsInRTT", func(t *testing.T) {
			// Each ping crosses the wire twice. Judged on the mean: ping
			// times its RTTs with the nested VM's kvm-clock, which can stand
			// still for tens of ms while its TCG host is busy (stages
			// stamped with one nanosecond in issue 21's runs), so one ping
			// can read short — a quiet CI run saw min 49.8 ms, avg 99.3 ms
			// for 80 ms of delay. A wire without the delay reads a few ms
			// on a quiet machine (TestKVMWholePath: CJ minimum ~1 ms).
			if avg := rtt[1]; avg < 2*wireDelay {
				t.Errorf("mean RTT %s with a %s one-way wire delay, want at least %s", avg, wireDelay, 2*wireDelay)
			}
			t.Logf("RTT min/avg/max %s/%s/%s with %s each way (emulated machines)", rtt[0], rtt[1], rtt[2], wireDelay)
		})
	})

	t.Run("VMQEMUHoldsVhostNet", func(t *testing.T) {
		// The VM's QEMU (the only one in the host) holds /dev/vhost-net
		// and /dev/kvm, and its vhost worker is a thread named vhost-<pid>
		// (6.4+) or a kernel thread of that name (older kernels).
		const script = `p=$(pidof qemu-system-x86_64) || exit 3
echo "pid $p"
for f in /proc/$p/fd/*; do readlink "$f"; done
cat /proc/$p/task/*/comm
for c in /proc/$p/task/*/comm /proc/[0-9]*/comm; do read -r n < "$c" && [ "$n" = "vhost-$p" ] && echo "worker $c"; done
exit 0`
		for _, host := range []string{lab.SenderHost, lab.ReceiverHost} {
			out := run(t, clients[host], script)
			m := regexp.MustCompile(`(?m)^pid (\d+)$`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("%s: no QEMU pid:\n%s", host, out)
			}
			for _, want := range []string{"/dev/vhost-net", "/dev/kvm", "anon_inode:kvm-vm", "/dev/net/tun", "worker /proc/"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s: VM QEMU %s: no %q in its fds/threads:\n%s", host, m[1], want, out)
				}
			}
		}
	})

	t.Run("DownLeavesNothing", func(t *testing.T) {
		for _, c := range clients {
			c.Close()
		}
		if err := l.Down(ctx); err != nil {
			t.Fatal(err)
		}
		checkGone(t, l)
	})
}

// killedUpDir, set in the environment, makes the test binary a `lab up`
// controller (see TestMain) for TestKVMLabKilledUp to kill.
const killedUpDir = "PINGPATH_KVMTEST_UP_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(killedUpDir); dir != "" {
		_, err := lab.Up(context.Background(), lab.Options{
			Dir: dir, Name: filepath.Base(filepath.Dir(dir)), Hypervisor: lab.HypervisorKVM,
			WireDelay: time.Millisecond, Log: os.Stderr,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	labtest.Main(m)
}

// TestKVMLabKilledUp kills a `lab up` controller with SIGKILL once both
// hosts' QEMUs run, then checks that lab down removes everything.
func TestKVMLabKilledUp(t *testing.T) {
	labtest.RequireKVM(t)
	name := labtest.UniqueName()
	dir := filepath.Join(t.TempDir(), name, "lab")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), killedUpDir+"="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(10 * time.Minute) // a first image build
	for !exists(filepath.Join(dir, "run", "qemu-sender-host.pid")) || !exists(filepath.Join(dir, "run", "qemu-receiver-host.pid")) {
		select {
		case err := <-exited:
			t.Fatalf("lab up ended (%v) before the hosts' QEMUs ran:\n%s", err, out.String())
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("the hosts' QEMUs did not start:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(2 * time.Second) // booting
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	l, err := lab.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkGone(t, l)
}

// checkGone fails when anything of the lab is left: a process naming its
// directory, a root link, its wire namespace, a file other than the logs.
func checkGone(t *testing.T, l *lab.Lab) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), l.Dir+"/") {
			t.Errorf("process %s left: %s", filepath.Base(filepath.Dir(p)), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	for _, name := range l.RootLinks() {
		if link, err := netlink.LinkByName(name); err == nil && link.Attrs().Alias == l.RootAlias() {
			t.Errorf("root link %s left", name)
		}
	}
	if exists("/run/netns/" + l.WireNetns) {
		t.Errorf("namespace %s left", l.WireNetns)
	}
	ents, _ := os.ReadDir(l.Dir)
	for _, e := range ents {
		if e.Name() != "logs" {
			t.Errorf("file %s left in the lab directory", e.Name())
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// run runs a shell command over SSH and returns its output.
func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v:\n%s", cmd, err, out)
	}
	return string(out)
}

// parsePing checks ping's summary for no loss and returns min, avg, max.
func parsePing(t *testing.T, out string) [3]time.Duration {
	t.Helper()
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping lost packets:\n%s", out)
	}
	m := regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no RTT summary:\n%s", out)
	}
	var r [3]time.Duration
	for i := range r {
		ms, _ := strconv.ParseFloat(m[i+1], 64)
		r[i] = time.Duration(ms * float64(time.Millisecond))
	}
	return r
}
