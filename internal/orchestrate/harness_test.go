package orchestrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
)

// fakeEnv is four in-process SSH servers standing in for the four nodes,
// all running commands on this machine, with an env.yaml pointing at them.
type fakeEnv struct {
	servers map[string]*remotetest.Server
	cfgFile string
	env     *envfile.Environment
	argsDir string
}

var roles = []string{manifest.RoleSenderVM, manifest.RoleSenderHost, manifest.RoleReceiverHost, manifest.RoleReceiverVM}

// newFakeEnv starts the servers; opts tunes single nodes; extra is appended
// to the YAML (tools:, measurement:).
func newFakeEnv(t *testing.T, opts map[string]remotetest.Options, extra string) *fakeEnv {
	t.Helper()
	dir := t.TempDir()
	f := &fakeEnv{servers: map[string]*remotetest.Server{}, argsDir: filepath.Join(dir, "args")}
	if err := os.Mkdir(f.argsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		o := opts[r]
		o.Env = append(o.Env, "FAKE_ARGS_DIR="+f.argsDir, "ROLE="+r)
		f.servers[r] = remotetest.New(t, o)
	}
	node := func(r string) string {
		s := f.servers[r]
		return fmt.Sprintf(`ssh: tester@127.0.0.1:%d
    ssh_options: {identity_file: %s, known_hosts: %s, remote_dir: %s}`, s.Port, s.IdentityFile, s.KnownHostsFile, filepath.Join(dir, "remote-"+r))
	}
	yaml := fmt.Sprintf(`environment: fake
ssh:
  agent: false
sender:
  vm:
    %s
    ip: 127.0.0.2
  host:
    %s
    vnet_interface: lo
    phy_interface: lo
receiver:
  vm:
    %s
    ip: 127.0.0.1
    interface: lo
  host:
    %s
    vnet_interface: lo
    phy_interface: lo
measurement:
  ping_count: 3
  interval: 200ms
%s`, node(manifest.RoleSenderVM), node(manifest.RoleSenderHost), node(manifest.RoleReceiverVM), node(manifest.RoleReceiverHost), extra)
	f.cfgFile = filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(f.cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := envfile.Load(f.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	f.env = env
	return f
}

func (f *fakeEnv) runOptions(t *testing.T) RunOptions {
	bin, err := filepath.Abs("testdata/fake-pingpath.sh")
	if err != nil {
		t.Fatal(err)
	}
	return RunOptions{
		Options: Options{Env: f.env, ConfigFile: f.cfgFile, Dial: SSHDialer(sshremote.Options{KeepAlive: 500 * time.Millisecond}),
			Binary: bin},
		OutDir: filepath.Join(t.TempDir(), "run"),
		// Healthy fake tracers are ready in milliseconds; the margin is for
		// a loaded machine (5 s was missed once at load 30). Tests of a
		// tracer that never gets ready set their own.
		ReadyTimeout: 20 * time.Second,
		StopGrace:    2 * time.Second,
		StopTerm:     time.Second,
	}
}

// argsFiles returns the trimmed contents of the fake tracers' records in
// argsDir by the name's first dot-separated part: the ".start" files
// (start times) or the others (argv).
func (f *fakeEnv) argsFiles(t *testing.T, starts bool) map[string][]string {
	ents, err := os.ReadDir(f.argsDir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".start") != starts {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(f.argsDir, e.Name()))
		key := strings.SplitN(e.Name(), ".", 2)[0]
		out[key] = append(out[key], strings.TrimSpace(string(b)))
	}
	return out
}

// tracerArgs returns the recorded argv of every fake tracer started.
func (f *fakeEnv) tracerArgs(t *testing.T) map[string][]string { return f.argsFiles(t, false) }

// startTimes returns when each role's tracers began (Unix ns), by role.
func (f *fakeEnv) startTimes(t *testing.T) map[string][]int64 {
	out := map[string][]int64{}
	for role, vs := range f.argsFiles(t, true) {
		for _, v := range vs {
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			out[role] = append(out[role], ns)
		}
	}
	return out
}

// noProcessLeft fails when a process whose command line contains marker is
// still running (all fake nodes run on this machine).
func noProcessLeft(t *testing.T, marker string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := processesWith(marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left running: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func processesWith(marker string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	self := fmt.Sprint(os.Getpid())
	for _, e := range ents {
		if e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, marker) {
			out = append(out, e.Name()+": "+cl)
		}
	}
	return out
}

// recorder is a Progress that keeps every state change.
type recorder struct {
	ch chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 1000)} }

func (r *recorder) NodeState(role, state, detail string) {
	select {
	case r.ch <- role + " " + state + " " + detail:
	default:
	}
}
func (r *recorder) Ping(p PingStats) {
	select {
	case r.ch <- fmt.Sprintf("ping %d/%d", p.Sent, p.Answered):
	default:
	}
}
func (r *recorder) Done() {}

// runUntilPings starts Run in the background and returns once ping has
// sent n pings; the channel delivers the result.
func runUntilPings(t testing.TB, ctx context.Context, o RunOptions, n int) <-chan *RunResult {
	return runUntil(t, ctx, o, fmt.Sprintf("ping %d/", n))
}

// runUntil starts Run in the background and returns once a progress event
// contains event; the channel delivers the result.
func runUntil(t testing.TB, ctx context.Context, o RunOptions, event string) <-chan *RunResult {
	rec := newRecorder()
	o.Progress = rec
	done := make(chan *RunResult, 1)
	go func() {
		res, err := Run(ctx, o)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec.waitFor(t, event, wctx)
	return done
}

// waitFor returns when a progress event containing s arrives.
func (r *recorder) waitFor(t testing.TB, s string, ctx context.Context) {
	for {
		select {
		case e := <-r.ch:
			if strings.Contains(e, s) {
				return
			}
		case <-ctx.Done():
			t.Errorf("no progress event %q", s)
			return
		}
	}
}

// checkLost asserts a partial run in which exactly the tracers of the lost
// node are "lost" and every other started tracer is "ok".
func checkLost(t testing.TB, m *manifest.Manifest, lost string) {
	t.Helper()
	if m.Status != StatusPartial {
		t.Fatalf("status %s, failures %+v", m.Status, m.Failures)
	}
	for _, n := range m.Nodes {
		for _, tr := range n.Tracers {
			want := "ok"
			switch {
			case tr.State == "not-started":
				continue
			case n.Role == lost:
				want = "lost"
			}
			if tr.State != want {
				t.Errorf("%s %s: state %s (%s), want %s", n.Role, tr.Tool, tr.State, tr.Error, want)
			}
		}
	}
}
