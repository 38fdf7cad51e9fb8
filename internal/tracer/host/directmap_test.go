package host

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestX86DirectMap(t *testing.T) {
	syms := func(m map[string]uint64, err error) func([]string) (map[string]uint64, error) {
		return func([]string) (map[string]uint64, error) { return m, err }
	}
	for _, tc := range []struct {
		name       string
		goarch     string
		data       func([]string) (map[string]uint64, error)
		po, vm     uint64
		vars, fail bool
	}{
		{"randomized layout: the variables' addresses", "amd64",
			syms(map[string]uint64{"page_offset_base": 0xffffffff83a1c0d8, "vmemmap_base": 0xffffffff83a1c0c8}, nil),
			0xffffffff83a1c0d8, 0xffffffff83a1c0c8, true, false},
		{"fixed layout: the 4-level constants", "amd64", syms(map[string]uint64{}, nil), x86PageOffsetL4, x86VmemmapL4, false, false},
		{"addresses hidden", "amd64", syms(map[string]uint64{"page_offset_base": 0, "vmemmap_base": 0}, nil), 0, 0, false, true},
		{"one of two", "amd64", syms(map[string]uint64{"page_offset_base": 0xffffffff83a1c0d8}, nil), 0, 0, false, true},
		{"kallsyms unreadable", "amd64", syms(nil, errors.New("no")), 0, 0, false, true},
		{"another architecture", "arm64", syms(map[string]uint64{}, nil), 0, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			po, vm, vars, err := x86DirectMap(tc.goarch, tc.data)
			if (err != nil) != tc.fail || po != tc.po || vm != tc.vm || vars != tc.vars {
				t.Errorf("got %#x %#x vars %v err %v; want %#x %#x vars %v, failing %v", po, vm, vars, err, tc.po, tc.vm, tc.vars, tc.fail)
			}
		})
	}
}

func TestPagedWarning(t *testing.T) {
	failed := &dmResult{err: errors.New("finding the kernel's direct map: addresses hidden")}
	late := &dmResult{pageOffset: x86PageOffsetL4, vmemmap: x86VmemmapL4, took: 2300 * time.Millisecond}
	for _, tc := range []struct {
		name     string
		res      *dmResult
		unread   uint64
		stopping bool
		want     string // a part of the message; "" for none
	}{
		{"nothing unread, lookup failed", failed, 0, true, ""},
		{"lookup failed: said at once", failed, 3, false, "3 hook crossings"},
		{"lookup failed: the reason", failed, 3, true, "cannot be read on this machine: finding the kernel's direct map: addresses hidden"},
		{"lookup running: nothing said while tracing", nil, 2, false, ""},
		{"lookup running at the stop", nil, 2, true, "had not completed 4.5s after it started"},
		{"lookup done: nothing said while tracing", late, 2, false, ""},
		{"lookup done after the first packets", late, 2, true, "came before the lookup of the kernel's direct map in /proc/kallsyms completed (it took 2.3s)"},
		{"lookup done, nothing unread", late, 0, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pagedWarning(tc.res, 4500*time.Millisecond, tc.unread, tc.stopping)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q in it", got, tc.want)
			}
			if got != "" && !strings.Contains(got, "paged_headers_unread") {
				t.Errorf("%q does not name the trailer counter", got)
			}
		})
	}
}

func TestLookupDirectMap(t *testing.T) {
	release := make(chan struct{})
	found, started := lookupDirectMap(func() (uint64, uint64, bool, error) {
		<-release
		return 1, 2, true, nil
	})
	select {
	case <-found:
		t.Fatal("a result before the lookup returned")
	default:
	}
	close(release)
	r := <-found
	if r.pageOffset != 1 || r.vmemmap != 2 || !r.vars || r.err != nil || r.took < 0 || started.IsZero() {
		t.Errorf("result %+v (started %v)", r, started)
	}
}
