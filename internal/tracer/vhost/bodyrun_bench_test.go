package vhost

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// BenchmarkUnrelatedInjectionRun runs vhost-rx's S5 body (on_kvm_irq, in
// its raw tracepoint rung on kvm:kvm_apic_accept_irq) with
// BPF_PROG_TEST_RUN in a task that took no traced packet: the path every
// interrupt KVM injects on the host takes while no ping is in flight, and
// the arming check the signal chain's fentry and kprobe rungs
// (vhost_signal, eventfd, irqfd_wakeup) run first. This machine has no KVM
// tracepoints, kprobes or fentry, so a test run is the only way to time
// that body here. The kernel's bpf_stats give its run time (the body, and
// bpf_stats' own clock reads: no trampoline or kprobe entry, which
// production adds); "empty" is a program that only returns 0, run the
// same way: the floor under the figure.
func BenchmarkUnrelatedInjectionRun(b *testing.B) {
	testenv.RequireRoot(b)
	spec, err := loadVhost()
	if err != nil {
		b.Fatal(err)
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"s5_tp_apic"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		b.Fatalf("loading s5_tp_apic: %v", err)
	}
	defer objs.Prog.Close()
	empty, err := tracertest.LoadEmptyRawTracepoint()
	if err != nil {
		b.Fatalf("loading an empty program: %v", err)
	}
	defer empty.Close()
	defer tracertest.EnableStats(b).Close()
	args := []uint64{1, 0, 0, 0x23} // apicid, delivery mode, trigger mode, vector
	for _, c := range []struct {
		name string
		prog *ebpf.Program
	}{{"empty", empty}, {"s5_tp_apic", objs.Prog}} {
		b.Run(c.name, func(b *testing.B) { testRuns(b, c.prog, args) })
	}
}

// testRuns runs prog b.N times with BPF_PROG_TEST_RUN and reports its
// bpf_stats run time per run.
func testRuns(b *testing.B, prog *ebpf.Program, args []uint64) {
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := prog.Run(&ebpf.RunOptions{Context: args}); err != nil {
			b.Fatalf("test run: %v", err)
		}
	}
	after, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	st := tracertest.Stat{Runs: after.RunCount - before.RunCount, Time: after.Runtime - before.Runtime}
	if st.Runs < uint64(b.N) {
		b.Fatalf("bpf_stats counted %d runs of %d", st.Runs, b.N)
	}
	b.ReportMetric(st.PerRun(), "bpf-ns/run")
}
