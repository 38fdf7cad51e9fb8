// Package testenv decides what a test does when the machine lacks something it
// needs (root, a kernel feature, a program): outside CI it skips with the
// reason; in CI (CI=true) it fails, so that a green CI never hides a skipped
// real test.
package testenv

import (
	"os"
	"os/exec"
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

// RequireProgram needs an executable on PATH.
func RequireProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, "needs "+name+" on PATH")
	return p
}
