package orchestrate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestRunComplete(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, nil, "")
	o := f.runOptions(t)
	analyzed := ""
	o.Analyze = func(_ context.Context, dir string) error { analyzed = dir; return nil }
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Status != StatusComplete || res.Err != nil {
		t.Fatalf("status %s err %v failures %+v", m.Status, res.Err, m.Failures)
	}
	if analyzed != o.OutDir {
		t.Fatalf("analysis not run on the run directory")
	}
	back, err := manifest.Read(o.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Status != StatusComplete || back.Ping.Sent != 3 || back.Ping.Received != 3 {
		t.Fatalf("manifest on disk: %+v", back.Ping)
	}
	want := map[string][]string{
		manifest.RoleReceiverVM:   {"vm"},
		manifest.RoleReceiverHost: {"host", "vhost-rx", "vhost-tx"},
		manifest.RoleSenderHost:   {"host", "vhost-rx", "vhost-tx"},
		manifest.RoleSenderVM:     {"vm"},
	}
	for _, n := range back.Nodes {
		if n.Kernel == "" || n.Facts["cpus"] == "" {
			t.Errorf("%s: facts missing: %+v", n.Role, n)
		}
		if len(n.Tracers) != len(want[n.Role]) {
			t.Fatalf("%s: tracers %+v", n.Role, n.Tracers)
		}
		for i, tr := range n.Tracers {
			if tr.Tool != want[n.Role][i] || tr.State != "ok" || tr.ExitCode == nil || *tr.ExitCode != 0 {
				t.Errorf("%s: tracer %+v", n.Role, tr)
			}
			if len(tr.Probes) != 2 || tr.Probes[0] != "s1=tracepoint:net/netif_receive_skb" {
				t.Errorf("%s %s: probes %v", n.Role, tr.Tool, tr.Probes)
			}
			b, err := os.ReadFile(filepath.Join(o.OutDir, tr.File))
			if err != nil || !strings.Contains(string(b), `"type":"header"`) || !strings.Contains(string(b), `"type":"trailer"`) {
				t.Errorf("%s: %s: %q %v", n.Role, tr.File, b, err)
			}
			if tr.File != n.Role+"."+tr.Tool+".jsonl" {
				t.Errorf("file name %s", tr.File)
			}
			// The ready line went to the stderr log (the pid line did not).
			b, _ = os.ReadFile(filepath.Join(o.OutDir, tr.Stderr))
			if !strings.HasPrefix(string(b), "ready tool=") {
				t.Errorf("%s: stderr log %q", tr.Stderr, b)
			}
		}
	}
	ping, _ := os.ReadFile(filepath.Join(o.OutDir, PingFile))
	if !strings.Contains(string(ping), "3 packets transmitted, 3 received") {
		t.Fatalf("ping.log: %s", ping)
	}
	if _, err := os.Stat(filepath.Join(o.OutDir, "env.yaml")); err != nil {
		t.Fatal("environment file not copied into the run directory")
	}
	args := f.tracerArgs(t)
	if len(args["vm"]) != 2 || len(args["host"]) != 2 || len(args["vhost-rx"]) != 2 || len(args["vhost-tx"]) != 2 {
		t.Fatalf("tracers started: %v", args)
	}
	joined := strings.Join(args["vm"], "\n")
	for _, w := range []string{"--direction rx --interface lo", "--direction tx", "--src-ip 127.0.0.2 --dst-ip 127.0.0.1", "--format json --stop-on-stdin-eof --max-duration"} {
		if !strings.Contains(joined, w) {
			t.Errorf("vm tracer args lack %q: %v", w, args["vm"])
		}
	}
	if !strings.Contains(args["host"][0], "--vm-interface lo --phy-interface lo") {
		t.Errorf("host args %v", args["host"])
	}
	noProcessLeft(t, "fake-pingpath", 0)
	noProcessLeft(t, filepath.Dir(o.OutDir), 0)

	// A second run to a new directory skips the push (same checksum).
	o2 := f.runOptions(t)
	rec := newRecorder()
	o2.Progress = rec
	if res, err := Run(context.Background(), o2); err != nil || res.Manifest.Status != StatusComplete {
		t.Fatalf("second run: %v %+v", err, res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rec.waitFor(t, "pushed already there", ctx)

	// The same directory is refused: runs are never overwritten.
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("reusing a run directory: %v", err)
	}
}

func TestRunTracerNeverReady(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, map[string]remotetest.Options{
		manifest.RoleReceiverHost: {Env: []string{"FAKE_HANG=vhost-tx"}},
	}, "")
	o := f.runOptions(t)
	// Long enough that the other (fake) tracers are ready in time on a
	// loaded machine (at 500 ms one of them missed it at load 18), short
	// enough for the hung one to be given up quickly.
	o.ReadyTimeout = 3 * time.Second
	start := time.Now()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Status != StatusPartial || res.Err == nil {
		t.Fatalf("status %s err %v", m.Status, res.Err)
	}
	msg := res.Err.Error()
	if !strings.Contains(msg, "vhost-tx on receiver-host") || !strings.Contains(msg, "no ready line within 3s") {
		t.Fatalf("error does not name the node and tool: %v", msg)
	}
	// The hung tracer was stopped (escalated to a kill) and nothing remains.
	if d := time.Since(start); d > 25*time.Second {
		t.Fatalf("run took %s", d)
	}
	noProcessLeft(t, "fake-pingpath", 3*time.Second)
	if m.Ping.Received != 3 {
		t.Fatalf("ping should still have run: %+v", m.Ping)
	}
}

