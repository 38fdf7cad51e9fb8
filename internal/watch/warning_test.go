package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/record"
)

// TestWarningRecords: a tracer's warning record (here the host tracer's
// paged-headers warning) reaches the watcher's log at once and every
// pair's kept stream, between the header and the trailer.
func TestWarningRecords(t *testing.T) {
	keep := t.TempDir()
	var log bytes.Buffer
	c, err := New(Options{Pairs: []string{"p1", "p2"}, KeepDir: keep, Registerer: prometheus.NewRegistry(),
		Logf: func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }})
	if err != nil {
		t.Fatal(err)
	}
	ws := &orchestrate.WatchStream{Node: "receiver-host", Tool: "host", Pairs: []string{"p1", "p2"}}
	line := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	w := record.Warning{Type: record.TypeWarning, AtNS: 5, Code: record.WarnPagedHeaders, Message: "3 frames left unread"}
	c.Line(ws, line(record.Header{Type: record.TypeHeader, Tool: record.ToolHost}))
	c.Line(ws, line(w))
	c.Line(ws, line(record.Trailer{Type: record.TypeTrailer, ExitReason: record.ExitSignal}))
	if got := log.String(); !strings.Contains(got, "host on receiver-host (p1,p2): warning paged-headers: 3 frames left unread") {
		t.Errorf("log %q, want the warning", got)
	}
	for _, p := range []string{"p1", "p2"} {
		b, err := os.ReadFile(filepath.Join(keep, p, "receiver-host.host.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 3 || !strings.Contains(lines[1], `"code":"paged-headers"`) {
			t.Errorf("kept %s: %q, want header, warning, trailer", p, lines)
		}
	}
}
