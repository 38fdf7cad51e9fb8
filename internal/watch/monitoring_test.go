package watch

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile("../../monitoring/pingpath-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	d := &dashboard{}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(d); err != nil {
		t.Fatalf("monitoring/pingpath-dashboard.json: %v", err)
	}
	return d
}

// The Grafana dashboard is a dashboard Grafana can import: a title, uid and
// schema version; panels with unique ids, a known type, a place on the
// 24-column grid that overlaps no other panel; every query panel reads the
// dashboard's datasource variable with a PromQL expression per target
// (unique refIds), using only template variables the dashboard defines
// and metrics watch exposes. (The expressions are evaluated against a real
// Prometheus in TestWatchPrometheusAgreesWithAnalyze.)
func TestDashboardSchema(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q uid %q schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__range": true, "__interval": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["environment"] || !vars["pair"] {
		t.Errorf("templating lacks datasource, environment or pair: %+v", d.Templating.List)
	}
	known := map[string]bool{}
	for _, m := range MetricNames {
		known[m] = true
	}
	types := map[string]bool{"row": true, "timeseries": true, "heatmap": true, "table": true, "stat": true}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]int{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if !types[p.Type] || p.Title == "" {
			t.Errorf("panel %d: type %q title %q", p.ID, p.Type, p.Title)
		}
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps panel %d at (%d,%d)", p.Title, other, x, y)
				}
				used[cell{x, y}] = p.ID
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			if tg.RefID == "" || refs[tg.RefID] || tg.Expr == "" {
				t.Errorf("panel %q: target refId %q (unique?) expr %q", p.Title, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				if !known[name] {
					t.Errorf("panel %q names %s, which watch does not expose", p.Title, name)
				}
			}
			for _, v := range strings.Split(tg.Expr, "$")[1:] {
				name := strings.TrimLeft(v, "{")
				name = name[:strings.IndexFunc(name+" ", func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z') })]
				if !vars[name] {
					t.Errorf("panel %q uses $%s, which the dashboard does not define", p.Title, name)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("%d queries in the dashboard", queries)
	}
}

// The example alert rules are valid Prometheus rules (promtool check
// rules) and their unit tests pass (promtool test rules): each alert fires
// on series shaped like watch's and stays quiet on a healthy path.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testenv.Require(t, err == nil, "needs promtool (Debian package prometheus; scripts/install-deps.sh)")
	for _, args := range [][]string{{"check", "rules", "pingpath-alerts.yml"}, {"test", "rules", "pingpath-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../monitoring"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
