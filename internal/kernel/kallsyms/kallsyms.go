// Package kallsyms reads /proc/kallsyms, in both directions a tracer needs:
// Lookup turns function names into address ranges (to recognise a free
// location inside a function), and Resolver turns a text address (for
// example the "location" of skb:kfree_skb) into "symbol+0xoff".
//
// It keeps no symbol table: the kernel lists 100k+ symbols (several MB as Go
// strings, and ~50 ms of kernel time to generate), while a tracer needs a
// handful. Each call streams the file once; Resolver caches its answers.
package kallsyms

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// Path is the kernel's symbol list.
const Path = "/proc/kallsyms"

// Symbol is a kernel text symbol: its address range [Start, End) (End is
// the next higher symbol's address, 0 when none is higher) and the module
// defining it ("" for the core kernel).
type Symbol struct {
	Start, End uint64
	Module     string
}

// entry is one parsed line: "addr type name[\t[module]]". Addresses read as
// 0 when hidden (kptr_restrict, no CAP_SYSLOG).
type entry struct {
	addr   uint64
	text   bool // type t or T (code)
	name   []byte
	module []byte // without brackets; nil for the core kernel
}

// parse parses one kallsyms line; ok is false for malformed lines.
func parse(line []byte) (e entry, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || len(line) < sp+4 {
		return e, false
	}
	a, err := strconv.ParseUint(string(line[:sp]), 16, 64)
	if err != nil {
		return e, false
	}
	name := nameOf(line)
	var module []byte
	if rest := line[sp+3+len(name):]; len(rest) > 0 {
		module = bytes.TrimSpace(rest)
		if len(module) > 1 && module[0] == '[' && module[len(module)-1] == ']' {
			module = module[1 : len(module)-1]
		}
	}
	typ := line[sp+1]
	return entry{addr: a, text: typ == 't' || typ == 'T', name: name, module: module}, true
}

// nameOf returns the name field of a kallsyms line ("addr type name…"),
// nil when the line has none.
func nameOf(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || len(line) < sp+4 {
		return nil
	}
	name := line[sp+3:]
	if i := bytes.IndexAny(name, " \t"); i >= 0 {
		name = name[:i]
	}
	return name
}

// each calls fn for every well-formed line of r.
func each(r io.Reader, fn func(entry)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if e, ok := parse(sc.Bytes()); ok {
			fn(e)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading kallsyms: %w", err)
	}
	return nil
}

// Lookup finds the text symbols names in /proc/kallsyms. Missing names are
// absent from the result. Start is 0 when addresses are hidden.
func Lookup(names []string) (map[string]Symbol, error) {
	f, err := os.Open(Path)
	if err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	defer f.Close()
	return lookup(f, names)
}

// lookup reads the kallsyms format from r. The core kernel's symbols are
// sorted, so a symbol's end is normally the next line's address; when it is
// not higher (module symbols), the smallest higher address of the whole
// file is used, which needs a second pass over the seekable r.
func lookup(r io.ReadSeeker, names []string) (map[string]Symbol, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]Symbol{}
	var pending string // found on the previous line, end not known yet
	var unresolved []string
	err := each(r, func(e entry) {
		if pending != "" {
			sym := out[pending]
			if e.addr > sym.Start {
				sym.End = e.addr
				out[pending] = sym
			} else if sym.Start != 0 {
				unresolved = append(unresolved, pending)
			}
			pending = ""
		}
		if !e.text || !want[string(e.name)] {
			return
		}
		if _, dup := out[string(e.name)]; dup {
			return
		}
		out[string(e.name)] = Symbol{Start: e.addr, Module: string(e.module)}
		pending = string(e.name)
	})
	if err != nil {
		return nil, err
	}
	if pending != "" && out[pending].Start != 0 {
		unresolved = append(unresolved, pending)
	}
	if len(unresolved) == 0 {
		return out, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return out, nil // ends stay 0 (unknown)
	}
	err = each(r, func(e entry) {
		for _, n := range unresolved {
			sym := out[n]
			if e.addr > sym.Start && (sym.End == 0 || e.addr < sym.End) {
				sym.End = e.addr
				out[n] = sym
			}
		}
	})
	return out, err
}

// Data finds the core kernel's data symbols names (variables, any type but
// text) in /proc/kallsyms and returns their addresses; missing names are
// absent, and addresses read 0 when hidden. It stops reading once all are
// found.
func Data(names []string) (map[string]uint64, error) {
	f, err := os.Open(Path)
	if err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	defer f.Close()
	return data(f, names)
}

func data(r io.Reader, names []string) (map[string]uint64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for len(out) < len(want) && sc.Scan() {
		// The name is compared before the line is parsed: of 100k+
		// lines, two are wanted (the address would be converted for each).
		line := sc.Bytes()
		if !want[string(nameOf(line))] {
			continue
		}
		e, ok := parse(line)
		if !ok || e.text || e.module != nil {
			continue
		}
		if _, dup := out[string(e.name)]; !dup {
			out[string(e.name)] = e.addr
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	return out, nil
}

// Resolver resolves kernel text addresses, caching each answer. Each new
// address costs one scan of /proc/kallsyms (~0.25 s); a run sees a handful
// of distinct drop locations.
type Resolver struct {
	open  func() (io.ReadCloser, error)
	mu    sync.Mutex
	cache map[uint64]string
}

// New returns a Resolver reading /proc/kallsyms.
func New() *Resolver {
	return NewFrom(func() (io.ReadCloser, error) { return os.Open(Path) })
}

// NewFrom returns a Resolver reading the kallsyms format
// ("addr type name [module]") from what open returns.
func NewFrom(open func() (io.ReadCloser, error)) *Resolver {
	return &Resolver{open: open, cache: map[uint64]string{}}
}

// Resolve returns "name+0xoff" for addr: the text symbol with the highest
// address not above addr. It returns "" when addr is 0, below every symbol,
// or the list is unreadable or hides addresses.
func (r *Resolver) Resolve(addr uint64) string {
	if addr == 0 {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.cache[addr]; ok {
		return s
	}
	s, err := r.scan(addr)
	if err != nil {
		s = "" // not cached: a later call may succeed
	} else {
		r.cache[addr] = s
	}
	return s
}

func (r *Resolver) scan(addr uint64) (string, error) {
	f, err := r.open()
	if err != nil {
		return "", fmt.Errorf("opening kallsyms: %w", err)
	}
	defer f.Close()
	var bestAddr uint64
	var bestName string
	err = each(f, func(e entry) {
		if !e.text || e.addr == 0 || e.addr > addr || e.addr < bestAddr {
			return
		}
		bestAddr, bestName = e.addr, string(e.name)
	})
	if err != nil || bestName == "" {
		return "", err
	}
	return fmt.Sprintf("%s+%#x", bestName, addr-bestAddr), nil
}