func TestRunTracerFailsAtStart(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, map[string]remotetest.Options{
		manifest.RoleSenderHost: {Env: []string{"FAKE_EXIT=host"}},
	}, "")
	res, err := Run(context.Background(), f.runOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusPartial || !strings.Contains(res.Err.Error(), "operation not permitted") {
		t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
	}
}

// TestRunTracerKilled: a tracer killed on its node after it was ready is
// reported as killed by its signal, not with its ready line as the error.
func TestRunTracerKilled(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, map[string]remotetest.Options{
		manifest.RoleReceiverVM: {Env: []string{"FAKE_KILL_AFTER_READY=vm"}},
	}, "")
	res, err := Run(context.Background(), f.runOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusPartial {
		t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
	}
	for _, n := range res.Manifest.Nodes {
		for _, tr := range n.Tracers {
			if n.Role != manifest.RoleReceiverVM {
				continue
			}
			if tr.State != "failed" || !strings.Contains(tr.Error, "killed by SIGKILL") || strings.Contains(tr.Error, "ready") {
				t.Errorf("killed tracer: state %s, error %q", tr.State, tr.Error)
			}
		}
	}
}

func TestRunNodeLostMidRun(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, nil, "")
	o := f.runOptions(t)
	o.Count = 15
	done := runUntilPings(t, context.Background(), o, 2)
	f.servers[manifest.RoleReceiverHost].DropConnections()
	m := (<-done).Manifest
	checkLost(t, m, manifest.RoleReceiverHost)
	if m.Ping.Received < 10 {
		t.Errorf("ping should go on: %+v", m.Ping)
	}
	// The lost node's tracers saw stdin EOF and exited by themselves.
	noProcessLeft(t, "fake-pingpath", 5*time.Second)
}

