package main

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
)

// The committed objects need what docs/kernel-support.md says: fentry
// programs Linux 5.5, every other program 5.3 at most (bounded loops, global
// data), nothing newer without a fallback, and every program well under the
// verifier's limits (4096 instructions was the limit before 5.2).
func TestCommittedObjects(t *testing.T) {
	files, err := filepath.Glob("../../internal/tracer/*/*_bpfel.o")
	if err != nil || len(files) == 0 {
		t.Fatalf("no committed objects (%v)", err)
	}
	n := 0
	for _, f := range files {
		ps, err := Analyze(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			n++
			want := Version{5, 3}
			if p.Type == ebpf.Tracing {
				want = Version{5, 5}
			}
			if got := p.Oldest(); want.Less(got) {
				t.Errorf("%s %s (%s) needs Linux %s (%v), docs/kernel-support.md says %s at most", p.Object, p.Name, p.Type, got, p.Needs, want)
			}
			if p.Instructions == 0 || p.Instructions >= 4096 {
				t.Errorf("%s %s: %d instructions", p.Object, p.Name, p.Instructions)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d programs in %d objects", n, len(files))
	}
}

// The analysis sees what it looks for: a ring buffer with its fallback, a
// loop, global data.
func TestNeedsFound(t *testing.T) {
	ps, err := Analyze("../../internal/tracer/vm/vm_x86_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name != "vm_raw_tp_net_dev_queue" {
			continue
		}
		have := map[string]Need{}
		for _, n := range p.Needs {
			have[n.What] = n
		}
		if n := have["bpf_ringbuf_reserve"]; n.Fallback == "" {
			t.Errorf("ring buffer without fallback: %+v", p.Needs)
		}
		if _, ok := have["global data"]; !ok {
			t.Errorf("no global data: %+v", p.Needs)
		}
		if p.Loops == 0 || p.Oldest() != (Version{5, 3}) {
			t.Errorf("loops %d, oldest %s: %+v", p.Loops, p.Oldest(), p.Needs)
		}
		return
	}
	t.Fatal("vm_raw_tp_net_dev_queue not found")
}
