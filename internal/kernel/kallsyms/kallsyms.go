// Package kallsyms resolves kernel text addresses (for example the
// "location" of skb:kfree_skb) to "symbol+0xoff" using /proc/kallsyms.
//
// It keeps no symbol table: the kernel lists 100k+ symbols (several MB as Go
// strings), while a tracer resolves a handful of distinct drop locations in
// a run. Each new address costs one scan of /proc/kallsyms (~0.25 s); the
// answers are cached.
package kallsyms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Resolver resolves kernel text addresses, caching each answer.
type Resolver struct {
	open  func() (io.ReadCloser, error)
	mu    sync.Mutex
	cache map[uint64]string
}

// New returns a Resolver reading /proc/kallsyms.
func New() *Resolver {
	return NewFrom(func() (io.ReadCloser, error) { return os.Open("/proc/kallsyms") })
}

// NewFrom returns a Resolver reading the kallsyms format
// ("addr type name [module]") from what open returns.
func NewFrom(open func() (io.ReadCloser, error)) *Resolver {
	return &Resolver{open: open, cache: map[uint64]string{}}
}

// Resolve returns "name+0xoff" for addr: the text symbol (type t or T) with
// the highest address not above addr. It returns "" when addr is 0, below
// every symbol, or the list is unreadable or hides addresses (read as 0
// without CAP_SYSLOG / with kptr_restrict).
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
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		sp := strings.IndexByte(line, ' ')
		if sp < 0 || len(line) < sp+4 || (line[sp+1] != 't' && line[sp+1] != 'T') {
			continue
		}
		a, err := strconv.ParseUint(line[:sp], 16, 64)
		if err != nil || a == 0 || a > addr || a < bestAddr {
			continue
		}
		name := line[sp+3:]
		if i := strings.IndexAny(name, " \t"); i >= 0 {
			name = name[:i]
		}
		bestAddr, bestName = a, name
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading kallsyms: %w", err)
	}
	if bestName == "" {
		return "", nil
	}
	return fmt.Sprintf("%s+%#x", bestName, addr-bestAddr), nil
}
