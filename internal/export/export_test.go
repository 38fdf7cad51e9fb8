package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pingpath/pingpath/internal/analyze"
)

// The inputs: two real lab runs (one clock for every node) and two origin
// anchor runs (separate clocks; A refused on every ping of 160003).
var runs = map[string]string{
	"lab plain":     filepath.Join("..", "report", "testdata", "lab-runs", "plain"),
	"lab wire 1ms":  filepath.Join("..", "report", "testdata", "lab-runs", "wire1ms"),
	"anchor 180934": filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", "measurement-20260204-180934"),
	"anchor 160003": filepath.Join("..", "parse", "origin", "testdata", "anchor-logs", "measurement-20260206-160003"),
}

func analyzed(t *testing.T, dir string) *analyze.Result {
	t.Helper()
	res, err := analyze.Run(dir)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "trace-event.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("trace-event.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	return c.MustCompile("trace-event.schema.json")
}

type track struct{ pid, tid int }

// TestPerfettoTrace checks the exported trace the way Perfetto's JSON
// importer reads it: strictly against the Trace Event Format schema, every
// track's slices nested (the importer drops slices that overlap without
// nesting), every flow bound to a slice at both ends; and it reads the
// numbers back: each segment slice carries the analysis' value for its
// ping, each side's unmeasured slices add up to its residual, and on a
// shared clock each ping starts at its wall time.
func TestPerfettoTrace(t *testing.T) {
	sch := schema(t)
	for name, dir := range runs {
		res := analyzed(t, dir)
		var b bytes.Buffer
		if err := WritePerfetto(&b, res); err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("%s: not JSON: %v", name, err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Fatalf("%s: schema: %v", name, err)
		}
		var tr Trace
		dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tr); err != nil {
			t.Fatal(err)
		}
		// Tracks and flows across machines need the hosts' values (on
		// 160003 only incomplete pings, seen by the sender VM alone, remain).
		hosts := false
		for _, e := range tr.TraceEvents {
			hosts = hosts || e.Name == "Total_s"
		}
		checkNesting(t, name, tr.TraceEvents, hosts)
		checkFlows(t, name, tr.TraceEvents, hosts)
		// The origin tools print values rounded to 0.1 or 1 µs, so a
		// residual derived from them and its drawn halves differ by that.
		tol := 2 * eps
		if res.Source == "origin" {
			tol = 1
		}
		checkValues(t, name, res, &tr, tol)
	}
}

const eps = 0.0015 // µs: ts and dur are printed with ns resolution

func checkNesting(t *testing.T, name string, evs []Event, hosts bool) {
	t.Helper()
	byTrack := map[track][]Event{}
	for _, e := range evs {
		if e.Ph == "X" {
			byTrack[track{e.Pid, e.Tid}] = append(byTrack[track{e.Pid, e.Tid}], e)
		}
	}
	if hosts && len(byTrack) < 4 {
		t.Errorf("%s: %d tracks", name, len(byTrack))
	}
	for tk, s := range byTrack {
		sort.SliceStable(s, func(i, j int) bool {
			if s[i].Ts != s[j].Ts {
				return s[i].Ts < s[j].Ts
			}
			return *s[i].Dur > *s[j].Dur
		})
		var stack []float64 // end times
		for _, e := range s {
			for len(stack) > 0 && e.Ts >= stack[len(stack)-1]-eps {
				stack = stack[:len(stack)-1]
			}
			end := e.Ts + *e.Dur
			if len(stack) > 0 && end > stack[len(stack)-1]+eps {
				t.Errorf("%s: track %v: %s [%.3f, %.3f] overlaps its enclosing slice (ends %.3f)", name, tk, e.Name, e.Ts, end, stack[len(stack)-1])
				return
			}
			stack = append(stack, end)
		}
	}
}

func checkFlows(t *testing.T, name string, evs []Event, hosts bool) {
	t.Helper()
	inSlice := func(e Event) bool {
		for _, x := range evs {
			if x.Ph == "X" && x.Pid == e.Pid && x.Tid == e.Tid && e.Ts >= x.Ts-eps && e.Ts <= x.Ts+*x.Dur+eps {
				return true
			}
		}
		return false
	}
	ends := map[int]string{}
	n := 0
	for _, e := range evs {
		if e.Ph != "s" && e.Ph != "f" {
			continue
		}
		n++
		ends[e.ID] += e.Ph
		if !inSlice(e) {
			t.Errorf("%s: flow %d %s at %.3f on %d/%d is not inside a slice", name, e.ID, e.Ph, e.Ts, e.Pid, e.Tid)
		}
	}
	for id, s := range ends {
		if s != "sf" {
			t.Errorf("%s: flow %d has events %q, want one start then one end", name, id, s)
		}
	}
	if hosts && n == 0 {
		t.Errorf("%s: no flows", name)
	}
}

