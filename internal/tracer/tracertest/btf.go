package tracertest

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
)

// WithoutBTF, where the kernel's BTF is hidden and given to the tracers as
// a file (testenv.BTF: the kernel matrix's btf-file rung), runs a subtest
// that starts the tool without --btf, as on a kernel built without
// CONFIG_DEBUG_INFO_BTF when nobody gave the file: the tracer must refuse
// to start, before loading anything, with what check says of such a node
// (the pahole command for this kernel, --btf and env file btf:, the origin
// BCC scripts as last resort). Elsewhere it does nothing.
func WithoutBTF(t *testing.T, do func(func() error) error, newTool func() (tracer.Tool, error)) {
	t.Helper()
	if testenv.BTF() == "" {
		return
	}
	t.Run("without --btf", func(t *testing.T) {
		if _, err := os.Stat("/sys/kernel/btf/vmlinux"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("PINGPATH_TEST_BTF is set but /sys/kernel/btf/vmlinux is not hidden (%v)", err)
		}
		if do == nil {
			do = func(f func() error) error { return f() }
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout())
		defer cancel()
		ready := false
		err := do(func() error {
			tool, err := newTool()
			if err != nil {
				return err
			}
			return tracer.Run(ctx, tool, tracer.Options{Probe: tracer.ProbeAuto, EventBuffer: testenv.EventBuffer(),
				Duration: time.Second, MaxDuration: 10 * time.Second, MaxCPU: GuestMaxCPU,
				Stdout: io.Discard, Stderr: io.Discard, Stdin: strings.NewReader(""),
				ProcessCPU: func() time.Duration { return 0 }, OnReady: func(*tracer.Loaded) { ready = true }})
		})
		if ready || err == nil {
			t.Fatalf("tracer without --btf on a kernel without visible BTF: ready %v, error %v; want a refusal before loading", ready, err)
		}
		release, _ := kernel.Release()
		for _, want := range []string{kernel.NoBTF(release), "--btf FILE", "btf:", kernel.BTFFileCommand(release), kernel.BTFLastResort} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		t.Logf("without --btf: %v", err)
	})
}

// checkProbeReadCompat: where the old bpf_probe_read helper is forced
// (testenv.ProbeReadCompat), the tracer's stderr must say it replaced some
// calls, so that a rung proving that fallback cannot pass without it.
func checkProbeReadCompat(t testing.TB, where, stderr string) {
	t.Helper()
	if !testenv.ProbeReadCompat() {
		return
	}
	_, line, ok := strings.Cut(stderr, "probe-read-compat: ")
	line, _, _ = strings.Cut(line, "\n")
	n, _, _ := strings.Cut(line, " ")
	if !ok || n == "" || n == "0" {
		t.Fatalf("tracer in %s: bpf_probe_read forced, but stderr does not say any call was replaced: %q", where, stderr)
	}
	t.Logf("tracer in %s: probe-read-compat: %s", where, line)
}

// CheckBTFFile: with the kernel's BTF given as a file (testenv.BTF), no
// stage may use fentry or tp_btf, which attach through the kernel's own BTF
// (the file only serves CO-RE relocations), and the header must say why
// the stages whose ladders start there took a lower rung: a reason naming
// the --btf file.
func CheckBTFFile(t testing.TB, h *record.Header) {
	t.Helper()
	file := testenv.BTF()
	if file == "" || h == nil {
		return
	}
	named := false
	for _, p := range h.Probes {
		if p.Available && (p.Method == string(tracer.Fentry) || p.Method == string(tracer.TpBTF)) {
			t.Errorf("tracer header: stage %s uses %s %s with the kernel's BTF given as a file (--btf %s)", p.Stage, p.Method, p.Target, file)
		}
		named = named || strings.Contains(p.Reason, "--btf "+file)
	}
	if !named {
		t.Errorf("tracer header: no probe's reason names --btf %s: %+v", file, h.Probes)
	}
}
