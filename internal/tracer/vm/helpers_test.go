package vm_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/pingpath/pingpath/internal/cli"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// The test binary doubles as the pingpath binary: started with
// PINGPATH_TEST_EXEC_TRACER=1 it runs the CLI. This works in the kernel-matrix
// guest, which has the test binary but no Go toolchain.
const execEnv = "PINGPATH_TEST_EXEC_TRACER"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// startTracer starts `pingpath trace vm args` (this test binary) in ns and
// waits for its ready line.
func startTracer(t testing.TB, ns *nettest.Netns, args ...string) *tracertest.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startTracerBinary(t, exe, ns, args...)
}

// startTracerBinary is startTracer with another pingpath executable.
func startTracerBinary(t testing.TB, exe string, ns *nettest.Netns, args ...string) *tracertest.Process {
	t.Helper()
	p := tracertest.StartProcess(t, ns.Start, exe, []string{execEnv + "=1"}, append([]string{"trace", "vm"}, args...)...)
	p.WaitReady()
	return p
}

// waitSeqs waits until the tracer has written a ping or drop record for
// every seq of id.
func waitSeqs(t testing.TB, p *tracertest.Process, id uint16, seqs []uint16) {
	t.Helper()
	p.WaitRecords(tracertest.HasSeqs(id, seqs...))
}
