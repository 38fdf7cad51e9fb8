package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/analyze"
)

// A run written by an older pingpath (whose env files allowed markup in the
// environment name), or a directory a user named so, must not put HTML into
// report.md or compare.md: Markdown renderers pass HTML through. The names
// are shown, escaped; a backtick in a directory name does not end its code
// span.
func TestMarkdownEscapesNames(t *testing.T) {
	const evil = `<img src=x onerror=alert(1)>&`
	root := t.TempDir()
	dirs := map[string]string{}
	for _, name := range []string{"plain", "wire1ms"} {
		dst := filepath.Join(root, name+"`<script>x</script>")
		copyDir(t, filepath.Join("testdata", "lab-runs", name), dst)
		editManifest(t, dst, func(m map[string]any) {
			m["environment"] = evil + name
			for _, n := range m["nodes"].([]any) {
				if facts, ok := n.(map[string]any)["facts"].(map[string]any); ok {
					facts["kernel"] = evil + name
				}
			}
		})
		dirs[name] = dst
	}
	a, err := analyze.Run(dirs["plain"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := analyze.Run(dirs["wire1ms"])
	if err != nil {
		t.Fatal(err)
	}
	var report, compare bytes.Buffer
	if err := Markdown(&report, a); err != nil {
		t.Fatal(err)
	}
	if err := CompareMarkdown(&compare, analyze.Compare(a, b)); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"report.md": report.String(), "compare.md": compare.String()} {
		// A code span shows its content verbatim (CommonMark escapes it
		// when rendering), so the directory's markup may stay there.
		span := "``" + dirs["plain"] + "``"
		if !strings.Contains(out, span) {
			t.Errorf("%s: the directory is not in a code span fenced past its backtick (%s):\n%s", name, span, out)
		}
		rest := strings.ReplaceAll(strings.ReplaceAll(out, span, ""), "``"+dirs["wire1ms"]+"``", "")
		if strings.Contains(rest, "<img") || strings.Contains(rest, "<script") {
			t.Errorf("%s carries raw HTML from a name:\n%s", name, out)
		}
	}
	if !strings.Contains(compare.String(), "&lt;img src=x onerror=alert(1)&gt;&amp;") {
		t.Errorf("compare.md does not show the escaped environment difference:\n%s", compare.String())
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func editManifest(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "manifest.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
