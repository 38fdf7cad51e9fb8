package parse

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

// Fuzz targets, one per parser, seeded with the real origin logs and
// generated streams. They check that no input panics, that memory stays
// bounded (observations never outnumber lines, warnings are capped) and
// that every warning names the file. Run each with
// `go test ./internal/parse -run '^$' -fuzz FuzzX -fuzztime 20s -fuzzminimizetime 3s`
// (or `make fuzz`).

func seedFiles(f *testing.F, names ...string) {
	dirs, _ := filepath.Glob("origin/testdata/anchor-logs/measurement-*")
	for _, d := range dirs {
		for _, n := range names {
			if b, err := os.ReadFile(filepath.Join(d, n)); err == nil {
				// Small seeds keep the fuzzer's minimisation fast: the
				// head of each log holds its banner and a few events.
				if len(b) > 4096 {
					cut := bytes.LastIndexByte(b[:4096], '\n')
					b = b[:cut+1]
				}
				f.Add(b)
			}
		}
	}
}

func checkBounded(t *testing.T, in []byte, fl *File) {
	t.Helper()
	lines := bytes.Count(in, []byte("\n")) + 1
	if len(fl.Obs) > lines || len(fl.Drops) > lines || len(fl.Replies) > lines {
		t.Fatalf("%d obs, %d drops, %d replies from %d lines", len(fl.Obs), len(fl.Drops), len(fl.Replies), lines)
	}
	if len(fl.Warnings) > 201 {
		t.Fatalf("%d warnings (cap 201)", len(fl.Warnings))
	}
	for _, w := range fl.Warnings {
		if !bytes.HasPrefix([]byte(w), []byte("fuzz:")) {
			t.Fatalf("warning without file name: %q", w)
		}
	}
}

// fuzzFormat fuzzes one parser, seeded with the anchor logs of that format.
func fuzzFormat(f *testing.F, parser func(*File, io.Reader) error, seeds ...string) {
	seedFiles(f, seeds...)
	f.Fuzz(func(t *testing.T, in []byte) {
		fl := &File{Path: "fuzz"}
		_ = parser(fl, bytes.NewReader(in))
		checkBounded(t, in, fl)
		// The recognising entry point must not panic either.
		if g, _ := Parse("fuzz", bytes.NewReader(in)); g != nil {
			checkBounded(t, in, g)
		}
	})
}

func FuzzVMText(f *testing.F) { fuzzFormat(f, parseVMText, "send-vm-icmp.log", "recv-vm-icmp.log") }

func FuzzHostText(f *testing.F) {
	fuzzFormat(f, parseHostText, "send-host-icmp.log", "recv-host-icmp.log")
}

func FuzzTunText(f *testing.F) {
	fuzzFormat(f, parseTunText, "send-host-vhost-rx.log", "recv-host-vhost-rx.log")
}

func FuzzVhostTX(f *testing.F) {
	fuzzFormat(f, parseVhostTX, "send-host-kvm-tun.log", "recv-host-kvm-tun.log")
}

func FuzzPing(f *testing.F) {
	f.Add([]byte("PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.\n[1764200000.123456] 64 bytes from 198.18.2.1: icmp_seq=1 ttl=64 time=0.231 ms\n[1764200001.123456] no answer yet for icmp_seq=2\n\n--- 198.18.2.1 ping statistics ---\n2 packets transmitted, 1 received, 50% packet loss, time 1001ms\n"))
	fuzzFormat(f, parsePing)
}

func FuzzRecord(f *testing.F) {
	var b bytes.Buffer
	w := record.NewWriter(&b)
	w.Write(&record.Header{Tool: record.ToolVM, Role: "tx", BootID: "b", StartMonoNS: 1, StartWallNS: 2})
	w.Write(&record.Ping{ID: 1, Seq: 2, Stages: map[string]uint64{"p1_start": 10, "p1_end": 20, "p2_start": 30, "p2_end": 40},
		Devices: map[string]string{"p1_end": "eth0"}, Extra: map[string]string{"q": "1"}})
	w.Write(&record.Drop{ID: 1, Seq: 3, Role: "tx", LastSeen: "p1_end", FirstMissed: "p2_start", Reason: "NO_SOCKET"})
	w.Write(&record.Trailer{ExitReason: "signal", Counters: map[string]uint64{"ringbuf_lost": 1}})
	f.Add(b.Bytes())
	f.Add([]byte(`{"type":"header","schema":"pingpath.trace/v1","tool":"host"}` + "\n" + `{"type":"ping","id":1,"seq":1,"role":"sender","stages":{"req_in":18446744073709551615,"req_out":0}}`))
	fuzzFormat(f, readRecords)
}
