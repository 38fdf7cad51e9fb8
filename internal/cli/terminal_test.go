package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// screen runs one command in a detached tmux session on a private socket:
// a real pty rendered by a real terminal emulator, so cursor movements are
// applied exactly as a user's terminal applies them.
type screen struct {
	t    *testing.T
	tmux string
	sock string
}

func newScreen(t *testing.T, command string) *screen {
	t.Helper()
	s := &screen{t: t, tmux: testenv.RequireProgram(t, "tmux"), sock: filepath.Join(t.TempDir(), "tmux.sock")}
	// The pane stays open after the command so that its last screen can be read.
	s.run("new-session", "-d", "-x", "180", "-y", "100", "-s", "pp", command+`; echo "EXIT=$?"; sleep 600`)
	t.Cleanup(func() { _ = exec.Command(s.tmux, "-S", s.sock, "kill-server").Run() })
	return s
}

func (s *screen) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tmux, append([]string{"-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// text is what the terminal shows now, scrollback included.
func (s *screen) text() string { return s.run("capture-pane", "-p", "-J", "-S", "-") }

// waitFor polls the screen until it contains want.
func (s *screen) waitFor(want string, limit time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		txt := s.text()
		if strings.Contains(txt, want) {
			return txt
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%q not on the screen after %s:\n%s", want, limit, txt)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRunOnTerminal runs `pingpath run` on the lab under a real terminal:
// the live progress block (redrawn in place) must not overwrite any line of
// the summary printed below it, and after Ctrl-C the run says how to
// analyse what it collected.
func TestRunOnTerminal(t *testing.T) {
	l := labtest.Up(t, lab.Options{})
	bin := labtest.Binary(t)
	dir := t.TempDir()

	out := filepath.Join(dir, "complete")
	s := newScreen(t, bin+" run -c "+l.EnvFile+" -o "+out+" --count 10 --interval 20ms")
	txt := s.waitFor("EXIT=", 2*time.Minute)
	if !strings.Contains(txt, "EXIT=0") {
		t.Fatalf("run failed:\n%s", txt)
	}
	lines := strings.Split(txt, "\n")
	summary := -1
	for i, line := range lines {
		if strings.HasPrefix(line, "verdict: ") {
			summary = i
		}
	}
	if summary < 0 {
		t.Fatalf("no summary on the screen:\n%s", txt)
	}
	// Everything the summary prints is still there, below the final block.
	below := strings.Join(lines[summary:], "\n")
	for _, want := range []string{"  tail: ", "context: ", "pings: 10 sent", "segment", "RTT", "layers (mean RTT", "run " + out + ": complete"} {
		if !strings.Contains(below, want) {
			t.Errorf("%q was overwritten or is missing below the summary:\n%s", want, below)
		}
	}
	for _, line := range lines[summary:] {
		for _, role := range []string{"sender-vm ", "receiver-host ", "ping      "} {
			if strings.HasPrefix(line, role) {
				t.Errorf("progress line drawn over the summary: %q\n%s", line, txt)
			}
		}
	}
	if !strings.Contains(strings.Join(lines[:summary], "\n"), "sender-vm      done") {
		t.Errorf("the final progress block is not above the summary:\n%s", txt)
	}

	// Ctrl-C in the middle of a run: exit 130 and the hint to analyse it.
	part := filepath.Join(dir, "partial")
	s = newScreen(t, bin+" run -c "+l.EnvFile+" -o "+part+" --count 400 --interval 50ms")
	s.waitFor(" sent, ", 2*time.Minute)
	time.Sleep(time.Second)
	s.run("send-keys", "-t", "pp", "C-c")
	txt = s.waitFor("EXIT=", time.Minute)
	if !strings.Contains(txt, "EXIT=130") || !strings.Contains(txt, "pingpath analyze "+part) {
		t.Fatalf("after Ctrl-C: want exit 130 and the analyze hint:\n%s", txt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, bin, "analyze", part).CombinedOutput(); err != nil || !strings.Contains(string(b), "pings: ") {
		t.Fatalf("analyze of the interrupted run: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(part, "report.html")); err != nil {
		t.Error(err)
	}
}
