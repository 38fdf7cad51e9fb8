package lab_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pingStats is what ping's summary says.
type pingStats struct {
	sent, received int
	min, avg, max  time.Duration
}

var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	pingRTT    = regexp.MustCompile(`rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/`)
)

func parsePing(t testing.TB, out []byte) pingStats {
	t.Helper()
	var s pingStats
	m := pingCounts.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no ping summary in:\n%s", out)
	}
	s.sent, _ = strconv.Atoi(string(m[1]))
	s.received, _ = strconv.Atoi(string(m[2]))
	if r := pingRTT.FindSubmatch(out); r != nil {
		ms := func(b []byte) time.Duration {
			f, _ := strconv.ParseFloat(string(b), 64)
			return time.Duration(f * float64(time.Millisecond))
		}
		s.min, s.avg, s.max = ms(r[1]), ms(r[2]), ms(r[3])
	}
	return s
}

// ping pings the receiver VM from the sender VM.
func ping(t testing.TB, ctx context.Context, l *lab.Lab, count int, interval string) (pingStats, []byte) {
	t.Helper()
	rvm, _ := l.Node(lab.ReceiverVM)
	out, err := l.Exec(ctx, lab.SenderVM, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", interval, "-W", "1", rvm.DataIP.String())
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) { // ping exits 1 when pings are lost
		t.Fatalf("ping: %v\n%s", err, out)
	}
	return parsePing(t, out), out
}

// openSSH runs `hostname` on a node with the OpenSSH client and returns its
// standard output, or its standard error with the error. (Only stdout is
// compared: root's shell start-up files on the machine may print to stderr.)
func openSSH(t *testing.T, ctx context.Context, l *lab.Lab, node string, extra ...string) ([]byte, error) {
	t.Helper()
	args := append([]string{"-F", l.SSHConfig}, extra...)
	args = append(args, node, "hostname")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

func goSSH(ctx context.Context, l *lab.Lab, node string) (string, error) {
	c, err := l.Dial(ctx, node)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output("hostname")
	return strings.TrimSpace(string(out)), err
}

// requireGone checks that nothing the lab made is left.
func requireGone(t *testing.T, l *lab.Lab, pids []int) {
	t.Helper()
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	for _, name := range l.RootLinks() {
		// Another lab may already have taken the index, and with it the
		// names; only a link still marked as this lab's is left behind.
		if link, err := netlink.LinkByName(name); err == nil && link.Attrs().Alias == l.RootAlias() {
			t.Errorf("root link %s left behind", name)
		}
	}
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !bytes.Contains(b, []byte(") Z ")) {
			t.Errorf("process %d left behind: %s", pid, b)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(l.Dir+"/")) {
			t.Errorf("process %s still mentions the lab directory: %q", e.Name(), b)
		}
	}
	for _, f := range []string{lab.StateFile, "env.yaml", "ssh_config", "known_hosts", "id_ed25519", "run"} {
		if _, err := os.Stat(filepath.Join(l.Dir, f)); err == nil {
			t.Errorf("%s left in the lab directory", f)
		}
	}
}

// daemonPids lists the lab's background processes from its pid files.
func daemonPids(t *testing.T, l *lab.Lab) []int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(l.Dir, "run", "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pids = append(pids, p)
	}
	return pids
}