func TestRunInterrupted(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := newFakeEnv(t, nil, "")
	o := f.runOptions(t)
	o.Count = 50
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runUntilPings(t, ctx, o, 2)
	cancel()
	start := time.Now()
	res := <-done
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stopping after Ctrl-C took %s", d)
	}
	m := res.Manifest
	if !res.Interrupted || m.Status != StatusPartial {
		t.Fatalf("interrupted %v status %s", res.Interrupted, m.Status)
	}
	for _, n := range m.Nodes {
		for _, tr := range n.Tracers {
			if tr.State != "ok" {
				t.Errorf("%s %s: %s %s", n.Role, tr.Tool, tr.State, tr.Error)
			}
			b, _ := os.ReadFile(filepath.Join(o.OutDir, tr.File))
			if !strings.Contains(string(b), `"type":"trailer"`) {
				t.Errorf("%s: data not kept: %q", tr.File, b)
			}
		}
	}
	ping, _ := os.ReadFile(filepath.Join(o.OutDir, PingFile))
	if !strings.Contains(string(ping), "packets transmitted") {
		t.Errorf("ping was not stopped with SIGINT (no summary): %s", ping)
	}
	if _, err := manifest.Read(o.OutDir); err != nil {
		t.Fatal(err)
	}
	noProcessLeft(t, "fake-pingpath", 3*time.Second)
}

func TestRunUnreachableNode(t *testing.T) {
	f := newFakeEnv(t, nil, "")
	f.servers[manifest.RoleSenderHost].Close()
	o := f.runOptions(t)
	start := time.Now()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusFailed || !strings.Contains(res.Err.Error(), "sender-host") {
		t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("too slow to report an unreachable node")
	}
	if _, err := manifest.Read(o.OutDir); err != nil {
		t.Fatal("a failed run must still write its manifest:", err)
	}
}

// TestRunReceiversFirst: the sender side's tracers start only once every
// receiver-side tracer is ready, although their sessions open at once.
func TestRunReceiversFirst(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	slow := remotetest.Options{Env: []string{"FAKE_READY_DELAY=0.5"}}
	f := newFakeEnv(t, map[string]remotetest.Options{
		manifest.RoleReceiverVM: slow, manifest.RoleReceiverHost: slow,
	}, "")
	res, err := Run(context.Background(), f.runOptions(t))
	if err != nil || res.Manifest.Status != StatusComplete {
		t.Fatalf("%v %+v", err, res.Manifest.Failures)
	}
	st := f.startTimes(t)
	var lastReceiver, firstSender int64
	for _, r := range []string{manifest.RoleReceiverVM, manifest.RoleReceiverHost} {
		for _, ns := range st[r] {
			lastReceiver = max(lastReceiver, ns)
		}
	}
	for _, r := range []string{manifest.RoleSenderVM, manifest.RoleSenderHost} {
		for _, ns := range st[r] {
			if firstSender == 0 || ns < firstSender {
				firstSender = ns
			}
		}
	}
	if len(st) != 4 || firstSender < lastReceiver+int64(450*time.Millisecond) {
		t.Fatalf("sender tracers started %s after the last receiver one began, want ≥ its 0.5 s to ready (%v)",
			time.Duration(firstSender-lastReceiver), st)
	}
}

// On emulated machines (the KVM lab's env.yaml says emulation:) the tracers
// get ten times as long to become ready and to stop; what the user set is
// kept.
func TestRunDefaultsEmulated(t *testing.T) {
	for _, c := range []struct {
		emulation          string
		ready, wantRdy     time.Duration
		wantGrace, wantMax time.Duration
	}{
		{"", 0, 30 * time.Second, 5 * time.Second, 0},
		{"emulated: QEMU TCG hosts", 0, 5 * time.Minute, 50 * time.Second, 5 * time.Minute},
		{"emulated: QEMU TCG hosts", 40 * time.Second, 40 * time.Second, 50 * time.Second, 5 * time.Minute},
	} {
		o := &RunOptions{Options: Options{Env: &envfile.Environment{Emulation: c.emulation,
			Measurement: envfile.Measurement{PingCount: 1, Interval: "1s"}}}, ReadyTimeout: c.ready}
		if err := o.defaults(); err != nil {
			t.Fatal(err)
		}
		if o.ReadyTimeout != c.wantRdy || o.StopGrace != c.wantGrace || c.wantMax != 0 && o.MaxDurationMargin != c.wantMax {
			t.Errorf("emulation %q, --ready-timeout %s: ready timeout %s, stop grace %s, max-duration margin %s; want %s, %s, %s",
				c.emulation, c.ready, o.ReadyTimeout, o.StopGrace, o.MaxDurationMargin, c.wantRdy, c.wantGrace, c.wantMax)
		}
	}
}

