package origin

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets of this package's own readers (the per-format readers are
// fuzzed through internal/parse). Run with `make fuzz`.

// FuzzLines checks the line reader against an exact oracle, with a tiny
// buffer and line bound so that long lines, lines spanning buffers and
// skipping are all reached: every line of the input is either handed on
// (without its line end) or skipped with a warning, in order, and reading
// always goes on to the end.
func FuzzLines(f *testing.F) {
	f.Add([]byte("short\nline that is longer than forty bytes, much longer\n\r\nlast"), 40)
	f.Add([]byte("Traceback (most recent call last):\n  File \"/tmp/kernel_icmp_rtt.py\", line 1\nException: x\n"), 40)
	f.Add(bytes.Repeat([]byte("y"), 100), 16)
	f.Fuzz(func(t *testing.T, in []byte, maxLine int) {
		if maxLine < 1 || maxLine > 200 {
			maxLine = 40
		}
		type got struct {
			n    int
			line string
		}
		var lines []got
		var warned []int
		sc := scanLines(bytes.NewReader(in), func(n int, _ string, _ ...any) { warned = append(warned, n) },
			func(n int, line []byte) { lines = append(lines, got{n, string(line)}) }, 16, maxLine)
		pieces := bytes.SplitAfter(in, []byte("\n"))
		if len(pieces) > 0 && len(pieces[len(pieces)-1]) == 0 {
			pieces = pieces[:len(pieces)-1]
		}
		if sc.Lines != len(pieces) || sc.Lines != len(lines)+sc.Skipped || sc.Skipped != len(warned) {
			t.Fatalf("%d pieces; scan %d lines, %d handed on, %d skipped, %d warnings", len(pieces), sc.Lines, len(lines), sc.Skipped, len(warned))
		}
		k := 0
		for i, p := range pieces {
			want := bytes.TrimRight(p, "\r\n")
			if len(want) > maxLine {
				continue
			}
			if k >= len(lines) || lines[k].n != i+1 || lines[k].line != string(want) {
				t.Fatalf("line %d: want %q, got %+v", i+1, want, lines[k:])
			}
			k++
		}
		for _, fl := range sc.Failures {
			if fl.Line < 1 || fl.Line > sc.Lines {
				t.Fatalf("failure at line %d of %d", fl.Line, sc.Lines)
			}
		}
	})
}

// FuzzCommands reads commands.log: no input panics, every tool comes from
// a CMD line, and its log is a single word.
func FuzzCommands(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/anchor-logs/measurement-*")
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "commands.log")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := ReadCommands(bytes.NewReader(in), func(int, string, ...any) {})
		if n := bytes.Count(in, []byte("CMD:")); len(c.Tools) > n {
			t.Fatalf("%d tools from %d CMD lines", len(c.Tools), n)
		}
		for _, tl := range c.Tools {
			if bytes.ContainsAny([]byte(tl.Log), " \t\n") || tl.Line < 1 {
				t.Fatalf("tool %+v", tl)
			}
		}
	})
}
