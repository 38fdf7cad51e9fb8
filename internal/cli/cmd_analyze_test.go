package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func anchorRun(name string) string {
	return filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", name)
}

func TestAnalyzeCommand(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"analyze", anchorRun("measurement-20260206-160003"), "-o", out}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"report.md", "report.html", "report.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stdout.String(), "23 sent") || !strings.Contains(stdout.String(), "layers") {
		t.Errorf("summary:\n%s", stdout.String())
	}
	// The empty run is reported as empty, not as an error.
	stdout.Reset()
	code = Main(context.Background(), []string{"analyze", anchorRun("measurement-20260204-180849"), "-o", t.TempDir()}, &stdout, &stderr)
	if code != ExitOK || !strings.Contains(stdout.String(), "empty run") {
		t.Errorf("empty run: exit %d, %s", code, stdout.String())
	}
	// A read-only run directory is not written into without -o.
	ro := t.TempDir()
	log, err := os.ReadFile(filepath.Join(anchorRun("measurement-20260206-160003"), "send-vm-icmp.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "send-vm-icmp.log"), log, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	code = Main(context.Background(), []string{"analyze", ro}, &stdout, &stderr)
	if entries, _ := os.ReadDir(ro); code != ExitUsage || len(entries) != 1 || !strings.Contains(stderr.String(), "read-only") {
		t.Errorf("read-only dir: exit %d, %d files written, %s", code, len(entries), stderr.String())
	}
	os.Chmod(ro, 0o755)
	// A missing directory is a usage error naming it.
	stderr.Reset()
	code = Main(context.Background(), []string{"analyze", "/nonexistent/run"}, &stdout, &stderr)
	if code != ExitUsage || !strings.Contains(stderr.String(), "/nonexistent/run") {
		t.Errorf("missing dir: exit %d, %s", code, stderr.String())
	}
}

func TestCompareCommand(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"compare", anchorRun("measurement-20260204-180934"),
		anchorRun("measurement-20260206-160003"), "-o", out}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "compare.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema": "pingpath.compare/v1"`, `"rtt"`, `"CJ"`, `"delta_p50_us"`, `"p_value"`, `"significant"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("compare.json lacks %s", want)
		}
	}
	if !strings.Contains(stdout.String(), "CJ") {
		t.Errorf("summary:\n%s", stdout.String())
	}
	// --min-effect reaches compare.json.
	out2 := t.TempDir()
	code = Main(context.Background(), []string{"compare", anchorRun("measurement-20260204-180934"),
		anchorRun("measurement-20260206-160003"), "-o", out2, "--min-effect", "10us", "--min-effect-rel", "0.05"}, &stdout, &stderr)
	b, _ = os.ReadFile(filepath.Join(out2, "compare.json"))
	if code != ExitOK || !bytes.Contains(b, []byte(`"min_delta_p50_us": 10,`)) || !bytes.Contains(b, []byte(`"min_delta_p50_rel": 0.05,`)) {
		t.Errorf("--min-effect 10us: exit %d, compare.json %.400s", code, b)
	}
	if code := Main(context.Background(), []string{"compare", anchorRun("measurement-20260204-180934"),
		anchorRun("measurement-20260206-160003"), "-o", t.TempDir(), "--min-effect", "-1us"}, &stdout, &stderr); code != ExitUsage {
		t.Errorf("negative --min-effect: exit %d, %s", code, stderr.String())
	}
}

