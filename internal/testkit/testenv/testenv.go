// Package testenv decides what a test does when the machine lacks something it
// needs (root, a kernel feature, a program): outside CI it skips with the
// reason; in CI (CI=true) it fails, so that a green CI never hides a skipped
// real test.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the tests run under CI, where skips are not allowed.
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Require skips (or, in CI, fails) the test when ok is false.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("required in CI but missing: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// RequireRoot needs the test to run as root (namespaces, BPF, sshd).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}

// RequireProgram needs an executable on PATH. (tools/depcheck lists the
// argument of a parameter named program as a program the tests need.)
func RequireProgram(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	Require(t, err == nil, "needs "+program+" on PATH")
	return p
}

// InGuest reports whether the test runs inside the QEMU kernel matrix
// (make test-kernels sets PINGPATH_TEST_GUEST=1 in the guest).
func InGuest() bool { return os.Getenv("PINGPATH_TEST_GUEST") == "1" }

// GuestOnly skips a test everywhere but in the kernel-matrix guest. Such a
// test needs what only the guest kernels have (kprobes, fentry, vhost-net);
// the matrix runs it in CI, so this skip is never the only run of the test.
func GuestOnly(t testing.TB, reason string) {
	t.Helper()
	if !InGuest() {
		t.Skipf("runs in the kernel matrix (make test-kernels) only: %s", reason)
	}
}

// Probe returns the attach rung a tracer test should force
// (PINGPATH_TEST_PROBE: auto|fentry|kprobe|tracepoint), "auto" by default.
// The kernel matrix runs each tracer's tests once per rung.
func Probe() string {
	if p := os.Getenv("PINGPATH_TEST_PROBE"); p != "" {
		return p
	}
	return "auto"
}

// Slowdown is how many times slower than a native guest the tests run
// (PINGPATH_TEST_SLOWDOWN, at least 1): the kernel matrix sets it for
// guests of another architecture than the machine's (arm64 under TCG on
// x86), whose tracers took over 2 minutes to start at load 30. Waits for
// things that only take long (a tracer's start) scale by it.
func Slowdown() int {
	if n, err := strconv.Atoi(os.Getenv("PINGPATH_TEST_SLOWDOWN")); err == nil && n > 1 {
		return n
	}
	return 1
}
