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
	"sync"
	"sync/atomic"
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
	if opts.Binary == "" {
		opts.Binary = Binary(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Name == "" {
		opts.Name = UniqueName()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts)
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
	os.Exit(m.Run())
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
