package orchestrate

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
	"github.com/pingpath/pingpath/internal/role"
)

// labRun is a lab plus run options that drive it with a real pingpath.
type labRun struct {
	lab  *lab.Lab
	bin  string
	opts RunOptions
}

func upLab(t testing.TB) *labRun {
	l := labtest.Up(t, lab.Options{})
	env, err := envfile.Load(l.EnvFile)
	if err != nil {
		t.Fatalf("the lab's env.yaml: %v", err)
	}
	// The lab's nodes share this machine's filesystem: push into the
	// test's own directory, removed with it.
	env.SSH.RemoteDir = filepath.Join(t.TempDir(), "remote")
	bin := labtest.Binary(t)
	return &labRun{lab: l, bin: bin, opts: RunOptions{
		Options: Options{Env: env, ConfigFile: l.EnvFile,
			Dial:   SSHDialer(sshremote.Options{KeepAlive: time.Second}),
			Binary: bin, Tracers: builtTracers(t, bin)},
		Count: 10, Interval: 100 * time.Millisecond, ReadyTimeout: 20 * time.Second,
	}}
}

// builtTracers asks the binary which tracers it has (the CLI does the same
// from its own command tree).
func builtTracers(t testing.TB, bin string) []string {
	var out []string
	for _, tool := range []string{"vm", "host", "vhost-rx", "vhost-tx"} {
		if exec.Command(bin, "trace", tool, "--help").Run() == nil {
			out = append(out, tool)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no tracers", bin)
	}
	return out
}

func (lr *labRun) outDir(t testing.TB) string { return filepath.Join(t.TempDir(), "run") }

// netnsProcs lists processes in the lab node's namespace whose command
// line contains marker.
func netnsProcs(t testing.TB, netns, marker string) []string {
	return labtest.Processes(t, netns, func(cl string) bool { return strings.Contains(cl, marker) })
}

// noTracerLeft fails when a `pingpath trace` process still runs in any lab
// namespace after within.
func (lr *labRun) noTracerLeft(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var left []string
		for _, n := range lr.lab.Nodes {
			left = append(left, netnsProcs(t, n.Netns, " trace ")...)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracers left running in the lab: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestLabRunComplete(t *testing.T) {
	lr := upLab(t)
	o := lr.opts
	o.OutDir = lr.outDir(t)
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Status != StatusComplete {
		t.Fatalf("status %s: %+v", m.Status, m.Failures)
	}
	if m.Ping.Sent != 10 || m.Ping.Received != 10 {
		t.Fatalf("ping %+v", m.Ping)
	}
	// The configured interfaces' MTU is recorded (compare shows differences).
	for _, n := range m.Nodes {
		if !role.IsVM(n.Role) && (n.Facts["nic eth0 mtu"] == "" || n.Facts["nic vnet0 mtu"] == "") {
			t.Errorf("%s: no NIC facts in %v", n.Role, n.Facts)
		}
	}
	if m.Lab == nil || m.Lab.Kind != "netns" || m.Emulation != "" {
		t.Errorf("manifest lab %+v, emulation %q: want the namespace lab from env.yaml", m.Lab, m.Emulation)
	}
	started := 0
	for _, n := range m.Nodes {
		if n.Kernel == "" || n.Hostname == "" {
			t.Errorf("%s: no facts", n.Role)
		}
		for _, tr := range n.Tracers {
			if tr.State == "not-started" {
				t.Logf("%s %s not in this build", n.Role, tr.Tool)
				continue
			}
			started++
			if tr.State != "ok" || len(tr.Probes) == 0 {
				t.Errorf("%s %s: %+v", n.Role, tr.Tool, tr)
			}
			if c := tr.Cost; c == nil || c.WallNS == 0 || c.UserNS == 0 || c.MaxCPUPercent == 0 {
				t.Errorf("%s %s: cost %+v", n.Role, tr.Tool, c)
			} else {
				t.Logf("%s %s cost: %.2f %% of a CPU (peak %.2f): BPF %d µs in %d runs, process %d µs, start %d ms",
					n.Role, tr.Tool, c.CPUPercent, c.PeakCPUPercent, c.BPFNS/1000, c.BPFRuns, c.UserNS/1000, c.StartNS/1_000_000)
			}
			f, err := os.Open(filepath.Join(o.OutDir, tr.File))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			lines, pings, trailer := 0, 0, false
			ids := map[int]bool{}
			for sc.Scan() {
				lines++
				pings += strings.Count(sc.Text(), `"type":"ping"`)
				trailer = trailer || strings.Contains(sc.Text(), `"type":"trailer"`)
				var r struct {
					Type string `json:"type"`
					ID   int    `json:"id"`
				}
				if json.Unmarshal(sc.Bytes(), &r) == nil && r.Type == "ping" {
					ids[r.ID] = true
				}
			}
			// The manifest names ping's ICMP id: the one the sender VM saw.
			if n.Role == manifest.RoleSenderVM && tr.Tool == "vm" && (len(ids) != 1 || !ids[m.Ping.ICMPID]) {
				t.Errorf("manifest icmp_id %d, the sender VM tracer saw ids %v", m.Ping.ICMPID, ids)
			}
			f.Close()
			if !trailer {
				t.Errorf("%s: no trailer (%d lines)", tr.File, lines)
			}
			// The path tracers saw the pings.
			if (tr.Tool == "vm" || tr.Tool == "host") && pings < 10 {
				t.Errorf("%s: %d ping records, want 10", tr.File, pings)
			}
		}
	}
	if started < 4 {
		t.Fatalf("only %d tracers started", started)
	}
	t.Logf("timings %+v; overhead (total - ping) %d ms", m.Timings, m.Timings.TotalMS-m.Timings.PingMS)
	lr.noTracerLeft(t, 0)
}

// TestLabFailures shares one lab between the failure cases.
func TestLabFailures(t *testing.T) {
	lr := upLab(t)

	t.Run("wrong host key", func(t *testing.T) {
		kh, err := os.ReadFile(lr.lab.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		// Give receiver-vm the sender-vm's key.
		rv, _ := lr.lab.Node(lab.ReceiverVM)
		sv, _ := lr.lab.Node(lab.SenderVM)
		bad := strings.ReplaceAll(string(kh), strings.TrimSpace(keyOf(rv.HostKey)), strings.TrimSpace(keyOf(sv.HostKey)))
		if bad == string(kh) {
			t.Fatalf("could not tamper with %s", lr.lab.KnownHosts)
		}
		p := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		env := *lr.opts.Env
		env.SSH.KnownHosts = p
		o := lr.opts.Options
		o.Env = &env
		rep := Check(context.Background(), o)
		fails := 0
		for _, r := range rep.Rows {
			if r.Status == CheckFail {
				fails++
				if r.Role != manifest.RoleReceiverVM || !strings.Contains(r.Detail, "HOST KEY MISMATCH") {
					t.Errorf("unexpected failure %+v", r)
				}
			}
		}
		if fails != 1 {
			t.Fatalf("%d failures, want the receiver-vm host key", fails)
		}
	})

	t.Run("jump host", func(t *testing.T) {
		// Reach the receiver VM through the sender host (an ssh_config
		// alias as the jump), with real sshd forwarding.
		env := *lr.opts.Env
		env.Receiver.VM.Options.Jump = lab.SenderHost
		o := lr.opts.Options
		o.Env, o.Binary = &env, ""
		rep := Check(context.Background(), o)
		for _, r := range rep.Rows {
			if r.Status == CheckFail {
				t.Errorf("%+v", r)
			}
		}
		// The receiver VM's sshd saw a connection from the sender host.
		sh, _ := lr.lab.Node(lab.SenderHost)
		b, err := os.ReadFile(lr.lab.LogFile("sshd-" + lab.ReceiverVM))
		if err != nil || !strings.Contains(string(b), "Connection from "+sh.MgmtIP.String()+" ") {
			t.Fatalf("receiver-vm was not reached through the sender host (%v):\n%s", err, b)
		}
	})

	t.Run("unreachable node", func(t *testing.T) {
		env := *lr.opts.Env
		// An address on the lab's management network that nobody has.
		gw := lr.lab.MgmtGateway.As4()
		gw[3] = 250
		env.Receiver.Host.SSH = "root@" + strings.Join([]string{strconv.Itoa(int(gw[0])), strconv.Itoa(int(gw[1])), strconv.Itoa(int(gw[2])), "250"}, ".")
		env.Receiver.Host.Options.ConnectTimeout = "2s"
		o := lr.opts
		o.Env = &env
		o.OutDir = lr.outDir(t)
		start := time.Now()
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("took %s to give up on an unreachable node (timeout 2s)", d)
		}
		if res.Manifest.Status != StatusFailed || !strings.Contains(res.Err.Error(), "receiver-host") {
			t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
		}
		t.Logf("error: %v", res.Err)
	})

	t.Run("interrupted", func(t *testing.T) {
		o := lr.opts
		o.OutDir = lr.outDir(t)
		o.Count = 100
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := runUntilPings(t, ctx, o, 3)
		cancel()
		res := <-done
		m := res.Manifest
		if !res.Interrupted || m.Status != StatusPartial {
			t.Fatalf("interrupted %v status %s", res.Interrupted, m.Status)
		}
		for _, n := range m.Nodes {
			for _, tr := range n.Tracers {
				if tr.State != "ok" && tr.State != "not-started" {
					t.Errorf("%s %s: %s %s", n.Role, tr.Tool, tr.State, tr.Error)
				}
			}
		}
		lr.noTracerLeft(t, 0)
	})

	t.Run("tracers over --max-cpu", func(t *testing.T) {
		// A UDP flood from the sender VM through both hosts while the
		// tracers may cost only 0.02 % of a CPU: they detach themselves,
		// ping goes on, and the run ends partial, naming each one and why.
		o := lr.opts
		o.OutDir = lr.outDir(t)
		o.Count, o.Interval = 30, 100*time.Millisecond
		o.MaxCPU = 0.02
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rv, _ := lr.lab.Node(lab.ReceiverVM)
		flooded := make(chan error, 1)
		go func() {
			_, err := labtest.UDPFlood(ctx, lr.lab, lab.SenderVM, netip.AddrPortFrom(rv.DataIP, 9))
			flooded <- err
		}()
		res, err := Run(context.Background(), o)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := <-flooded; err != nil {
			t.Fatal(err)
		}
		m := res.Manifest
		if m.Status != StatusPartial || res.Err == nil || !strings.Contains(res.Err.Error(), "--max-cpu") {
			t.Fatalf("status %s err %v: want partial, naming --max-cpu", m.Status, res.Err)
		}
		if m.Ping.Sent != 30 {
			t.Errorf("ping %+v: want all 30 sent", m.Ping)
		}
		detached := 0
		for _, n := range m.Nodes {
			for _, tr := range n.Tracers {
				if tr.State == "not-started" {
					continue
				}
				if tr.Cost == nil {
					t.Errorf("%s %s: no cost in the manifest", n.Role, tr.Tool)
					continue
				}
				if tr.State == "detached" {
					detached++
					if tr.Cost.PeakCPUPercent <= o.MaxCPU || !strings.Contains(tr.Error, "--max-cpu 0.02 %") {
						t.Errorf("%s %s detached: %s, cost %+v", n.Role, tr.Tool, tr.Error, *tr.Cost)
					}
				} else if tr.State != "ok" {
					t.Errorf("%s %s: %s %s", n.Role, tr.Tool, tr.State, tr.Error)
				}
			}
		}
		named := 0
		for _, f := range m.Failures {
			if strings.Contains(f.Error, "detached itself") {
				named++
			}
		}
		if detached == 0 || named != detached {
			t.Fatalf("%d tracers detached, %d failures name it: %+v", detached, named, m.Failures)
		}
		t.Logf("%d tracers detached; first failure: %v", detached, res.Err)
		lr.noTracerLeft(t, 0)
	})

	t.Run("sshd killed mid-run", func(t *testing.T) {
		o := lr.opts
		o.OutDir = lr.outDir(t)
		o.Count, o.Interval = 40, 100*time.Millisecond
		done := runUntilPings(t, context.Background(), o, 5)
		rh, _ := lr.lab.Node(lab.ReceiverHost)
		killed := 0
		for _, p := range netnsProcs(t, rh.Netns, "sshd") {
			pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		if killed == 0 {
			t.Fatal("no sshd found in the receiver host")
		}
		m := (<-done).Manifest
		checkLost(t, m, manifest.RoleReceiverHost)
		if m.Ping.Received < 30 {
			t.Errorf("ping should go on through the receiver host's data path: %+v", m.Ping)
		}
		// Its tracers lost their stdin with sshd: they end by themselves.
		lr.noTracerLeft(t, 10*time.Second)
	})
}

// keyOf is the "type base64" part of an authorized_keys line.
func keyOf(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}

// BenchmarkLabRunOverhead measures a run's wall time minus ping's own
// time (target ≤ 3 s on the lab).
func BenchmarkLabRunOverhead(b *testing.B) {
	lr := upLab(b)
	run := func() (time.Duration, *manifest.Manifest) {
		o := lr.opts
		o.OutDir = lr.outDir(b)
		o.Count, o.Interval = 5, 100*time.Millisecond
		start := time.Now()
		res, err := Run(context.Background(), o)
		if err != nil || res.Manifest.Status != StatusComplete {
			b.Fatalf("%v %+v", err, res)
		}
		return time.Since(start), res.Manifest
	}
	// The first run pushes the binary (once per build and node); the runs
	// measured find it there.
	d, m := run()
	b.Logf("first run (pushes the binary): total %s, timings %+v", d, m.Timings)
	b.ResetTimer()
	var over, strict, total time.Duration
	var overs, connects, starts, stops []time.Duration
	for i := 0; i < b.N; i++ {
		d, m := run()
		total += d
		// ping's step includes its own process start; the strict figure
		// subtracts only the pinging itself.
		o := d - time.Duration(m.Timings.PingMS)*time.Millisecond
		over += o
		strict += d - 4*100*time.Millisecond
		overs = append(overs, o)
		connects = append(connects, time.Duration(m.Timings.ConnectMS)*time.Millisecond)
		starts = append(starts, time.Duration(m.Timings.StartMS)*time.Millisecond)
		stops = append(stops, time.Duration(m.Timings.StopMS)*time.Millisecond)
		b.Logf("run %d: total %s, timings %+v", i, d, m.Timings)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return ds[len(ds)/2].Seconds()
	}
	b.ReportMetric(over.Seconds()/float64(b.N), "overhead-s/run")
	b.ReportMetric(median(overs), "median-overhead-s")
	b.ReportMetric(strict.Seconds()/float64(b.N), "strict-overhead-s/run")
	b.ReportMetric(total.Seconds()/float64(b.N), "wall-s/run")
	b.ReportMetric(median(connects), "median-connect-s")
	b.ReportMetric(median(starts), "median-start-s")
	b.ReportMetric(median(stops), "median-stop-s")
}
