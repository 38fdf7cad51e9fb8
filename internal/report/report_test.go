package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/analyze"
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

// The HTML reports in headless Chromium, at a desktop and a narrow width:
// no script error, no request or link out of the file, every chart drawn,
// no clipped or overlapping text — for two real lab runs, the anchor runs
// (one with A refused everywhere), the empty run and a comparison.
func TestHTMLInChromium(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	pages := []struct {
		name, in  string
		wantEmpty []string
	}{
		{"lab-plain", filepath.Join("testdata", "lab-runs", "plain"), nil},
		{"lab-wire1ms", filepath.Join("testdata", "lab-runs", "wire1ms"), nil},
		{"anchor-180934", anchor("measurement-20260204-180934"), nil},
		{"anchor-160003", anchor("measurement-20260206-160003"), []string{"waterfall", "lanes", "time"}},
		{"anchor-empty", anchor("measurement-20260204-180849"), []string{"layers", "waterfall", "lanes", "cdf", "hist", "time"}},
	}
	results := map[string]*analyze.Result{}
	for _, p := range pages {
		res, err := analyze.Run(p.in)
		if err != nil {
			t.Fatal(err)
		}
		results[p.name] = res
		out := filepath.Join(dir, p.name)
		if err := WriteAll(out, res); err != nil {
			t.Fatal(err)
		}
		checkInBrowser(t, b, p.name, filepath.Join(out, "report.html"), p.wantEmpty)
	}
	for name, pair := range map[string][2]string{"compare-lab": {"lab-plain", "lab-wire1ms"}, "compare-anchor": {"anchor-180934", "anchor-160003"}} {
		c := analyze.Compare(results[pair[0]], results[pair[1]])
		out := filepath.Join(dir, name)
		if err := WriteCompare(out, c); err != nil {
			t.Fatal(err)
		}
		checkInBrowser(t, b, name, filepath.Join(out, "compare.html"), nil)
		for _, f := range []string{"compare.md", "compare.json"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Error(err)
			}
		}
		// compare.json states what "significant" meant.
		var doc struct {
			Sig analyze.Thresholds `json:"significance"`
		}
		if b, err := os.ReadFile(filepath.Join(out, "compare.json")); err != nil || json.Unmarshal(b, &doc) != nil || doc.Sig != c.Thresholds || doc.Sig.MinDeltaUS != analyze.MinEffectUS {
			t.Errorf("compare.json significance %+v, want %+v (%v)", doc.Sig, c.Thresholds, err)
		}
	}
}

// The check above would see a broken page: a chart script that throws, a
// label cut off by its box, and a request to the network each fail it.
func TestChromiumCatchesErrors(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	if err := WriteAll(dir, run(t, "measurement-20260204-180934")); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "report.html")
	good, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string][2]string{
		"throws":   {"  overTime();\n", "  overTime();\n  noSuchFunction();\n"},
		"clipped":  {"</style>", ".vtext{flex:none;width:3em;overflow:hidden;white-space:nowrap}</style>"},
		"requests": {"</body>\n</html>", "<img src=\"http://198.18.0.1/x.png\"></body>\n</html>"},
	} {
		broken := strings.Replace(string(good), breakIt[0], breakIt[1], 1)
		if broken == string(good) {
			t.Fatalf("%s: page layout changed; update this test", name)
		}
		if err := os.WriteFile(page, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		pc, requests, errs := b.load(t, page, 1280, "")
		caught := false
		switch name {
		case "throws":
			caught = len(errs) > 0 && pc.Rendered != pc.Expected
		case "clipped":
			caught = len(pc.Clipped) > 0
		case "requests":
			caught = len(pc.URLs) > 0 && len(requests) > 1
		}
		if !caught {
			t.Errorf("%s: not detected: %+v requests %v errors %v", name, pc, requests, errs)
		}
	}
}

// TestVendoredECharts: the embedded library is the file the pin names
// (make lint checks the same with sha256sum) and can sit inside <script>.
func TestVendoredECharts(t *testing.T) {
	sum, err := os.ReadFile(filepath.Join("vendor", "echarts.min.js.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := strings.Cut(string(sum), " ")
	got := sha256.Sum256([]byte(echartsJS))
	if hex.EncodeToString(got[:]) != want {
		t.Errorf("vendor/echarts.min.js has sha256 %x, the pin says %s: run scripts/vendor-echarts.sh", got, want)
	}
	if strings.Contains(strings.ToLower(echartsJS), "</script") {
		t.Error("the bundle contains </script and cannot be embedded as is")
	}
	if v := echartsVersion(); !strings.Contains(echartsPin, "\nVERSION="+v+"\n") {
		t.Errorf("pin version %q", v)
	}
}

// In report.json, the rows every chart draws are the statistics set's,
// a refused value is named on its row, and the layers' mean RTT says what
// it leaves out (on the 60 ms run A is refused on every complete ping; the
// over-time chart's axis used to reach 61 145 µs from such rows).
func TestPerPingAccepted(t *testing.T) {
	res := run(t, "measurement-20260206-160003")
	doc := Build(res)
	in := 0
	for _, row := range doc.PerPing {
		if row.InStats {
			in++
			if !row.Complete || !slices.Contains(row.Excluded, "A") {
				t.Errorf("row %d/%d: %+v", row.ID, row.Seq, row)
			}
		}
	}
	if in != len(res.StatSet) || in != 14 {
		t.Errorf("%d rows in the statistics set, want %d", in, len(res.StatSet))
	}
	if !slices.Equal(doc.LayerRTTExcludes, []string{"A"}) {
		t.Errorf("layer_rtt_excludes %q", doc.LayerRTTExcludes)
	}
	var md bytes.Buffer
	if err := Markdown(&md, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "mean RTT 621.9 µs without A, refused on every ping") {
		t.Errorf("report.md does not say the layers' RTT leaves A out")
	}
}
