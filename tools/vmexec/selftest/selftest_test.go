// Package selftest checks the kernel-matrix runner itself: it runs only in
// the guest and asserts what the guest promises to tests (modules, mounts,
// devices, environment, testdata).
package selftest

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestGuestEnvironment(t *testing.T) {
	testenv.GuestOnly(t, "checks the QEMU guest's setup")
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	modules := []string{"veth", "bridge", "8021q", "vxlan", "dummy", "tun", "vhost_net"}
	paths := []string{"/sys/kernel/tracing/events", "/sys/kernel/btf/vmlinux", "/dev/vhost-net", "/dev/net/tun", "/sys/fs/bpf"}
	if runtime.GOARCH == "amd64" {
		// KVM on QEMU's emulated SVM (the arm64 guests have no EL2, so
		// their built-in KVM has no /dev/kvm).
		modules = append(modules, "kvm", "kvm_amd")
		paths = append(paths, "/dev/kvm")
	}
	for _, m := range modules {
		if !strings.Contains(string(mods), m+" ") {
			t.Errorf("module %s not loaded; /proc/modules:\n%s", m, mods)
		}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
	if _, err := os.Stat("/sys/kernel/tracing/kprobe_events"); err != nil {
		t.Errorf("kprobe_events missing (kprobes not available?): %v", err)
	}
	b, err := os.ReadFile("testdata/hello.txt")
	if err != nil || strings.TrimSpace(string(b)) != "hello from the host" {
		t.Errorf("testdata/hello.txt = %q, %v", b, err)
	}
	t.Logf("kernel %s", uname(t))
}

func uname(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
