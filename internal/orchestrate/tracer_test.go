package orchestrate

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// TestCopyLines checks that the stream reaches the file byte for byte and
// that the hook sees every line whole (without its line ending), including
// lines longer than the read buffer and a final unterminated line.
func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	in := "ready\r\n{\"type\":\"ping\"}\n\n" + long + "\nlast without newline"
	want := []string{"ready", `{"type":"ping"}`, "", long, "last without newline"}
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(in) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got []string
			copyLines(r(), &outFile{out: &output{progress: nopProgress{}}, f: f}, func(l string) { got = append(got, l) })
			data, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != in {
				t.Errorf("file has %d bytes, want the %d streamed", len(data), len(in))
			}
			if len(got) != len(want) {
				t.Fatalf("hook saw %d lines, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("line %d: %.40q, want %.40q", i, got[i], want[i])
				}
			}
		})
	}
}

// chunkReader hands out its data in fixed-size reads, like an SSH channel.
type chunkReader struct {
	data  []byte
	chunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	return n, nil
}

// BenchmarkCopyLines streams tracer records (about 300 bytes a line)
// arriving in 32 KiB reads into a file, as a run does for every tracer.
func BenchmarkCopyLines(b *testing.B) {
	line := `{"type":"ping","id":4242,"seq":17,"dir":"tx","stages":{"p1_start":123456789012,"p1_end":123456789912,"p2_start":123456799012,"p2_end":123456799912},"durations":{"p1":900,"p2":900,"total":10900},"iface":"eth0","cpu":1,"extra":"` + strings.Repeat("z", 90) + "\"}\n"
	data := bytes.Repeat([]byte(line), 10000)
	f, err := os.Create(filepath.Join(b.TempDir(), "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, hook := range []struct {
		name string
		fn   func(string)
	}{{"records", nil}, {"watched", func(string) {}}} {
		b.Run(hook.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					b.Fatal(err)
				}
				copyLines(&chunkReader{data: data, chunk: 32 << 10}, &outFile{out: &output{progress: nopProgress{}}, f: f}, hook.fn)
			}
		})
	}
}