// TestLab is the whole life of a lab with each VM link kind: up, SSH into
// every node with OpenSSH and with x/crypto/ssh (host keys checked), ping VM
// to VM, status, down, nothing left.
func TestLab(t *testing.T) {
	for _, link := range []string{lab.VMLinkTap, lab.VMLinkVeth} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			testenv.RequireProgram(t, "ssh")
			testenv.RequireProgram(t, "ping")
			ctx := ctxT(t)
			l := labtest.Up(t, lab.Options{VMLink: link})

			loaded, err := lab.Load(l.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.State != lab.StateUp || loaded.Name != l.Name || loaded.VMLink != link || loaded.Wire != lab.WireVeth {
				t.Fatalf("lab.json: state %q name %q link %q wire %q", loaded.State, loaded.Name, loaded.VMLink, loaded.Wire)
			}
			env, err := os.ReadFile(l.EnvFile)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"ssh: sender-vm", "ip: 198.18.2.1", "vnet_interface: vnet0", "config: " + l.SSHConfig} {
				if !bytes.Contains(env, []byte(want)) {
					t.Errorf("env.yaml lacks %q:\n%s", want, env)
				}
			}
			// What pingpath run reads must accept it as it is.
			parsed, err := envfile.Load(l.EnvFile)
			if err != nil {
				t.Fatalf("env.yaml is not a valid environment file: %v\n%s", err, env)
			}
			if parsed.Receiver.VM.IP != l.Nodes[3].DataIP.String() || parsed.SSH.KnownHosts != l.KnownHosts {
				t.Errorf("env.yaml parsed as %+v", parsed)
			}
			// It says what it is, for the run's manifest and the reports.
			if pl := parsed.Lab; pl == nil || pl.Kind != lab.HypervisorNetns || pl.VMLink != l.VMLink || pl.Wire != l.Wire {
				t.Errorf("env.yaml lab: %+v, want kind %s, vm link %s, wire %s", pl, lab.HypervisorNetns, l.VMLink, l.Wire)
			}

			for _, n := range l.Nodes {
				out, err := openSSH(t, ctx, l, n.Name)
				if err != nil {
					t.Fatalf("ssh -F %s %s: %v\n%s", l.SSHConfig, n.Name, err, out)
				}
				if got := strings.TrimSpace(string(out)); got != n.Hostname {
					t.Errorf("OpenSSH to %s: hostname %q, want %q", n.Name, got, n.Hostname)
				}
				host, err := goSSH(ctx, l, n.Name)
				if err != nil {
					t.Fatalf("x/crypto/ssh to %s: %v", n.Name, err)
				}
				if host != n.Hostname {
					t.Errorf("x/crypto/ssh to %s: hostname %q, want %q", n.Name, host, n.Hostname)
				}
			}

			st, out := ping(t, ctx, l, 20, "0.01")
			if st.received != 20 {
				t.Fatalf("VM to VM ping: %d of %d answered:\n%s", st.received, st.sent, out)
			}
			t.Logf("%s link: rtt min/avg/max %s/%s/%s", link, st.min, st.avg, st.max)

			nodes, daemons := l.Status(ctx)
			for _, s := range nodes {
				if !s.OK() {
					t.Errorf("status of %s: %+v", s.Node, s)
				}
			}
			wantDaemons := 0
			if link == lab.VMLinkTap {
				wantDaemons = 2
			}
			if len(daemons) != wantDaemons {
				t.Errorf("daemons %v, want %d", daemons, wantDaemons)
			}
			for name, pid := range daemons {
				if pid == 0 {
					t.Errorf("%s not running", name)
				}
			}

			// A session left open must not keep anything alive.
			c, err := l.Dial(ctx, lab.ReceiverVM)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if err := sess.Start("sleep 300"); err != nil {
				t.Fatal(err)
			}

			pids := daemonPids(t, l)
			if len(pids) != 4+wantDaemons {
				t.Fatalf("pid files %v, want %d", pids, 4+wantDaemons)
			}
			if err := l.Down(ctx); err != nil {
				t.Fatal(err)
			}
			requireGone(t, l, pids)
		})
	}
}

