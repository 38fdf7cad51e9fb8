package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// ScanPing must agree with encoding/json on every line it accepts, and
// refuse (ErrSlowPath) the lines outside its subset.
func TestScanPingMatchesJSON(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.Write(&Ping{ID: 7, Seq: 65535, Role: "receiver", Stages: map[string]uint64{"req_in": 2000, "req_out": ^uint64(0)},
		Durations: map[string]int64{"total": -3}, Devices: map[string]string{"req_in": `eth"0`}, Extra: map[string]string{"a": "{[}]"}}); err != nil {
		t.Fatal(err)
	}
	lines := [][]byte{
		bytes.TrimRight(b.Bytes(), "\n"),
		[]byte(` { "seq" : 3 , "type":"ping","id":1,"stages":{} } `),
		[]byte(`{"type":"ping","id":1,"seq":2,"role":"sender","stages":{"p1_start":5,"p1_end":9},"cpu":{"p1_start":1}}`),
	}
	for _, line := range lines {
		got := map[string]uint64{}
		id, seq, role, err := ScanPing(line, func(name []byte, ns uint64) { got[string(name)] = ns })
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var want Ping
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatal(err)
		}
		if id != want.ID || seq != want.Seq || role != want.Role || len(got) != len(want.Stages) {
			t.Errorf("%s: got %d %d %q %v, want %+v", line, id, seq, role, got, want)
		}
		for k, v := range want.Stages {
			if got[k] != v {
				t.Errorf("%s: stage %s = %d, want %d", line, k, got[k], v)
			}
		}
	}
	for _, line := range []string{
		`{"type":"ping","id":70000,"seq":1,"stages":{}}`,
		`{"type":"ping","id":1,"seq":1.5,"stages":{}}`,
		`{"type":"ping","id":1,"seq":1,"stages":{"req\u005fin":1}}`,
		`{"type":"drop","id":1,"seq":1,"stages":{}}`,
		`{"type":"ping","id":1,"seq":1,"stages":{}} trailing`,
		`{"id":1,"seq":1,"stages":{}}`,
		`garbage`,
	} {
		if _, _, _, err := ScanPing([]byte(line), func([]byte, uint64) {}); !errors.Is(err, ErrSlowPath) {
			t.Errorf("%s: err %v, want ErrSlowPath", line, err)
		}
	}
}