// A node allowed a long connect_timeout (the KVM lab's 60 s) is allowed as
// long to answer keepalives; 5 s stays the floor.
func TestKeepAliveFollowsConnectTimeout(t *testing.T) {
	for ct, want := range map[time.Duration]time.Duration{0: 5 * time.Second, 10 * time.Second: 5 * time.Second, time.Minute: 20 * time.Second} {
		if got := keepAliveFor(ct); got != want {
			t.Errorf("connect_timeout %s: keepalive every %s, want %s", ct, got, want)
		}
	}
}

// On emulated machines the tracers' default --max-cpu is scaled like the
// timeouts (a TCG guest's CPU time is not a production host's); a value
// the user set is kept, and real machines keep the tracers' default.
func TestMaxCPUEmulated(t *testing.T) {
	for _, c := range []struct {
		emulation string
		set, want float64
	}{
		{"", 0, 0},
		{"emulated: QEMU TCG hosts", 0, emulatedMaxCPU},
		{"emulated: QEMU TCG hosts", 2, 2},
	} {
		o := &Options{Env: &envfile.Environment{Emulation: c.emulation}}
		if got := o.tracerMaxCPU(c.set); got != c.want {
			t.Errorf("emulation %q, --max-cpu %g: tracers get %g, want %g", c.emulation, c.set, got, c.want)
		}
	}
}

// TracedNodes limits the tracers to the named nodes (the others recorded as
// not started, the run still complete), and empty runs none: ping alone,
// the untraced baseline of an observer-effect measurement.
func TestRunTracedNodes(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	for _, c := range []struct {
		nodes []string
		want  map[string]int // tracers started per tool
	}{
		{[]string{manifest.RoleSenderHost}, map[string]int{"host": 1, "vhost-rx": 1, "vhost-tx": 1}},
		{[]string{manifest.RoleReceiverVM}, map[string]int{"host": 0, "vhost-rx": 0, "vhost-tx": 0, "vm": 1}},
		{[]string{}, map[string]int{"host": 0, "vhost-rx": 0, "vhost-tx": 0, "vm": 0}},
	} {
		f := newFakeEnv(t, nil, "")
		o := f.runOptions(t)
		o.TracedNodes = c.nodes
		res, err := Run(context.Background(), o)
		if err != nil || res.Manifest.Status != StatusComplete {
			t.Fatalf("traced nodes %v: %v %+v", c.nodes, err, res.Manifest.Failures)
		}
		if p := res.Manifest.Ping; p.Sent != 3 || p.Received != 3 {
			t.Errorf("traced nodes %v: ping %+v", c.nodes, p)
		}
		args := f.tracerArgs(t)
		for tool, n := range c.want {
			if len(args[tool]) != n {
				t.Errorf("traced nodes %v: %d %s tracers started, want %d: %v", c.nodes, len(args[tool]), tool, n, args[tool])
			}
		}
		for _, n := range res.Manifest.Nodes {
			for _, tr := range n.Tracers {
				traced := slices.Contains(c.nodes, n.Role)
				if got := tr.State == "ok"; got != traced {
					t.Errorf("traced nodes %v: %s %s state %s (%s)", c.nodes, n.Role, tr.Tool, tr.State, tr.Error)
				}
				if !traced && !strings.Contains(tr.Error, "--traced-nodes") {
					t.Errorf("traced nodes %v: %s %s not started without saying why: %q", c.nodes, n.Role, tr.Tool, tr.Error)
				}
			}
		}
	}
}