// TestWire checks the relay's impairments end to end: delay, loss, and a
// zero-impairment relay.
func TestWire(t *testing.T) {
	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		ctx := ctxT(t)
		l := labtest.Up(t, lab.Options{WireDelay: 2 * time.Millisecond})
		if l.Wire != lab.WireRelay || l.WireNetns == "" {
			t.Fatalf("wire %q netns %q, want a relay", l.Wire, l.WireNetns)
		}
		st, out := ping(t, ctx, l, 10, "0.02")
		if st.received != 10 || st.min < 4*time.Millisecond {
			t.Fatalf("2ms each way: want 10 answers with RTT >= 4ms:\n%s", out)
		}
		// The lower bound is the relay's promise; the upper one only
		// catches a grossly wrong delay, since a loaded machine (go test
		// runs packages in parallel) adds scheduling latency to every ping.
		t.Logf("2ms each way: min RTT %s", st.min)
		if st.min >= 14*time.Millisecond {
			t.Errorf("2ms each way: min RTT %s, want close to 4ms", st.min)
		}
	})
	t.Run("loss", func(t *testing.T) {
		t.Parallel()
		ctx := ctxT(t)
		l := labtest.Up(t, lab.Options{WireLoss: 50, WireSeed: 7})
		st, out := ping(t, ctx, l, 60, "0.02")
		// Both directions lose half: about a quarter is answered.
		if st.received == 0 || st.received >= st.sent*3/4 {
			t.Fatalf("50%% loss each way: %d of %d answered, want some but well under 75%%:\n%s", st.received, st.sent, out)
		}
	})
	t.Run("relay", func(t *testing.T) {
		t.Parallel()
		ctx := ctxT(t)
		l := labtest.Up(t, lab.Options{Wire: lab.WireRelay, VMLink: lab.VMLinkVeth})
		st, out := ping(t, ctx, l, 20, "0.01")
		if st.received != 20 {
			t.Fatalf("unimpaired relay: %d of 20 answered:\n%s", st.received, out)
		}
		if st.min > 2*time.Millisecond {
			t.Errorf("unimpaired relay: min RTT %s", st.min)
		}
	})
}

// TestWrongHostKey: a node whose host key is not the one in known_hosts is
// refused by both clients.
func TestWrongHostKey(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	l := labtest.Up(t, lab.Options{VMLink: lab.VMLinkVeth})
	// known_hosts that gives sender-vm's address the receiver VM's key.
	svm, _ := l.Node(lab.SenderVM)
	rvm, _ := l.Node(lab.ReceiverVM)
	f := strings.Fields(rvm.HostKey)
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrong, []byte(fmt.Sprintf("%s,%s %s %s\n", svm.Name, svm.MgmtIP, f[0], f[1])), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := openSSH(t, ctx, l, lab.SenderVM, "-o", "UserKnownHostsFile="+wrong)
	if err == nil || !bytes.Contains(out, []byte("Host key verification failed")) {
		t.Fatalf("OpenSSH with a wrong known host key: err %v, output:\n%s", err, out)
	}
	cfg, err := l.SSHClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostKeyCallback, err = knownhosts.New(wrong)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ssh.Dial("tcp", svm.MgmtIP.String()+":22", cfg)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		t.Fatalf("x/crypto/ssh with a wrong known host key: %v, want a key mismatch", err)
	}
	// And with the right file it works.
	if _, err := goSSH(ctx, l, lab.SenderVM); err != nil {
		t.Fatal(err)
	}
}

// TestUpTwice: a second up on the same directory, or with the same name,
// is a clear error and leaves the first lab alone.
func TestUpTwice(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	l := labtest.Up(t, lab.Options{VMLink: lab.VMLinkVeth})
	_, err := lab.Up(ctx, lab.Options{Dir: l.Dir, Name: labtest.UniqueName(), Binary: labtest.Binary(t)})
	if !errors.Is(err, lab.ErrExists) {
		t.Fatalf("up on an existing lab directory: %v, want ErrExists", err)
	}
	_, err = lab.Up(ctx, lab.Options{Dir: t.TempDir(), Name: l.Name, Binary: labtest.Binary(t)})
	if !errors.Is(err, lab.ErrExists) || !strings.Contains(err.Error(), l.Name) {
		t.Fatalf("up with the name of a running lab: %v, want ErrExists naming it", err)
	}
	if st, out := ping(t, ctx, l, 3, "0.01"); st.received != 3 {
		t.Fatalf("first lab broken by the failed ups:\n%s", out)
	}
}

