package remote

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// hostile are values a config file could carry.
var hostile = []string{
	"", "plain", "with space", "it's", `"dq"`, "$(id)", "`id`", "a;b", "a|b", "a&b", "*", "~root",
	"new\nline", "tab\there", `back\slash`, "-n", "--", "!", "{a,b}", "x'y'z", "'", "''", "ünïcode",
}

func TestQuoteGolden(t *testing.T) {
	var b strings.Builder
	for _, h := range hostile {
		fmt.Fprintf(&b, "%q => %s\n", h, Quote(h))
	}
	cmd := Command{Args: []string{"pingpath", "trace", "vm", "--src-ip", "10.0.0.1; rm -rf /", "--interface", "eth0'"},
		Env: map[string]string{"PYTHONUNBUFFERED": "1", "B": "$HOME"}, ReportPID: true}
	line, err := Line(cmd)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "line: %s\n", line)
	for _, mode := range []string{SudoNone, SudoPasswordless, SudoPassword} {
		sc, err := WithSudo(cmd, mode, []byte("s3cret"))
		if err != nil {
			t.Fatal(err)
		}
		l, err := Line(sc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, "s3cret") {
			t.Fatalf("sudo password leaked into the command line: %s", l)
		}
		// The wrapper is inside sudo, but the transport must still strip
		// the pid line and keep the pid.
		if !sc.ReportPID || strings.Count(l, pidPrefix) != 1 {
			t.Errorf("sudo %s: ReportPID %v, %d pid wrappers: %s", mode, sc.ReportPID, strings.Count(l, pidPrefix), l)
		}
		fmt.Fprintf(&b, "sudo %s: %s (stdin prefix %d bytes)\n", mode, l, len(sc.StdinPrefix))
	}
	golden := filepath.Join("testdata", "quote.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != b.String() {
		t.Errorf("quoting changed:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestQuoteRoundTrip hands every quoted value to a real shell and checks
// that the program receives exactly the original argument.
func TestQuoteRoundTrip(t *testing.T) {
	line := Join(append([]string{"printf", "%s\\0"}, hostile...))
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(hostile) {
		t.Fatalf("got %d args, want %d: %q", len(got), len(hostile), got)
	}
	for i := range hostile {
		if got[i] != hostile[i] {
			t.Errorf("arg %d: got %q, want %q", i, got[i], hostile[i])
		}
	}
}

func TestLineRejectsBadEnvName(t *testing.T) {
	if _, err := Line(Command{Args: []string{"true"}, Env: map[string]string{"A;B": "x"}}); err == nil {
		t.Fatal("want error for a bad environment variable name")
	}
	if _, err := Line(Command{}); err == nil {
		t.Fatal("want error for an empty command")
	}
}

func TestPIDReader(t *testing.T) {
	r := NewPIDReader(strings.NewReader("pingpath-pid 4242\nready\n"))
	b := make([]byte, 64)
	n, _ := r.Read(b)
	if string(b[:n]) != "ready\n" || r.PID() != 4242 {
		t.Fatalf("got %q pid %d", b[:n], r.PID())
	}
	r = NewPIDReader(strings.NewReader("no pid here\n"))
	n, _ = r.Read(b)
	if string(b[:n]) != "no pid here\n" || r.PID() != 0 {
		t.Fatalf("got %q pid %d", b[:n], r.PID())
	}
	// sudo warns before the command starts (a hostname that does not
	// resolve): the warning is kept, the pid still found.
	warn := "sudo: unable to resolve host lab-sender-vm: Name or service not known\n"
	r = NewPIDReader(strings.NewReader(warn + "pingpath-pid 4242\nready\n"))
	all, err := io.ReadAll(r)
	if err != nil || string(all) != warn+"ready\n" || r.PID() != 4242 {
		t.Fatalf("got %q pid %d %v", all, r.PID(), err)
	}
}

// TestSHA256Func: the scripts' sha256 gives the file's SHA-256 with
// OpenSSL (when installed) and with only coreutils' sha256sum on PATH.
func TestSHA256Func(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("pingpath\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLocal(file)
	if err != nil {
		t.Fatal(err)
	}
	want := l.SHA256
	l.Close()
	onlySum := filepath.Join(dir, "bin")
	os.Mkdir(onlySum, 0o755)
	sum, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("no sha256sum")
	}
	if err := os.Symlink(sum, filepath.Join(onlySum, "sha256sum")); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{"sha256sum only": onlySum}
	if _, err := exec.LookPath("openssl"); err == nil {
		paths["with openssl"] = os.Getenv("PATH")
	}
	for name, path := range paths {
		cmd := exec.Command("/bin/sh", "-c", sha256Func+`s=$(sha256 < "$1") && echo "${s%% *}"`, "sh", file)
		cmd.Env = []string{"PATH=" + path}
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s: %q %v, want %s", name, out, err, want)
		}
	}
}
