package remote_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// node is a real SSH connection to an in-process server that runs the
// commands on this machine.
func node(t *testing.T) (*remotetest.Server, *sshremote.Client) {
	t.Helper()
	testenv.RequireRoot(t) // Push wants root's directories, as on a node
	srv := remotetest.New(t, remotetest.Options{})
	c, err := sshremote.Dial(context.Background(), srv.Endpoint("node"), sshremote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// push opens local (as it is now) and pushes it into dir.
func push(t *testing.T, run remote.Runner, local, dir string) (*remote.PushResult, error) {
	t.Helper()
	l, err := remote.OpenLocal(local)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return remote.Push(context.Background(), run, l, dir, "pingpath")
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestPush(t *testing.T) {
	srv, c := node(t)
	local := filepath.Join(t.TempDir(), "bin")
	writeFile(t, local, "#!/bin/sh\necho hi\n", 0o755)
	dir := filepath.Join(t.TempDir(), "remote", "pingpath")
	res, err := push(t, c.Run, local, dir)
	if err != nil || res.Skipped || res.Replaced {
		t.Fatalf("first push: %+v %v", res, err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("remote dir: %v %v", st.Mode(), err)
	}
	if st, err := os.Stat(res.Path); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("remote file: %v", err)
	}

	n := len(srv.Execs())
	res, err = push(t, c.Run, local, dir)
	if err != nil || !res.Skipped {
		t.Fatalf("second push not skipped: %+v %v", res, err)
	}
	if got := len(srv.Execs()) - n; got != 1 {
		t.Fatalf("skipped push ran %d commands, want only the check", got)
	}

	// A damaged copy (truncated, or another file under the name) is
	// replaced; so is one that others may write to.
	for _, damage := range []func(){
		func() { writeFile(t, res.Path, "#!/bin/sh\n", 0o755) },
		func() { os.Chmod(res.Path, 0o777) },
		func() { os.Remove(res.Path); os.Symlink(local, res.Path) },
	} {
		damage()
		r, err := push(t, c.Run, local, dir)
		if err != nil || r.Skipped || !r.Replaced {
			t.Fatalf("push over a damaged copy: %+v %v", r, err)
		}
		if b, _ := os.ReadFile(res.Path); string(b) != "#!/bin/sh\necho hi\n" {
			t.Fatalf("remote content %q", b)
		}
		if st, err := os.Lstat(res.Path); err != nil || st.Mode() != 0o755 {
			t.Fatalf("remote file after repair: %v %v", st.Mode(), err)
		}
	}

	// Uploads a killed push left behind go when they are old; one that
	// is being written (recent) stays.
	stale, fresh := filepath.Join(dir, ".pingpath.upload-aaaaaa.part"), filepath.Join(dir, ".pingpath.upload-bbbbbb")
	writeFile(t, stale, "partial", 0o600)
	writeFile(t, fresh, "partial", 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)

	// A different build goes next to the first one.
	writeFile(t, local, "#!/bin/sh\necho v2\n", 0o755)
	res2, err := push(t, c.Run, local, dir)
	if err != nil || res2.Skipped {
		t.Fatalf("changed push: %+v %v", res2, err)
	}
	if b, _ := os.ReadFile(res2.Path); string(b) != "#!/bin/sh\necho v2\n" {
		t.Fatalf("remote content %q", b)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("stale upload left in place")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("an upload in progress was removed: %v", err)
	}
	os.Remove(fresh)
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("remote dir holds %d files, want the two builds and no upload leftovers", len(ents))
	}
}

// TestPushRefusesUnsafeDirectories: a remote_dir in which someone other
// than root could have put a file, or could replace one, is refused
// before anything is run from it.
func TestPushRefusesUnsafeDirectories(t *testing.T) {
	_, c := node(t)
	local := filepath.Join(t.TempDir(), "bin")
	writeFile(t, local, "#!/bin/sh\necho hi\n", 0o755)
	mkdir := func(p string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		dir  func(base string) string
		want string // "" for accepted
	}{
		{"created by root", func(b string) string { return filepath.Join(b, "a", "b") }, ""},
		{"in a sticky world-writable parent", func(b string) string { return filepath.Join(mkdir(filepath.Join(b, "tmp"), os.ModeSticky|0o777), "pp") }, ""},
		{"world-writable itself, even sticky", func(b string) string { return mkdir(filepath.Join(b, "pp"), os.ModeSticky|0o777) }, "is writable by group or others (mode 1777)"},
		{"group-writable parent", func(b string) string { return filepath.Join(mkdir(filepath.Join(b, "team"), 0o775), "pp") }, "team is writable by group or others (mode 775)"},
		{"owned by another user", func(b string) string {
			p := mkdir(filepath.Join(b, "pp"), 0o700)
			os.Chown(p, 65534, 65534)
			return p
		}, "pp is owned by uid 65534, not by root"},
		{"parent owned by another user", func(b string) string {
			p := mkdir(filepath.Join(b, "home"), 0o755)
			os.Chown(p, 65534, 65534)
			return filepath.Join(p, "pp")
		}, "home is owned by uid 65534"},
		{"a symbolic link", func(b string) string {
			os.Symlink(mkdir(filepath.Join(b, "real"), 0o700), filepath.Join(b, "link"))
			return filepath.Join(b, "link")
		}, "link is a symbolic link"},
		{"below a symbolic link", func(b string) string {
			os.Symlink(mkdir(filepath.Join(b, "real"), 0o700), filepath.Join(b, "link"))
			return filepath.Join(b, "link", "pp")
		}, "link is a symbolic link"},
		{"a file", func(b string) string {
			writeFile(t, filepath.Join(b, "f"), "", 0o600)
			return filepath.Join(b, "f", "pp")
		}, "f is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t.TempDir())
			res, err := push(t, c.Run, local, dir)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing remote_dir "+dir) {
				t.Fatalf("got %+v %v, want refused: %s", res, err, tc.want)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "*pingpath*")); len(m) > 0 {
				t.Errorf("pushed into the refused %s: %v", dir, m)
			}
		})
	}
}