// TestUpSameNameConcurrently: of two labs with one name brought up at the
// same moment, one wins and the other fails cleanly without touching it.
func TestUpSameNameConcurrently(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	ctx := ctxT(t)
	name := labtest.UniqueName()
	type result struct {
		l   *lab.Lab
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			l, err := lab.Up(ctx, lab.Options{Dir: t.TempDir(), Name: name, VMLink: lab.VMLinkVeth, Binary: labtest.Binary(t)})
			results <- result{l, err}
		}()
	}
	var winner *lab.Lab
	for range 2 {
		r := <-results
		switch {
		case r.err == nil && winner == nil:
			winner = r.l
			t.Cleanup(func() { _ = r.l.Down(context.Background()) })
		case r.err == nil:
			_ = r.l.Down(ctx)
			t.Fatal("both labs with the same name came up")
		case !errors.Is(r.err, lab.ErrExists):
			t.Errorf("the loser failed with %v, want ErrExists", r.err)
		}
	}
	if winner == nil {
		t.Fatal("neither lab came up")
	}
	if st, out := ping(t, ctx, winner, 3, "0.01"); st.received != 3 {
		t.Fatalf("the winning lab is broken:\n%s", out)
	}
}

// TestDownHalfBuilt: when sshd never comes up, Up fails; with
// KeepOnFailure the half-built lab stays and Down removes it, without it Up
// removes it by itself.
func TestDownHalfBuilt(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	ctx := ctxT(t)
	for _, keep := range []bool{true, false} {
		dir := t.TempDir()
		_, err := lab.Up(ctx, lab.Options{
			Dir: dir, Name: labtest.UniqueName(), Binary: labtest.Binary(t),
			Sshd: "/bin/false", ReadyTimeout: 300 * time.Millisecond, KeepOnFailure: keep,
		})
		if err == nil || !strings.Contains(err.Error(), "not ready") {
			t.Fatalf("up with a broken sshd: %v, want a readiness error", err)
		}
		if !keep {
			if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); err == nil {
				t.Fatal("failed up left lab.json behind")
			}
			continue
		}
		l, err := lab.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if l.State != lab.StateBuilding {
			t.Fatalf("state %q, want %q", l.State, lab.StateBuilding)
		}
		for _, ns := range l.Namespaces() {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
				t.Fatalf("half-built lab lacks namespace %s", ns)
			}
		}
		pids := daemonPids(t, l)
		if err := l.Down(ctx); err != nil {
			t.Fatal(err)
		}
		requireGone(t, l, pids)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := lab.Load(t.TempDir()); !errors.Is(err, lab.ErrNoLab) {
		t.Fatalf("empty dir: %v, want ErrNoLab", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, lab.StateFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Load(dir); err == nil || !strings.Contains(err.Error(), lab.StateFile) {
		t.Fatalf("corrupt lab.json: %v, want an error naming the file", err)
	}
}

func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	for _, o := range []lab.Options{
		{},
		{Dir: t.TempDir(), Name: "Bad_Name"},
		{Dir: t.TempDir(), VMLink: "virtio"},
		{Dir: t.TempDir(), Wire: "fiber"},
		{Dir: t.TempDir(), Wire: lab.WireVeth, WireDelay: time.Millisecond},
		{Dir: t.TempDir(), WireLoss: 101},
		{Dir: t.TempDir(), WireDelay: -time.Millisecond},
		{Dir: t.TempDir(), KVM: lab.KVMOptions{Bond: true}}, // a namespace lab
		{Dir: t.TempDir(), KVM: lab.KVMOptions{BCC: true}},
		{Dir: t.TempDir(), Hypervisor: lab.HypervisorKVM, KVM: lab.KVMOptions{Datapath: "linuxbridge"}},
		{Dir: t.TempDir(), Hypervisor: lab.HypervisorKVM, KVM: lab.KVMOptions{Overlay: "gre"}},
		{Dir: t.TempDir(), Hypervisor: lab.HypervisorKVM, Wire: lab.WireBridge, KVM: lab.KVMOptions{Bond: true}},
	} {
		if _, err := lab.Up(ctx, o); !errors.Is(err, lab.ErrOptions) {
			t.Errorf("Up(%+v): %v, want an option error", o, err)
		}
	}
}
