// Package kernel answers what the running kernel is and offers: release,
// boot id, network namespace, tracefs, traceable symbols and BTF functions,
// and which BPF attach methods work (feature probes). The tracer core turns
// the answers into a tracer.Capabilities for probe-ladder selection.
package kernel

import (
	"bytes"
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

// HasTracepointAnyGroup reports whether a tracepoint called name exists in any
// group (raw tracepoints are named without their group).
func HasTracepointAnyGroup(name string) bool {
	if EnsureTracefs() != nil {
		return false
	}
	m, _ := filepath.Glob(fmt.Sprintf("%s/events/*/%s", tracefsRoot(), name))
	return len(m) > 0
}

// Kallsyms is a snapshot of /proc/kallsyms. Reading the file costs ~50 ms
// of kernel time, so a tracer reads it at most once and only when a chosen
// probe needs it.
type Kallsyms struct{ data []byte }

// LoadKallsyms reads /proc/kallsyms.
func LoadKallsyms() (*Kallsyms, error) {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	return &Kallsyms{data: b}, nil
}

// find returns the line of text symbol name ("addr t name" or
// "addr T name\t[module]"), or nil.
func (k *Kallsyms) find(name string) []byte {
	d := k.data
	for _, end := range []string{"\n", "\t"} {
		pat := []byte(" " + name + end)
		for off := 0; ; {
			i := bytes.Index(d[off:], pat)
			if i < 0 {
				break
			}
			i += off
			off = i + 1
			if i < 2 || d[i-2] != ' ' || (d[i-1] != 't' && d[i-1] != 'T') {
				continue
			}
			start := bytes.LastIndexByte(d[:i], '\n') + 1
			return d[start:i]
		}
	}
	return nil
}

// HasText reports whether name is a kernel text symbol (a kprobe target).
func (k *Kallsyms) HasText(name string) bool { return k.find(name) != nil }

// Range returns [start, end) of text symbol name: its address and the next
// higher symbol address. It fails when the symbol is missing or addresses
// are hidden (kptr_restrict, no CAP_SYSLOG).
func (k *Kallsyms) Range(name string) (start, end uint64, err error) {
	line := k.find(name)
	if line == nil {
		return 0, 0, fmt.Errorf("symbol %s not in kallsyms", name)
	}
	addr, _, _ := bytes.Cut(line, []byte(" "))
	start, perr := strconv.ParseUint(string(addr), 16, 64)
	if perr != nil || start == 0 {
		return 0, 0, fmt.Errorf("symbol %s: address hidden in kallsyms", name)
	}
	// The core kernel's symbols are sorted: the next line is usually the
	// end. Fall back to a full scan when it is not higher.
	rest := k.data[bytes.Index(k.data, line)+len(line):]
	if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
		if a, err := strconv.ParseUint(string(rest[nl+1:min(len(rest), nl+17)]), 16, 64); err == nil && a > start {
			return start, a, nil
		}
	}
	for _, l := range bytes.Split(k.data, []byte("\n")) {
		f, _, _ := bytes.Cut(l, []byte(" "))
		if a, err := strconv.ParseUint(string(f), 16, 64); err == nil && a > start && (end == 0 || a < end) {
			end = a
		}
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("symbol %s: no symbol after it in kallsyms", name)
	}
	return start, end, nil
}

// TraceableFunctions returns which of names can carry a kprobe: listed in
// tracefs available_filter_functions when it is readable, otherwise text
// symbols of /proc/kallsyms. The second result names the source used.
func TraceableFunctions(names []string) (map[string]bool, string, error) {
	have := map[string]bool{}
	if len(names) == 0 {
		return have, "", nil
	}
	_ = EnsureTracefs()
	if b, err := os.ReadFile(tracefsRoot() + "/available_filter_functions"); err == nil {
		for _, n := range names {
			have[n] = bytes.HasPrefix(b, []byte(n+"\n")) || bytes.Contains(b, []byte("\n"+n+"\n")) ||
				bytes.Contains(b, []byte("\n"+n+" "))
		}
		return have, "available_filter_functions", nil
	}
	k, err := LoadKallsyms()
	if err != nil {
		return nil, "", err
	}
	for _, n := range names {
		have[n] = k.HasText(n)
	}
	return have, "kallsyms", nil
}
