package report

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func anchor(name string) string {
	return filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", name)
}

var anchorRuns = []string{"measurement-20260204-180849", "measurement-20260204-180934",
	"measurement-20260205-183643", "measurement-20260206-160003"}

func run(t *testing.T, name string) *analyze.Result {
	t.Helper()
	r, err := analyze.Run(anchor(name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Golden Markdown reports of the four anchor runs. The numbers in them are
// checked by hand in internal/analyze's tests; this pins the rendering.
func TestGoldenMarkdown(t *testing.T) {
	for _, name := range anchorRuns {
		var b bytes.Buffer
		if err := Markdown(&b, run(t, name)); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "golden", name+".md")
		if *update {
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s differs from %s (run go test -update and review the diff)", name, golden)
		}
	}
}

// report.json has the schema of the issue: exact segment keys, STATS keys.
func TestJSONSchema(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAll(dir, run(t, "measurement-20260206-160003")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var schema string
	json.Unmarshal(doc["schema"], &schema)
	if schema != "pingpath.report/v1" {
		t.Errorf("schema %q", schema)
	}
	var pings map[string]int
	json.Unmarshal(doc["pings"], &pings)
	if len(pings) != 4 || pings["sent"] != 23 || pings["complete"] != 14 {
		t.Errorf("pings %v", pings)
	}
	var segs map[string]map[string]float64
	if err := json.Unmarshal(doc["segments"], &segs); err != nil {
		t.Fatal(err)
	}
	keys := []string{"A", "B_1", "B", "CJ", "D", "E", "F", "G", "H", "I_1", "I", "K", "L", "M"}
	if len(segs) != len(keys) {
		t.Errorf("segment keys %v", segs)
	}
	for _, k := range keys {
		st, ok := segs[k]
		if !ok {
			t.Errorf("segment %s missing", k)
			continue
		}
		for _, f := range []string{"n", "mean_us", "stddev_us", "min_us", "p50_us", "p90_us", "p99_us", "max_us"} {
			if _, ok := st[f]; !ok {
				t.Errorf("%s: %s missing", k, f)
			}
		}
	}
	// A was refused on every complete ping: a segment without data is n=0.
	if segs["A"]["n"] != 0 || segs["E"]["n"] != 13 {
		t.Errorf("A n=%v E n=%v", segs["A"]["n"], segs["E"]["n"])
	}
	var layers []map[string]any
	json.Unmarshal(doc["layers"], &layers)
	var share float64
	for _, l := range layers {
		for _, k := range []string{"name", "segments", "mean_us", "share"} {
			if _, ok := l[k]; !ok {
				t.Errorf("layer without %s: %v", k, l)
			}
		}
		share += l["share"].(float64)
	}
	if len(layers) != 5 || share < 0.999999 || share > 1.000001 {
		t.Errorf("%d layers, shares sum %v", len(layers), share)
	}
	for _, k := range []string{"rtt", "drops", "warnings"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
}

func TestSummaryEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := Summary(&b, run(t, "measurement-20260204-180849")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "empty run") {
		t.Errorf("summary: %q", b.String())
	}
	b.Reset()
	if err := Summary(&b, run(t, "measurement-20260204-180934")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"27 sent", "CJ", "layers", "refuted"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

var (
	reRendered = regexp.MustCompile(`id="render-status"[^>]*data-rendered="(\d+)"`)
	reJSError  = regexp.MustCompile(`<html[^>]*data-js-error`)
	reErrorsOK = regexp.MustCompile(`<pre id="errors" hidden=""></pre>`)
)

// openInChromium loads a page in headless Chromium and returns the DOM
// after the scripts ran, plus Chromium's console log.
func openInChromium(t *testing.T, page string) (dom, console string) {
	t.Helper()
	bin := "/usr/bin/chromium"
	_, err := os.Stat(bin)
	testenv.Require(t, err == nil, "needs Debian chromium (apt-get install chromium)")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=5000", "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

func checkPage(t *testing.T, page string, wantCharts int) {
	t.Helper()
	dom, console := openInChromium(t, page)
	m := reRendered.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("%s: charts did not finish rendering (no data-rendered marker)", page)
	}
	if m[1] != string(rune('0'+wantCharts)) {
		t.Errorf("%s: %s charts rendered, want %d", page, m[1], wantCharts)
	}
	if reJSError.MatchString(dom) || !reErrorsOK.MatchString(dom) {
		t.Errorf("%s: JavaScript error captured by window.onerror", page)
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "CONSOLE") && (strings.Contains(l, "Uncaught") || strings.Contains(l, "rror")) {
			t.Errorf("%s: console: %s", page, l)
		}
	}
	if strings.Contains(dom, "http://") || strings.Contains(dom, "https://") {
		for _, u := range regexp.MustCompile(`https?://[^"' )]+`).FindAllString(dom, -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s: page references %s (must be self-contained)", page, u)
			}
		}
	}
}

// The HTML reports open in headless Chromium without console errors and
// draw every chart, for a full run, the 60 ms run and the empty run, and
// the comparison page.
func TestHTMLInChromium(t *testing.T) {
	dir := t.TempDir()
	// The empty run has nothing to draw: the script still runs to the end.
	for name, charts := range map[string]int{"measurement-20260204-180934": 4, "measurement-20260206-160003": 4, "measurement-20260204-180849": 0} {
		out := filepath.Join(dir, name)
		if err := WriteAll(out, run(t, name)); err != nil {
			t.Fatal(err)
		}
		checkPage(t, filepath.Join(out, "report.html"), charts)
	}
	c := analyze.Compare(run(t, "measurement-20260204-180934"), run(t, "measurement-20260206-160003"))
	if err := WriteCompare(dir, c); err != nil {
		t.Fatal(err)
	}
	checkPage(t, filepath.Join(dir, "compare.html"), 1)
	for _, f := range []string{"compare.md", "compare.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// compare.json states what "significant" meant.
	var doc struct {
		Sig analyze.Thresholds `json:"significance"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "compare.json")); err != nil || json.Unmarshal(b, &doc) != nil || doc.Sig != c.Thresholds || doc.Sig.MinDeltaUS != analyze.MinEffectUS {
		t.Errorf("compare.json significance %+v, want %+v (%v)", doc.Sig, c.Thresholds, err)
	}
}

// The check above would see a broken script: a page whose chart code
// throws is caught by window.onerror and never sets the marker.
func TestChromiumCatchesErrors(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAll(dir, run(t, "measurement-20260204-180934")); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "report.html")
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), "  waterfall();\n", "  waterfall();\n  noSuchFunction();\n", 1)
	if broken == string(b) {
		t.Fatal("chart script layout changed; update this test")
	}
	if err := os.WriteFile(page, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, _ := openInChromium(t, page)
	if !reJSError.MatchString(dom) || reRendered.MatchString(dom) || !strings.Contains(dom, "noSuchFunction") {
		t.Error("a throwing chart script was not detected")
	}
}
