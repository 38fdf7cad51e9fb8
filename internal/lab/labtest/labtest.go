// Package labtest brings a pingpath lab up for a test and tears it down when
// the test ends. Other packages' tests use it to get four real nodes with
// sshd:
//
//	l := labtest.Up(t, lab.Options{WireDelay: 500 * time.Microsecond})
//	out, err := l.Exec(ctx, lab.SenderVM, "ping", "-c", "3", l.Nodes[3].DataIP.String())
//
// The lab's background processes are started as `BINARY lab wire|tap-backend|
// node-init ...`. The quickest BINARY is the test binary itself: a package
// whose TestMain calls labtest.Main serves those commands, and Up then uses
// os.Executable(). Without it, Up uses $PINGPATH_BIN when set, otherwise it
// builds cmd/pingpath once per test process into the user cache directory.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// Up brings up a lab with a unique name in a fresh t.TempDir() (unless
// opts.Name or opts.Dir are set) and registers its teardown with t.Cleanup.
// It needs root and sshd: without them it skips outside CI and fails in CI.
// opts.Binary defaults to Binary(t).
func Up(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := os.Stat("/usr/sbin/sshd")
	testenv.Require(t, err == nil, "needs /usr/sbin/sshd (openssh-server)")
	_, err = os.Stat("/dev/net/tun")
	testenv.Require(t, err == nil, "needs /dev/net/tun")
	return up(t, opts, time.Minute)
}

