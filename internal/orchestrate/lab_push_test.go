package orchestrate

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	l, err := remote.OpenLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.SHA256
}

// TestLabPushCache attacks the binary cache in remote_dir the way a local
// user on a node would (a real unprivileged user, real sshd), and damages
// it the way a full disk or a killed push does.
func TestLabPushCache(t *testing.T) {
	testenv.RequireProgram(t, "runuser")
	lr := upLab(t)
	sum := fileSHA256(t, lr.bin)
	cached := pushedName + "-" + sum[:16]

	// shared is a world-writable sticky directory like /tmp, in which
	// nobody prepares the trap.
	shared, err := os.MkdirTemp("", "pingpath-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	pwned := filepath.Join(shared, "PWNED")
	asNobody := func(t *testing.T, script string, args ...string) {
		t.Helper()
		cmd := exec.Command("runuser", append([]string{"-u", "nobody", "--", "sh", "-c", script, "sh"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("as nobody: %v: %s", err, out)
		}
	}
	// plant writes, as nobody, a pingpath-<sum> that records who ran it
	// and then runs the real binary, so that the run would succeed.
	plant := func(t *testing.T, dir string) {
		asNobody(t, `mkdir -p "$1" && printf '#!/bin/sh\nid >%s\nexec %s "$@"\n' "$3" "$4" >"$1/$2" && chmod 755 "$1/$2"`,
			dir, cached, pwned, lr.bin)
	}
	runWith := func(t *testing.T, remoteDir string) *RunResult {
		t.Helper()
		env := *lr.opts.Env
		env.SSH.RemoteDir = remoteDir
		o := lr.opts
		o.Env, o.OutDir = &env, lr.outDir(t)
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	refused := func(t *testing.T, remoteDir string, why ...string) {
		t.Helper()
		res := runWith(t, remoteDir)
		if _, err := os.Stat(pwned); err == nil {
			b, _ := os.ReadFile(pwned)
			os.Remove(pwned)
			t.Fatalf("the planted binary ran: %s", b)
		}
		if res.Manifest.Status != StatusFailed {
			t.Fatalf("status %s, want failed", res.Manifest.Status)
		}
		msg := res.Err.Error()
		t.Logf("refused: %s", msg)
		for _, w := range append([]string{"sender-vm", remoteDir}, why...) {
			if !strings.Contains(msg, w) {
				t.Errorf("error does not say %q:\n%s", w, msg)
			}
		}
		lr.noTracerLeft(t, 0)
	}

	t.Run("remote_dir owned by another user", func(t *testing.T) {
		dir := filepath.Join(shared, "pp")
		plant(t, dir)
		refused(t, dir, "owned by uid 65534")
	})
	t.Run("world-writable remote_dir", func(t *testing.T) {
		defer os.Remove(filepath.Join(shared, cached))
		plant(t, shared)
		refused(t, shared, "writable by group or others")
	})
	t.Run("remote_dir behind a symlink", func(t *testing.T) {
		link := filepath.Join(shared, "link")
		asNobody(t, `mkdir -p "$1" && ln -s "$1" "$2"`, filepath.Join(shared, "target"), link)
		refused(t, filepath.Join(link, "sub"), shared+"/link is a symbolic link")
	})
	t.Run("group-writable parent", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "team")
		if err := os.Mkdir(parent, 0o775); err != nil {
			t.Fatal(err)
		}
		os.Chmod(parent, 0o775)
		refused(t, filepath.Join(parent, "pp"), parent+" is writable by group or others")
	})

	t.Run("corrupt copy and upload leftovers", func(t *testing.T) {
		// A truncated copy under the checksum name (a full disk, an old
		// push), and the upload a push killed with -9 left behind.
		dir := filepath.Join(t.TempDir(), "remote")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(lr.bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, cached), b[:len(b)/3], 0o755); err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(dir, ".pingpath.upload-0123456789ab.part")
		if err := os.WriteFile(stale, b[:4096], 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Hour)
		os.Chtimes(stale, old, old)
		res := runWith(t, dir)
		if res.Manifest.Status != StatusComplete {
			t.Fatalf("status %s: %+v", res.Manifest.Status, res.Manifest.Failures)
		}
		if got := fileSHA256(t, filepath.Join(dir, cached)); got != sum {
			t.Errorf("cached copy not replaced: %s", got)
		}
		if _, err := os.Stat(stale); err == nil {
			t.Errorf("stale upload %s left in place", stale)
		}
	})

	t.Run("controller killed during the push", func(t *testing.T) {
		// The real binary, killed with SIGKILL while it pushes itself:
		// the upload on the node ends with the session and is removed.
		dir := filepath.Join(t.TempDir(), "remote")
		env := *lr.opts.Env
		env.SSH.RemoteDir = dir
		b, err := yaml.Marshal(&env)
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "env.yaml")
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(lr.bin, "run", "-c", cfg, "-o", lr.outDir(t))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it once an upload is on its way.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if m, _ := filepath.Glob(filepath.Join(dir, ".pingpath.upload-*")); len(m) > 0 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("no upload started")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Kill()
		go io.Copy(io.Discard, stderr)
		cmd.Wait()
		deadline = time.Now().Add(10 * time.Second)
		for {
			m, _ := filepath.Glob(filepath.Join(dir, ".pingpath.upload-*"))
			if len(m) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("upload leftovers 10 s after the controller was killed: %v", m)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
