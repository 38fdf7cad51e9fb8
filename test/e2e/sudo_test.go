package e2e

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// TestSudoEndToEnd logs in to the lab as a non-root user with real sudo:
// passwordless on the VMs, with a password on the hosts. `pingpath run`
// asks for the password on its terminal (a pty), the run completes with
// every tracer as root, and the password is never in any process's argv
// or environment on the machine during the run (the nodes share it), nor
// in the run directory, the lab's logs or the terminal transcript.
func TestSudoEndToEnd(t *testing.T) {
	requireLab(t)
	testenv.RequireProgram(t, "sudo")
	testenv.RequireProgram(t, "useradd")
	l := labtest.Up(t, lab.Options{SudoUser: true})
	password, err := l.SudoPassword()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, labtest.Binary(t), "run", "-c", l.EnvFile, "-o", out, "--count", "20", "--interval", "100ms")
	term, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var mu sync.Mutex
	var transcript bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		b := make([]byte, 4096)
		for {
			n, err := term.Read(b)
			mu.Lock()
			transcript.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(transcript.String(), s)
	}

	// Type the password once the prompt is there and echo is off, as a
	// person would.
	deadline := time.Now().Add(30 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(term.Fd()), unix.TCGETS)
		if err == nil && seen("sudo password") && tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no password prompt with echo off; terminal:\n%s", transcript.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := term.Write(append(append([]byte{}, password...), '\n')); err != nil {
		t.Fatal(err)
	}

	// While it runs, look at every process of the machine (the four
	// nodes' sshd, shells, sudo and tracers are among them).
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	scans, tracersSeen := 0, 0
	for running := true; running; {
		select {
		case runErr = <-done:
			running = false
		case <-time.After(100 * time.Millisecond):
			n, leaks := scanProcesses(password, " trace ")
			for _, leak := range leaks {
				t.Errorf("the sudo password is in %s", leak)
			}
			scans++
			tracersSeen = max(tracersSeen, n)
		}
	}
	<-copied
	if runErr != nil {
		t.Fatalf("pingpath run: %v; terminal:\n%s", runErr, tail(transcript.String(), 40))
	}
	if tracersSeen == 0 {
		t.Errorf("%d scans of /proc saw no tracer running", scans)
	}
	t.Logf("%d scans of /proc during the run, up to %d tracer processes at once", scans, tracersSeen)

	m := readJSON[manifest.Manifest](t, filepath.Join(out, "manifest.json"))
	if m.Status != "complete" {
		t.Fatalf("status %s: %+v", m.Status, m.Failures)
	}
	for _, n := range m.Nodes {
		if n.Facts["uid"] != "0" {
			t.Errorf("%s: facts ran as uid %q", n.Role, n.Facts["uid"])
		}
		want := "sudo -n -- "
		if strings.HasSuffix(n.Role, "-host") {
			want = "sudo -S -k -p  -- "
		}
		for _, tr := range n.Tracers {
			if tr.State != "ok" || !strings.HasPrefix(strings.Join(tr.Command, " "), want) {
				t.Errorf("%s %s: state %s, command %q, want it ok behind %q", n.Role, tr.Tool, tr.State, tr.Command, want)
			}
			// sudo may warn before the command starts (the lab's
			// hostnames do not resolve): the pid line pingpath needs to
			// signal the tracer must still be found, not logged.
			b, _ := os.ReadFile(filepath.Join(out, tr.Stderr))
			if bytes.Contains(b, []byte("pingpath-pid ")) {
				t.Errorf("%s: the pid line was not found behind sudo's output:\n%s", tr.Stderr, b)
			}
		}
	}
	// The nodes saw the sudo user log in, not root.
	for _, n := range lab.NodeNames() {
		b, _ := os.ReadFile(l.LogFile("sshd-" + n))
		if !strings.Contains(string(b), "Accepted publickey for "+l.SudoUser.Name+" ") || strings.Contains(string(b), "Accepted publickey for root ") {
			t.Errorf("%s: sshd log does not show the sudo user (and only it) logging in", n)
		}
	}

	// Nowhere on disk: the run directory, the lab's files and logs (but its
	// password file), the terminal.
	for _, dir := range []string{out, l.Dir} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || p == l.SudoUser.PasswordFile {
				return nil
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, password) {
				t.Errorf("the sudo password is in %s", p)
			}
			return nil
		})
	}
	if seen(string(password)) {
		t.Error("the sudo password was echoed on the terminal")
	}

	// Down removes the account and its sudoers rules.
	if err := l.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := user.Lookup(l.SudoUser.Name); err == nil {
		t.Errorf("user %s still exists after lab down", l.SudoUser.Name)
	}
	if _, err := os.Stat(l.SudoUser.SudoersFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there after lab down: %v", l.SudoUser.SudoersFile, err)
	}
}

// scanProcesses reads every process's command line and environment and
// returns the number whose command line contains marker and where secret
// appears. Processes that end meanwhile are skipped.
func scanProcesses(secret []byte, marker string) (marked int, leaks []string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			p := filepath.Join("/proc", e.Name(), f)
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			if bytes.Contains(b, secret) {
				comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
				leaks = append(leaks, p+" ("+strings.TrimSpace(string(comm))+")")
			}
			if f == "cmdline" && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker) {
				marked++
			}
		}
	}
	return marked, leaks
}