func checkValues(t *testing.T, name string, res *analyze.Result, tr *Trace, tol float64) {
	t.Helper()
	type key struct{ id, seq uint16 }
	pings := map[key]*analyze.Ping{}
	for i := range res.Pings {
		pings[key{res.Pings[i].ID, res.Pings[i].Seq}] = &res.Pings[i]
	}
	index := map[string]int{}
	for v, n := range analyze.ValueNames {
		index[n] = v
	}
	origin, err := strconv.ParseInt(tr.OtherData["time_origin_unix_ns"].(string), 10, 64)
	if err != nil {
		t.Fatalf("%s: time origin: %v", name, err)
	}
	sums := map[key]map[string]float64{}
	rtts, checked := 0, 0
	for _, e := range tr.TraceEvents {
		if e.Ph != "X" {
			continue
		}
		k := key{uint16(e.Args["icmp_id"].(float64)), uint16(e.Args["icmp_seq"].(float64))}
		p := pings[k]
		if p == nil {
			t.Fatalf("%s: slice %s for unknown ping %v", name, e.Name, k)
		}
		got := e.Args["value_us"].(float64)
		if sums[k] == nil {
			sums[k] = map[string]float64{}
		}
		sums[k][e.Name] += got
		if e.Name == "RTT" {
			rtts++
			if res.SharedClk && math.Abs(e.Ts-float64(p.Time-origin)/1000) > eps {
				t.Errorf("%s: seq %d starts at %.3f µs, its wall time says %.3f", name, k.seq, e.Ts, float64(p.Time-origin)/1000)
			}
		}
		v, ok := index[e.Name]
		if !ok || e.Cat == "estimated" || v == analyze.ValResidS || v == analyze.ValResidR {
			continue
		}
		want, ok := p.Get(v)
		if !ok {
			t.Errorf("%s: seq %d: %s drawn but not an accepted value", name, k.seq, e.Name)
			continue
		}
		// Drawn as long as measured (a middle part may be drawn up to 1 µs
		// shorter where origin logs' rounding makes the parts exceed their total).
		if math.Abs(got-float64(want)/1000) > eps || got >= 0 && (*e.Dur > got+eps || *e.Dur < got-1) {
			t.Errorf("%s: seq %d: %s is %.3f µs (dur %.3f), the analysis says %.3f", name, k.seq, e.Name, got, *e.Dur, float64(want)/1000)
		}
		checked++
	}
	for k, s := range sums {
		p := pings[k]
		for _, pair := range [][2]int{{analyze.ValResidS, -1}, {analyze.ValResidR, -1}, {analyze.SegCJ, 0}} {
			want, ok := p.Get(pair[0])
			got, drawn := s[analyze.ValueNames[pair[0]]]
			if pair[0] == analyze.SegCJ {
				got, drawn = s["C"]+s["J"], s["C"] != 0 || s["J"] != 0
			}
			if ok && drawn && math.Abs(got-float64(want)/1000) > tol {
				t.Errorf("%s: seq %d: %s slices add up to %.3f µs, the analysis says %.3f", name, k.seq, analyze.ValueNames[pair[0]], got, float64(want)/1000)
			}
		}
	}
	want := 0
	for i := range res.Pings {
		p := &res.Pings[i]
		_, a := p.Get(analyze.SegA)
		_, r := p.Get(analyze.ValRTT)
		_, ip := p.Get(analyze.ValInterS)
		_, m := p.Get(analyze.SegM)
		if a && r && ip && m {
			want++
		}
	}
	if rtts != want || (want > 0 && checked == 0) {
		t.Errorf("%s: %d pings on the timeline (%d values checked), want %d", name, rtts, checked, want)
	}
	t.Logf("%s: %d pings, %d segment values read back, %d events", name, rtts, checked, len(tr.TraceEvents))
}

// TestCSV reads the CSV back: one row per ping, every accepted value in µs,
// every refused one in the refused column and not in its own.
func TestCSV(t *testing.T) {
	for name, dir := range runs {
		res := analyzed(t, dir)
		var b bytes.Buffer
		if err := WriteCSV(&b, res); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rows) != len(res.Pings)+1 || strings.Join(rows[0], ",") != strings.Join(CSVHeader(), ",") {
			t.Fatalf("%s: %d rows, header %v", name, len(rows), rows[0])
		}
		refused := 0
		for i, row := range rows[1:] {
			p := &res.Pings[i]
			if row[1] != strconv.Itoa(int(p.Seq)) {
				t.Fatalf("%s: row %d is seq %s, want %d", name, i, row[1], p.Seq)
			}
			for v := 0; v < analyze.NumVals; v++ {
				cell := row[5+v]
				x, ok := p.Get(v)
				if !ok {
					if cell != "" {
						t.Errorf("%s: seq %d %s = %q, want empty", name, p.Seq, analyze.ValueNames[v], cell)
					}
					continue
				}
				if got, err := strconv.ParseFloat(cell, 64); err != nil || math.Abs(got*1000-float64(x)) > 0.5 {
					t.Errorf("%s: seq %d %s = %q, want %d ns", name, p.Seq, analyze.ValueNames[v], cell, x)
				}
			}
			if r := row[len(row)-1]; r != "" {
				refused += strings.Count(r, ";") + 1
			}
		}
		if refused != len(res.Excluded) {
			t.Errorf("%s: %d refused values in the CSV, the analysis refused %d", name, refused, len(res.Excluded))
		}
	}
}

// The schema is strict: a phase or a field pingpath does not write, or an X
// slice without its duration, is refused.
func TestSchemaIsStrict(t *testing.T) {
	sch := schema(t)
	for _, bad := range []string{
		`{"traceEvents":[{"name":"A","ph":"B","pid":1,"tid":1,"ts":0}],"displayTimeUnit":"ns","otherData":{}}`,
		`{"traceEvents":[{"name":"A","cat":"measured","ph":"X","pid":1,"tid":1,"ts":0}],"displayTimeUnit":"ns","otherData":{}}`,
		`{"traceEvents":[{"name":"A","cat":"measured","ph":"X","pid":1,"tid":1,"ts":0,"dur":1,"durr":2}],"displayTimeUnit":"ns","otherData":{}}`,
		`{"traceEvents":[{"name":"A","cat":"measured","ph":"X","pid":1,"tid":1,"ts":-1,"dur":1}],"displayTimeUnit":"ns","otherData":{}}`,
		`{"traceEvents":[],"displayTimeUnit":"ns"}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if sch.Validate(inst) == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}
