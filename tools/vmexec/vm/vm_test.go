package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func fakeKernel(t *testing.T) Kernel {
	t.Helper()
	k := Kernel{Series: "6.99", Release: "6.99.0-test", Root: t.TempDir()}
	dir := k.ModulesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dep := "kernel/drivers/vhost/vhost_net.ko: kernel/drivers/vhost/vhost.ko kernel/drivers/vhost/vhost_iotlb.ko kernel/drivers/net/tun.ko kernel/drivers/net/tap.ko\n" +
		"kernel/drivers/vhost/vhost.ko: kernel/drivers/vhost/vhost_iotlb.ko\n" +
		"kernel/drivers/vhost/vhost_iotlb.ko:\n" +
		"kernel/drivers/net/tun.ko:\n" +
		"kernel/drivers/net/tap.ko:\n" +
		"kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n" +
		"kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n" +
		"kernel/net/llc/llc.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/packet/af_packet.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestModuleOrderPutsDependenciesFirst(t *testing.T) {
	k := fakeKernel(t)
	got, err := k.ModuleOrder([]string{"bridge", "vhost-net", "tun", "af_packet"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/net/llc/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko",
		"kernel/drivers/vhost/vhost_iotlb.ko", "kernel/drivers/vhost/vhost.ko", "kernel/drivers/net/tun.ko",
		"kernel/drivers/net/tap.ko", "kernel/drivers/vhost/vhost_net.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ModuleOrder:\n got %v\nwant %v", got, want)
	}
	if _, err := k.ModuleOrder([]string{"no_such_module"}); err == nil {
		t.Error("ModuleOrder accepted a module the kernel does not have")
	}
}

// TestInitramfsUnpacks checks the cpio writer against busybox cpio (the
// format the kernel unpacks).
func TestInitramfsUnpacks(t *testing.T) {
	bb := testenv.RequireProgram(t, "busybox")
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "testdata", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "testdata", "sub", "odd.txt"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "a.cpio")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	c := newCPIOWriter(f)
	c.Bytes("/t/vm.json", 0o644, []byte(`{"x":1}`))
	c.Symlink("/var/run", "/run")
	c.Tree("/t/testdata", filepath.Join(src, "testdata"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := t.TempDir()
	cmd := exec.Command(bb, "cpio", "-i", "-d", "-F", archive)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, b)
	}
	for file, want := range map[string]string{"t/vm.json": `{"x":1}`, "t/testdata/sub/odd.txt": "abc"} {
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", file, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(out, "var", "run")); err != nil || l != "/run" {
		t.Errorf("var/run -> %q, %v", l, err)
	}
}

// TestMachinesExistInTheirQEMU checks that each architecture's emulator
// has the board, CPU and devices its machine asks for (a renamed device
// or a missing emulator fails here, not in the middle of the matrix).
func TestMachinesExistInTheirQEMU(t *testing.T) {
	emulators := map[string]string{
		"amd64": testenv.RequireProgram(t, QEMUBinary),
		"arm64": testenv.RequireProgram(t, QEMUBinaryARM64),
	}
	for arch, m := range machines {
		qemu := emulators[arch]
		if qemu == "" || filepath.Base(qemu) != m.qemu {
			t.Errorf("%s: machine's emulator %s, tested %s", arch, m.qemu, qemu)
			continue
		}
		help := func(args ...string) string {
			out, err := exec.Command(qemu, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", qemu, args, err, out)
			}
			return string(out)
		}
		board := m.board[slices.Index(m.board, "-M")+1]
		if !slices.ContainsFunc(strings.Split(help("-M", "help"), "\n"), func(l string) bool { return strings.HasPrefix(l, board+" ") }) {
			t.Errorf("%s: %s has no board %s", arch, qemu, board)
		}
		cpu, _, _ := strings.Cut(m.cpu, ",")
		if !strings.Contains(help("-cpu", "help"), cpu) {
			t.Errorf("%s: %s has no CPU %s", arch, qemu, cpu)
		}
		devices := help("-device", "help")
		for i, a := range m.board {
			if a != "-device" {
				continue
			}
			dev, _, _ := strings.Cut(m.board[i+1], ",")
			if !strings.Contains(devices, `name "`+dev+`"`) {
				t.Errorf("%s: %s has no device %s", arch, qemu, dev)
			}
		}
	}
}