// TestPushRefusesCorruptUpload: a copy whose checksum is wrong never gets
// the content-addressed name, and the upload is removed.
func TestPushRefusesCorruptUpload(t *testing.T) {
	_, c := node(t)
	local := filepath.Join(t.TempDir(), "bin")
	writeFile(t, local, "#!/bin/sh\necho hi\n", 0o755)
	// A link that damages what it carries.
	damaging := func(ctx context.Context, cmd remote.Command) (*remote.Result, error) {
		if cmd.Stdin != nil {
			cmd.Stdin = strings.NewReader("#!/bin/sh\necho damaged\n")
		}
		return c.Run(ctx, cmd)
	}
	dir := filepath.Join(t.TempDir(), "remote")
	_, err := push(t, damaging, local, dir)
	if err == nil || !strings.Contains(err.Error(), "upload corrupted") {
		t.Fatalf("corrupt upload: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("remote dir holds %d files after a refused upload, want none", len(ents))
	}
}

// TestVerifiedExec: the pushed copy runs only as it was pushed, and what
// runs is the file that was checked even if the path changes in between.
func TestVerifiedExec(t *testing.T) {
	_, c := node(t)
	ctx := context.Background()
	tmp := t.TempDir()
	local, evil, marker := filepath.Join(tmp, "bin"), filepath.Join(tmp, "evil"), filepath.Join(tmp, "EVIL")
	writeFile(t, local, "#!/bin/sh\necho \"good $*\"\n", 0o755)
	writeFile(t, evil, "#!/bin/sh\ntouch "+marker+"\necho evil\n", 0o755)
	res, err := push(t, c.Run, local, filepath.Join(tmp, "remote"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(command ...string) *remote.Result {
		t.Helper()
		r, err := c.Run(ctx, remote.Command{Args: remote.VerifiedExec(res.Path, res.SHA256, command...)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(remote.ExecProgram, "a b"); r.ExitCode != 0 || string(r.Stdout) != "good a b\n" {
		t.Fatalf("verified run: %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// The path is swapped for another file after the check, before the
	// exec (what a race would do): the checked file still runs.
	r := run("sh", "-c", `cp "$1" "$2.new" && mv -f "$2.new" "$2" && exec "$3"`, "sh", evil, res.Path, remote.ExecProgram)
	if r.ExitCode != 0 || string(r.Stdout) != "good \n" {
		t.Fatalf("after a swap: %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// Now the path holds the other file: refused, not run.
	r = run(remote.ExecProgram)
	if r.ExitCode != 126 || !bytes.Contains(r.Stderr, []byte("changed since it was pushed")) || !bytes.Contains(r.Stderr, []byte(res.Path)) {
		t.Fatalf("changed copy: %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// The right content, but another user's file (who could change it
	// between the check and the exec): refused.
	writeFile(t, res.Path, "#!/bin/sh\necho \"good $*\"\n", 0o755)
	os.Chown(res.Path, 65534, 65534)
	r = run(remote.ExecProgram)
	if r.ExitCode != 126 || !bytes.Contains(r.Stderr, []byte("not owned by root")) {
		t.Fatalf("copy owned by another user: %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the other file ran")
	}
}

// TestPushUploadsWhatWasHashed: the file is replaced (a rebuild renames a
// new binary over it) between opening it and pushing it: the push sends
// the content whose checksum names the copy, not the new file.
func TestPushUploadsWhatWasHashed(t *testing.T) {
	_, c := node(t)
	tmp := t.TempDir()
	local := filepath.Join(tmp, "bin")
	writeFile(t, local, "#!/bin/sh\necho v1\n", 0o755)
	l, err := remote.OpenLocal(local)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	writeFile(t, local+".new", "#!/bin/sh\necho v2, rebuilt\n", 0o755)
	if err := os.Rename(local+".new", local); err != nil {
		t.Fatal(err)
	}
	res, err := remote.Push(context.Background(), c.Run, l, filepath.Join(tmp, "remote"), "pingpath")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(res.Path); string(b) != "#!/bin/sh\necho v1\n" {
		t.Fatalf("pushed %q, want the file as it was opened", b)
	}
}
