// Package kernel answers what the running kernel is and offers: release,
// boot id, network namespace, tracefs, traceable symbols and BTF functions,
// and which BPF attach methods work (feature probes). The tracer core turns
// the answers into a tracer.Capabilities for probe-ladder selection.
package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TracefsPath is where tracers mount tracefs when nothing else did.
const TracefsPath = "/sys/kernel/tracing"

// Release returns uname -r.
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// BootID returns /proc/sys/kernel/random/boot_id.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// NetnsInode returns the inode of the calling thread's network namespace.
func NetnsInode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("reading network namespace: %w", err)
	}
	return st.Ino, nil
}

// MonotonicNS returns CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func MonotonicNS() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}

// TracefsMounted reports whether tracefs is mounted at TracefsPath or, on
// old kernels, under debugfs.
func TracefsMounted() bool {
	for _, p := range []string{TracefsPath, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(p + "/events"); err == nil {
			return true
		}
	}
	return false
}

// EnsureTracefs mounts tracefs at TracefsPath when it is not mounted yet.
// Tracepoint (not raw tracepoint) attachment needs it. The mount is left in
// place on exit: it is harmless and others may use it by then.
func EnsureTracefs() error {
	if TracefsMounted() {
		return nil
	}
	if err := unix.Mount("tracefs", TracefsPath, "tracefs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mounting tracefs at %s: %w", TracefsPath, err)
	}
	return nil
}

func tracefsRoot() string {
	if _, err := os.Stat(TracefsPath + "/events"); err == nil {
		return TracefsPath
	}
	return "/sys/kernel/debug/tracing"
}

// HasTracepoint reports whether tracepoint group/name exists (mounting
// tracefs if needed).
func HasTracepoint(group, name string) bool {
	if EnsureTracefs() != nil {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("%s/events/%s/%s", tracefsRoot(), group, name))
	return err == nil
}

// TraceableFunctions returns which of names can carry a kprobe: listed in
// tracefs available_filter_functions when it is readable, otherwise text
// symbols of /proc/kallsyms. The second result names the source used.
func TraceableFunctions(names []string) (map[string]bool, string, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = false
	}
	if len(want) == 0 {
		return want, "", nil
	}
	_ = EnsureTracefs()
	if f, err := os.Open(tracefsRoot() + "/available_filter_functions"); err == nil {
		defer f.Close()
		if err := scanSymbols(f, want, func(fields []string) (string, bool) { return fields[0], true }); err == nil {
			return want, "available_filter_functions", nil
		}
		for n := range want {
			want[n] = false
		}
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, "", fmt.Errorf("reading kallsyms: %w", err)
	}
	defer f.Close()
	err = scanSymbols(f, want, func(fields []string) (string, bool) {
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			return "", false
		}
		return fields[2], true
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading kallsyms: %w", err)
	}
	return want, "kallsyms", nil
}

// scanSymbols marks the names of want seen in r; pick extracts the symbol
// of a line. "name [module]" and "name.isra.0" style suffixes are not
// matched: a probe needs the exact symbol.
func scanSymbols(r interface{ Read([]byte) (int, error) }, want map[string]bool, pick func([]string) (string, bool)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if name, ok := pick(fields); ok {
			if _, w := want[name]; w {
				want[name] = true
			}
		}
	}
	return sc.Err()
}

// HasTracepointAnyGroup reports whether a tracepoint called name exists in any
// group (raw tracepoints are named without their group).
func HasTracepointAnyGroup(name string) bool {
	if EnsureTracefs() != nil {
		return false
	}
	m, _ := filepath.Glob(fmt.Sprintf("%s/events/*/%s", tracefsRoot(), name))
	return len(m) > 0
}

// TextSymbolRange returns [start, end) of kernel text symbol name from
// /proc/kallsyms: its address and the next higher symbol's. It fails when
// the symbol is missing or addresses are hidden (kptr_restrict, no
// CAP_SYSLOG).
func TextSymbolRange(name string) (start, end uint64, err error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return 0, 0, fmt.Errorf("reading kallsyms: %w", err)
	}
	defer f.Close()
	var addrs []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		a, perr := strconv.ParseUint(fields[0], 16, 64)
		if perr != nil || a == 0 {
			continue
		}
		addrs = append(addrs, a)
		if start == 0 && fields[2] == name && (fields[1] == "t" || fields[1] == "T") {
			start = a
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading kallsyms: %w", err)
	}
	if start == 0 {
		return 0, 0, fmt.Errorf("symbol %s not in kallsyms (or addresses hidden)", name)
	}
	for _, a := range addrs {
		if a > start && (end == 0 || a < end) {
			end = a
		}
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("symbol %s: no symbol after it in kallsyms", name)
	}
	return start, end, nil
}