// up fills opts' test defaults, brings the lab up within timeout and
// registers its teardown.
func up(t testing.TB, opts lab.Options, timeout time.Duration) *lab.Lab {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Binary(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Name == "" {
		opts.Name = UniqueName()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := lab.Up(ctx, opts)
	if err != nil && opts.Hypervisor == lab.HypervisorKVM && ctx.Err() == nil {
		// A KVM lab's emulated hosts fail to come up now and then in ways
		// lab up does not retry itself (until 2026-12-06 also a false "qemu
		// exited" within a host's first second, docs/lab.md "Boot
		// failures"). Keep what its logs say, then try one new lab.
		LogTails(t, opts.Dir)
		t.Logf("lab up failed, trying once more with a new lab: %v", err)
		opts.Dir, opts.Name = t.TempDir(), UniqueName()
		l, err = lab.Up(ctx, opts)
	}
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// UpKVM brings up a KVM lab (lab.HypervisorKVM: two QEMU TCG hosts, each
// running its VM under nested KVM with vhost-net) like Up does a namespace
// lab: unique name, t.TempDir(), lab down in t.Cleanup. It takes about one
// to two minutes; the first call on a machine also builds the machine
// image (about five minutes, cached under .cache/images or
// $PINGPATH_IMAGE_CACHE). Needs root, /dev/net/tun, qemu-system-x86_64,
// and debootstrap and mke2fs for the image: without them it skips outside
// CI and fails in CI. Tests that only read the lab should share one with
// SharedKVM.
func UpKVM(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	RequireKVM(t)
	opts.Hypervisor = lab.HypervisorKVM
	if opts.Log == nil {
		opts.Log = testLog{t}
	}
	return up(t, opts, kvmUpTimeout)
}

// kvmUpTimeout bounds a KVM lab's up, a first image build included.
const kvmUpTimeout = 25 * time.Minute

// RequireKVM skips (in CI: fails) the test unless this machine can run a
// KVM lab: root, /dev/net/tun, QEMU, and debootstrap and mke2fs for its image.
func RequireKVM(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := os.Stat("/dev/net/tun")
	testenv.Require(t, err == nil, "needs /dev/net/tun")
	for _, p := range []string{"qemu-system-x86_64", "debootstrap", "mke2fs"} {
		testenv.RequireProgram(t, p)
	}
}

// testLog writes lab up's progress lines to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// SharedKVM returns the KVM lab shared by every test of this test binary
// that calls it: the first call brings it up with its opts (later calls'
// opts are ignored), Main tears it down after the last test. Tests must
// not change it (no lab down, no new interfaces). It needs Main as the
// package's TestMain.
func SharedKVM(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	if !selfServes.Load() {
		t.Fatal("labtest.SharedKVM needs labtest.Main as the package's TestMain (it tears the lab down)")
	}
	RequireKVM(t)
	shared.once.Do(func() {
		opts.Hypervisor = lab.HypervisorKVM
		opts.Binary = Binary(t)
		opts.Name = UniqueName()
		opts.Log = testLog{t}
		dir, err := os.MkdirTemp("", "pingpath-kvmlab-")
		if err != nil {
			shared.err = err
			return
		}
		opts.Dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), kvmUpTimeout)
		defer cancel()
		shared.lab, shared.err = lab.Up(ctx, opts)
		if shared.err != nil {
			os.RemoveAll(dir)
		}
	})
	if shared.err != nil {
		t.Fatalf("shared lab up --hypervisor kvm: %v", shared.err)
	}
	return shared.lab
}

var shared struct {
	once sync.Once
	lab  *lab.Lab
	err  error
}

// downShared tears down the shared KVM lab, if one was brought up, and
// removes its directory.
func downShared() error {
	if shared.lab == nil {
		return nil
	}
	if err := shared.lab.Down(context.Background()); err != nil {
		return fmt.Errorf("shared kvm lab %s (%s): %w", shared.lab.Name, shared.lab.Dir, err)
	}
	return os.RemoveAll(shared.lab.Dir)
}

// UniqueName returns a lab name no other test process uses: "t" and random
// hex (short, since it prefixes namespace names and hostnames).
func UniqueName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// Main is a TestMain for packages that use Up: it serves the lab's
// background processes when the test binary is started as one, and
// otherwise runs the tests.
//
//	func TestMain(m *testing.M) { labtest.Main(m) }
func Main(m *testing.M) {
	if lab.IsChild(os.Args[1:]) {
		os.Exit(lab.ChildMain(context.Background(), os.Args[2], os.Args[3:], os.Stderr))
	}
	selfServes.Store(true)
	code := m.Run()
	if err := downShared(); err != nil {
		fmt.Fprintln(os.Stderr, "labtest:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

var (
	// selfServes is set by Main: the test binary can be the lab's binary.
	selfServes atomic.Bool

	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns a binary for the lab's background processes: the test
// binary when TestMain is labtest.Main, else $PINGPATH_BIN, else a pingpath
// built from this module once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if selfServes.Load() {
		exe, err := os.Executable()
		if err != nil {
			t.Fatalf("finding the test binary: %v", err)
		}
		return exe
	}
	if p := os.Getenv("PINGPATH_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("PINGPATH_BIN %s: %v", p, err)
		}
		return abs
	}
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building pingpath for the lab: %v", buildErr)
	}
	return buildPath
}

// build compiles cmd/pingpath into the user cache directory, under a name of
// its source tree. It writes to a temporary name and renames, so concurrent
// test processes (go test runs packages in parallel) never exec a
// half-written file.
func build() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go tool on PATH to build pingpath (or set PINGPATH_BIN): %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "pingpath-labtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "pingpath-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(goTool, "build", "-o", tmp.Name(), "github.com/pingpath/pingpath/cmd/pingpath")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	// One name per source tree: test processes of other checkouts on the
	// machine (other branches) replace theirs, not this one, while it is
	// in use.
	gomod, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	tree := sha256.Sum256(bytes.TrimSpace(gomod))
	final := filepath.Join(dir, "pingpath-"+hex.EncodeToString(tree[:6]))
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}

// Processes lists "pid: command line" (arguments joined by spaces) of the
// processes in the network namespace netns (a lab node's Netns) whose
// command line match accepts.
func Processes(t testing.TB, netns string, match func(cmdline string) bool) []string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+netns, &st); err != nil {
		t.Fatalf("netns %s: %v", netns, err)
	}
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var ps syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &ps) != nil || ps.Ino != st.Ino {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if match(cl) {
			out = append(out, e.Name()+": "+cl)
		}
	}
	return out
}

// LogTails logs the last lines of every log of the lab in dir (QEMU and
// console logs of a KVM lab's hosts, daemons): what a failed lab up or run
// leaves to explain it, kept in the test log because the test's temporary
// directory goes away with the test.
func LogTails(t testing.TB, labDir string) {
	t.Helper()
	dir := filepath.Join(labDir, "logs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("lab logs: %v", err)
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("lab log %s (last %d lines):\n%s", e.Name(), len(lines), strings.Join(lines, "\n"))
	}
}
