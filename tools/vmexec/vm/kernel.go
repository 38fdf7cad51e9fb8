// Package vm boots one of the Debian kernels cached by scripts/kernels.sh
// under QEMU software emulation (TCG, never KVM) with a single program,
// usually a Go test binary, as its workload, and returns that program's
// output and exit status. It is the engine of tools/vmexec (a `go test
// -exec` runner) and tools/kernelmatrix (make test-kernels).
//
// The guest has no disk: an initramfs holds the running executable itself as
// /init (see GuestInit), the program, its testdata, busybox and the kernel
// modules it asked for. The program's output travels on the second serial
// port, the kernel console on the first, so kernel messages never mix into
// test output.
package vm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModules are the modules every guest loads, with their
// dependencies: what the tracer tests build their topologies from (veth,
// bridge, 8021q, vxlan, dummy) and the vhost-net path (tun, tap, vhost_net);
// every guest also gets its architecture's KVM modules (machine.modules: on
// x86 kvm_amd, on the emulated SVM of DefaultCPUModel, whose irqfd completes
// vhost-rx's path, internal/testkit/kvmirq).
// The guest carries only these modules and cannot load others on demand, so
// test code opens netlink handles for NETLINK_ROUTE only: a default
// vishvananda/netlink handle also opens XFRM and netfilter sockets, which
// need xfrm_user and nfnetlink (add them with PINGPATH_VM_MODULES if a test
// ever needs those families).
var DefaultModules = []string{"veth", "bridge", "8021q", "vxlan", "dummy", "tun", "tap", "vhost_net"}

// Kernel is one kernel unpacked by scripts/kernels.sh.
type Kernel struct {
	Series  string // what was asked for, e.g. "6.12" or "6.12-arm64"
	Release string // uname -r, e.g. "6.12.95+deb12-cloud-amd64"
	Root    string // directory holding boot/ and lib/modules/
	// Arch is the kernel's architecture as GOARCH names it ("amd64",
	// "arm64"), read from the kernel image: the guest's programs must be
	// built for it.
	Arch string
}

// CacheDir is where scripts/kernels.sh keeps kernels: $PINGPATH_KERNEL_CACHE,
// or .cache/kernels in the module containing the working directory.
func CacheDir() (string, error) {
	if d := os.Getenv("PINGPATH_KERNEL_CACHE"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the kernel cache: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "kernels"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the kernel cache: no go.mod above the working directory; set PINGPATH_KERNEL_CACHE")
		}
		dir = parent
	}
}

// LoadKernel finds a cached kernel series ("6.1", "6.12").
func LoadKernel(cache, series string) (Kernel, error) {
	dir := filepath.Join(cache, series)
	b, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel %s is not cached in %s (run scripts/kernels.sh %s): %w", series, cache, series, err)
	}
	k := Kernel{Series: series, Release: strings.TrimSpace(string(b)), Root: filepath.Join(dir, "root")}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w (run scripts/kernels.sh --refresh %s)", series, err, series)
	}
	if k.Arch, err = imageArch(k.Vmlinuz()); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w", series, err)
	}
	return k, nil
}

// imageArch tells an x86 bzImage ("HdrS" at 0x202, the boot protocol's
// header) from an arm64 Image ("ARM\x64" at 0x38, its header's magic).
// Debian's arm64 vmlinuz is the uncompressed Image, which QEMU boots as it is.
func imageArch(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("reading the kernel image: %w", err)
	}
	defer f.Close()
	head := make([]byte, 0x206)
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("reading the kernel image %s: %w", file, err)
	}
	switch {
	case string(head[0x202:0x206]) == "HdrS":
		return "amd64", nil
	case string(head[0x38:0x3c]) == "ARM\x64":
		return "arm64", nil
	}
	return "", fmt.Errorf("%s is neither an x86 bzImage nor an arm64 Image", file)
}

// Vmlinuz is the kernel image QEMU boots.
func (k Kernel) Vmlinuz() string {
	return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release)
}

// ModulesDir is lib/modules/<release> on the host.
func (k Kernel) ModulesDir() string {
	return filepath.Join(k.Root, "lib", "modules", k.Release)
}

// moduleName turns a modules.dep path into the name modprobe uses.
func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// ModuleOrder returns the .ko paths (relative to ModulesDir) that loading
// names needs, each module after the modules it depends on. A name that is
// built into the kernel (listed in modules.builtin) is skipped.
func (k Kernel) ModuleOrder(names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(k.ModulesDir(), "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(k.ModulesDir(), "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			builtin[moduleName(sc.Text())] = true
		}
		f.Close()
	}
	var order []string
	done := map[string]bool{}
	var visit func(path string)
	visit = func(path string) {
		if done[path] {
			return
		}
		done[path] = true
		for _, d := range deps[path] {
			visit(d)
		}
		order = append(order, path)
	}
	byName := map[string]string{}
	for path := range deps {
		byName[moduleName(path)] = path
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		path, ok := byName[n]
		if !ok {
			if builtin[n] {
				continue
			}
			return nil, fmt.Errorf("kernel %s has no module %q", k.Release, n)
		}
		visit(path)
	}
	return order, nil
}

// readModulesDep parses modules.dep ("a.ko: b.ko c.ko" per line).
func readModulesDep(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading module dependencies: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return deps, nil
}
