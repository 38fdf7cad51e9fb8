// Package kernel answers what the running kernel is and offers: release,
// boot id, network namespace, tracefs, traceable symbols and BTF functions,
// and which BPF attach methods work (feature probes). The tracer core turns
// the answers into a tracer.Capabilities for probe-ladder selection.
package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// FtracePatched reports which of fns ftrace currently patches (tracefs
// enabled_functions lists every function with an ftrace user: a kprobe on
// its entry, a BPF trampoline's direct call). ok is false when the list
// cannot be read; then nothing is known.
func FtracePatched(fns []string) (map[string]bool, bool) {
	if EnsureTracefs() != nil {
		return nil, false
	}
	b, err := os.ReadFile(tracefsRoot() + "/enabled_functions")
	if err != nil {
		return nil, false
	}
	return ftracePatchedIn(string(b), fns), true
}

// ftracePatchedIn is FtracePatched on the text of enabled_functions.
func ftracePatchedIn(list string, fns []string) map[string]bool {
	want := map[string]bool{}
	for _, fn := range fns {
		want[fn] = true
	}
	patched := map[string]bool{}
	for _, line := range strings.Split(list, "\n") {
		// "irqfd_wakeup [kvm] (1) R   D   M \ttramp: ..."; direct call
		// targets follow on indented lines.
		if f := strings.Fields(line); len(f) > 0 && want[f[0]] && line[0] != ' ' && line[0] != '\t' {
			patched[f[0]] = true
		}
	}
	return patched
}

// TracepointHasField reports whether tracepoint group/name records a field
// called field (from its tracefs format file). Raw tracepoint arguments
// follow the same prototype, so this also tells whether an argument exists
// on this kernel (e.g. consume_skb's location, added in 6.3).
func TracepointHasField(group, name, field string) (bool, error) {
	if err := EnsureTracefs(); err != nil {
		return false, err
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/events/%s/%s/format", tracefsRoot(), group, name))
	if err != nil {
		return false, fmt.Errorf("reading format of tracepoint %s/%s: %w", group, name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		decl, _, ok := strings.Cut(strings.TrimSpace(line), ";")
		if !ok || !strings.HasPrefix(decl, "field:") {
			continue
		}
		f := strings.Fields(decl)
		if len(f) > 0 && strings.TrimLeft(f[len(f)-1], "*") == field {
			return true, nil
		}
	}
	return false, nil
}
