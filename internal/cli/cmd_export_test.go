package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExport: both formats, to the default file in DIR and to stdout; an
// unknown format is a usage error.
func TestExport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if out, err := exec.Command("cp", "-r", filepath.Join("..", "report", "testdata", "lab-runs", "plain"), dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"export", dir, "--format", "perfetto"}, &out, &errb); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "trace.json"))
	var trace struct {
		Events []json.RawMessage `json:"traceEvents"`
	}
	if err != nil || json.Unmarshal(b, &trace) != nil || len(trace.Events) < 100 {
		t.Fatalf("trace.json: %v, %d events", err, len(trace.Events))
	}
	out.Reset()
	if code := Main(context.Background(), []string{"export", dir, "--format", "csv", "-o", "-"}, &out, &errb); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != 21 {
		t.Errorf("csv: %d lines, want 21 (header + 20 pings)", lines)
	}
	if code := Main(context.Background(), []string{"export", dir, "--format", "svg"}, &out, &errb); code != ExitUsage {
		t.Errorf("--format svg: exit %d", code)
	}
	// analyze does not read its own exports back.
	out.Reset()
	if code := Main(context.Background(), []string{"analyze", dir}, &out, &errb); code != ExitOK || !strings.Contains(out.String(), "pings: 20 sent") {
		t.Errorf("analyze after export: exit %d\n%s", code, out.String())
	}
}
