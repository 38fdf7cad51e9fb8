package sshremote_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
)

func dial(t *testing.T, srv *remotetest.Server) *sshremote.Client {
	t.Helper()
	c, err := sshremote.Dial(context.Background(), srv.Endpoint("node"), sshremote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunQuotingReachesProgramIntact(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	args := []string{"$(touch /tmp/pwned)", "a b", "it's", ";exit 7", "\n"}
	res, err := c.Run(context.Background(), remote.Command{Args: append([]string{"printf", "[%s]"}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	want := "[$(touch /tmp/pwned)][a b][it's][;exit 7][\n]"
	if string(res.Stdout) != want || res.ExitCode != 0 {
		t.Fatalf("got %q exit %d, want %q", res.Stdout, res.ExitCode, want)
	}
}

func TestRunExitCodeStdinEnv(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	res, err := c.Run(context.Background(), remote.Command{
		Args:        []string{"sh", "-c", `read pw; cat; echo "$X" >&2; exit 3`},
		Env:         map[string]string{"X": "v'1"},
		StdinPrefix: []byte("secret\n"),
		Stdin:       strings.NewReader("body"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || string(res.Stdout) != "body" || string(res.Stderr) != "v'1\n" {
		t.Fatalf("got exit %d stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
}

func TestRunContextCancel(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, remote.Command{Args: []string{"sleep", "30"}})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
}

// startLines starts cmd and returns a channel of its stderr lines.
func startLines(t *testing.T, c *sshremote.Client, cmd remote.Command) (remote.Process, <-chan string) {
	t.Helper()
	p, err := c.Start(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, p.Stdout()) }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(p.Stderr())
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return p, lines
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l := <-lines:
		if l != want {
			t.Fatalf("got line %q, want %q", l, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q line", want)
	}
}

func TestStartStdinEOFStopsProgram(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	p, lines := startLines(t, c, remote.Command{Args: []string{"sh", "-c", `echo ready >&2; cat >/dev/null; echo eof >&2; exit 0`}, ReportPID: true})
	waitLine(t, lines, "ready")
	if p.PID() <= 0 {
		t.Fatalf("pid not reported: %d", p.PID())
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines, "eof")
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
}

func TestStartSignal(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	p, lines := startLines(t, c, remote.Command{Args: []string{"sh", "-c", `trap 'echo got-int >&2; exit 5' INT; echo ready >&2; while :; do sleep 0.05; done`}})
	waitLine(t, lines, "ready")
	if err := p.Signal(remote.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines, "got-int")
	if code, err := p.Wait(); code != 5 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	if got := srv.Signals(); len(got) != 1 || got[0] != "INT" {
		t.Fatalf("signals %v", got)
	}
}

func TestConnectionLost(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	c := dial(t, srv)
	p, lines := startLines(t, c, remote.Command{Args: []string{"sh", "-c", `echo ready >&2; cat >/dev/null`}})
	waitLine(t, lines, "ready")
	srv.DropConnections()
	done := make(chan error, 1)
	go func() { _, err := p.Wait(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("want an error for a lost connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait hangs after the connection was lost")
	}
}

func TestWrongHostKeyRefused(t *testing.T) {
	srv := remotetest.New(t, remotetest.Options{})
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", srv.Port, ssh.MarshalAuthorizedKey(other))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := srv.Endpoint("evil")
	tg.KnownHosts = []string{kh}
	_, err := sshremote.Dial(context.Background(), tg, sshremote.Options{})
	if err == nil || !strings.Contains(err.Error(), "HOST KEY MISMATCH") {
		t.Fatalf("got %v, want a host key mismatch", err)
	}
	// Unknown host: no entry at all.
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = sshremote.Dial(context.Background(), tg, sshremote.Options{})
	if err == nil || !strings.Contains(err.Error(), "not in") {
		t.Fatalf("got %v, want an unknown host error", err)
	}
}

func TestConnectTimeout(t *testing.T) {
	// A listener that accepts but never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	srv := remotetest.New(t, remotetest.Options{})
	tg := srv.Endpoint("silent")
	tg.Port = ln.Addr().(*net.TCPAddr).Port
	tg.ConnectTimeout = 500 * time.Millisecond
	start := time.Now()
	_, err = sshremote.Dial(context.Background(), tg, sshremote.Options{})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "silent") {
		t.Fatalf("error does not name the node: %v", err)
	}
}

func TestJumpHost(t *testing.T) {
	jump := remotetest.New(t, remotetest.Options{})
	target := remotetest.New(t, remotetest.Options{})
	tg := target.Endpoint("behind")
	tg.Jump = jump.Endpoint("jump")
	c, err := sshremote.Dial(context.Background(), tg, sshremote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Run(context.Background(), remote.Command{Args: []string{"echo", "through"}})
	if err != nil || string(res.Stdout) != "through\n" {
		t.Fatalf("%q %v", res.Stdout, err)
	}
	if len(target.Execs()) != 1 || len(jump.Execs()) != 0 {
		t.Fatalf("ran on the wrong server: target %v jump %v", target.Execs(), jump.Execs())
	}
}
