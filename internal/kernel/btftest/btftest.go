// Package btftest fabricates kernel BTF for tests: a spec describing given
// functions (fentry targets) and tracepoints (btf_trace_ typedefs), to test
// probe selection for kernels and modules this machine does not have.
package btftest

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// Spec returns BTF describing funcs as functions and rawTPs as tracepoints.
func Spec(t testing.TB, funcs, rawTPs []string) *btf.Spec {
	t.Helper()
	proto := &btf.FuncProto{Return: &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}
	var types []btf.Type
	for _, fn := range funcs {
		types = append(types, &btf.Func{Name: fn, Type: proto, Linkage: btf.GlobalFunc})
	}
	for _, tp := range rawTPs {
		types = append(types, &btf.Typedef{Name: "btf_trace_" + tp, Type: &btf.Pointer{Target: proto}})
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatalf("building BTF: %v", err)
	}
	s, err := b.Spec()
	if err != nil {
		t.Fatalf("building BTF: %v", err)
	}
	return s
}
