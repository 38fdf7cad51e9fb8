package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	code = Main(context.Background(), []string{"analyze", ro}, &stdout, &stderr)
	if entries, _ := os.ReadDir(ro); code != ExitUsage || len(entries) != 0 || !strings.Contains(stderr.String(), "read-only") {
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