// failingWriter is a reader that went away (analyze DIR | head): every
// write fails.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// What analyze refuses exits 2 and says what it looked for; the reports
// are written before the summary, so a reader that stops early costs
// nothing; an interrupt ends the command with ExitSignal.
func TestAnalyzeInputsAndExitCodes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	empty := t.TempDir()
	if code := Main(context.Background(), []string{"analyze", empty}, &stdout, &stderr); code != ExitUsage ||
		!strings.Contains(stderr.String(), "no pingpath record stream") || !strings.Contains(stderr.String(), "it is empty") {
		t.Errorf("empty dir: exit %d, %s", code, stderr.String())
	}
	wrong := t.TempDir()
	os.WriteFile(filepath.Join(wrong, "notes.txt"), []byte("not a log\n"), 0o644)
	stderr.Reset()
	if code := Main(context.Background(), []string{"analyze", wrong}, &stdout, &stderr); code != ExitUsage ||
		!strings.Contains(stderr.String(), "found notes.txt (not recognised") {
		t.Errorf("wrong dir: exit %d, %s", code, stderr.String())
	}
	out := t.TempDir()
	stderr.Reset()
	code := Main(context.Background(), []string{"analyze", anchorRun("measurement-20260206-160003"), "-o", out}, failingWriter{}, &stderr)
	if code == ExitOK {
		t.Errorf("a failed summary write exits 0")
	}
	for _, f := range []string{"report.md", "report.html", "report.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("reports not written before the summary: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := Main(ctx, []string{"analyze", anchorRun("measurement-20260206-160003"), "-o", t.TempDir()}, &stdout, &stderr); code != ExitSignal {
		t.Errorf("interrupted: exit %d", code)
	}
	stderr.Reset()
	if code := Main(context.Background(), []string{"analyze", anchorRun("measurement-20260206-160003"), "--max-file-size", "10"}, &stdout, &stderr); code != ExitUsage {
		t.Errorf("--max-file-size 10: exit %d, %s", code, stderr.String())
	}
}

// A directory with the origin workflow's two prefixed log sets: analyze
// refuses it and names the prefixes, --prefix reads one, compare DIR
// compares them; a run compared with itself is refused.
func TestTwoRunsInOneDirectoryCommands(t *testing.T) {
	dir := t.TempDir()
	for prefix, run := range map[string]string{"env-a-": "measurement-20260204-180934", "env-b-": "measurement-20260206-160003"} {
		entries, err := os.ReadDir(anchorRun(run))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(anchorRun(run), e.Name()))
			os.WriteFile(filepath.Join(dir, prefix+e.Name()), b, 0o644)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"analyze", dir, "-o", t.TempDir()}, &stdout, &stderr); code != ExitUsage ||
		!strings.Contains(stderr.String(), `prefixes "env-a-", "env-b-"`) {
		t.Errorf("two runs: exit %d, %s", code, stderr.String())
	}
	stdout.Reset()
	if code := Main(context.Background(), []string{"analyze", dir, "--prefix", "env-a-", "-o", t.TempDir()}, &stdout, &stderr); code != ExitOK ||
		!strings.Contains(stdout.String(), "27 sent") {
		t.Errorf("--prefix env-a-: exit %d, %s %s", code, stdout.String(), stderr.String())
	}
	out := t.TempDir()
	stdout.Reset()
	if code := Main(context.Background(), []string{"compare", dir, "-o", out}, &stdout, &stderr); code != ExitOK ||
		!strings.Contains(stdout.String(), "not comparable") {
		t.Errorf("compare DIR: exit %d, %s %s", code, stdout.String(), stderr.String())
	}
	b, _ := os.ReadFile(filepath.Join(out, "compare.md"))
	if !strings.Contains(string(b), "env-a-") || !strings.Contains(string(b), "env-b-") {
		t.Errorf("compare.md does not name the two runs:\n%.600s", b)
	}
	stderr.Reset()
	run := anchorRun("measurement-20260206-160003")
	if code := Main(context.Background(), []string{"compare", run, run + "/", "-o", t.TempDir()}, &stdout, &stderr); code != ExitUsage ||
		!strings.Contains(stderr.String(), "are the same run") {
		t.Errorf("compare DIR DIR: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := Main(context.Background(), []string{"compare", run, "-o", t.TempDir()}, &stdout, &stderr); code != ExitUsage ||
		!strings.Contains(stderr.String(), "holds one run") {
		t.Errorf("compare of one run: exit %d, %s", code, stderr.String())
	}
}
