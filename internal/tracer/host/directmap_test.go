package host

import (
	"errors"
	"testing"
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
