// Package kallsyms resolves kernel text addresses (for example the
// "location" of skb:kfree_skb) to "symbol+0xoff" using /proc/kallsyms.
package kallsyms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Table is a sorted list of kernel text symbols.
type Table struct {
	addrs []uint64
	names []string
}

// Load reads /proc/kallsyms. Addresses read as zero (no CAP_SYSLOG, or
// kptr_restrict) make every lookup return "".
func Load() (*Table, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("opening kallsyms: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads the kallsyms format ("addr type name [module]"), keeping text
// symbols (types t and T).
func Parse(r io.Reader) (*Table, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %d: bad address %q: %w", line, f[0], err)
		}
		if a == 0 {
			continue
		}
		syms = append(syms, sym{a, f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	t := &Table{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		t.addrs[i], t.names[i] = s.addr, s.name
	}
	return t, nil
}

// Resolve returns "name+0xoff" for addr, or "" when addr is not inside a
// known text symbol.
func (t *Table) Resolve(addr uint64) string {
	if t == nil || addr == 0 {
		return ""
	}
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr }) - 1
	if i < 0 {
		return ""
	}
	return fmt.Sprintf("%s+%#x", t.names[i], addr-t.addrs[i])
}
