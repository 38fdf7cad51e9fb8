// Package kvm holds the pieces of the KVM lab that do not depend on the lab
// itself: the machine image (a Debian root built with debootstrap from the
// package list in image/packages, cached by its inputs), each node's
// configuration as QEMU hands it to the guest (fw_cfg), the outer QEMU's
// command line and the console markers the guests print.
//
// Hosts and VMs boot the same image: an ext4 file system made with
// mke2fs -d (never mounted on this machine), read-only under a tmpfs
// overlay, so one file serves every node of every lab. The host's
// /sbin/pingpath-init starts its VM with the real QEMU under -accel kvm
// (nested SVM inside the TCG host), giving the VM the host's own disk.
package kvm

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/tools/vmexec/vm"
)

//go:embed image
var imageFiles embed.FS

// Image defaults.
const (
	DefaultSuite  = "bookworm"
	DefaultMirror = "http://deb.debian.org/debian"
	// DefaultKernel is the kernel series hosts and VMs run (scripts/kernels.sh).
	DefaultKernel = "6.12"
)

// ImageSpec is everything an image is built from; its Key changes with any
// of it, and with the build files embedded in this package.
type ImageSpec struct {
	Kernel vm.Kernel
	Suite  string // Debian suite of the userspace (default DefaultSuite)
	Mirror string // Debian mirror (default DefaultMirror)
	// ExtraPackages are installed on top of image/packages (for example
	// the tracers' dependencies, or Open vSwitch for another data path).
	ExtraPackages []string
	// Headers, when set, are the kernel's headers unpacked into the image
	// (what BCC compiles against; EnsureHeaders).
	Headers *Headers
}

// Headers are a kernel's headers as scripts/kernels.sh --headers unpacks
// them: linux-headers-<release> and its -common package from the kernel's
// own suites, with /lib/modules/<release>/build and source pointing at them.
type Headers struct {
	Root    string // a root tree: usr/src/..., lib/modules/<release>/
	Version string // the packages' Debian version
}

// Image is a built image in the cache.
type Image struct {
	Dir     string // cache directory of this image
	Disk    string // ext4 root file system
	Vmlinuz string // the kernel the hosts boot (vmlinux when extracted)
	Initrd  string
	Release string // the kernel's uname -r
	Key     string
}

// Packages returns the image's package list: image/packages, then the extras.
func (s ImageSpec) Packages() ([]string, error) {
	b, err := imageFiles.ReadFile("image/packages")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(strings.SplitN(line, "#", 2)[0]); len(f) > 0 {
			out = append(out, f...)
		}
	}
	for _, p := range s.ExtraPackages {
		if !validPackage(p) {
			return nil, fmt.Errorf("image package %q: not a Debian package name", p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func validPackage(p string) bool {
	if p == "" {
		return false
	}
	for i, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune("+-.", r)
		if !ok {
			return false
		}
	}
	return true
}

func (s *ImageSpec) fill() {
	if s.Suite == "" {
		s.Suite = DefaultSuite
	}
	if s.Mirror == "" {
		s.Mirror = DefaultMirror
	}
}

// Key identifies the image an ImageSpec builds: a hash of the build files,
// the package list, the suite, the mirror and the kernel release.
func (s ImageSpec) Key() (string, error) {
	s.fill()
	pkgs, err := s.Packages()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "suite=%s\nmirror=%s\nkernel=%s\npackages=%s\n", s.Suite, s.Mirror, s.Kernel.Release, strings.Join(pkgs, ","))
	if s.Headers != nil {
		// Only with headers, so that the images without keep their keys.
		fmt.Fprintf(h, "headers=%s\n", s.Headers.Version)
	}
	err = fs.WalkDir(imageFiles, "image", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := imageFiles.ReadFile(p)
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ImageCacheDir is where images are kept: $PINGPATH_IMAGE_CACHE, else
// .cache/images in the module containing the working directory, else
// pingpath/images in the user's cache directory.
func ImageCacheDir() (string, error) {
	if d := os.Getenv("PINGPATH_IMAGE_CACHE"); d != "" {
		return d, nil
	}
	if root, err := moduleRoot(); err == nil {
		return filepath.Join(root, ".cache", "images"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the image cache (set PINGPATH_IMAGE_CACHE): %w", err)
	}
	return filepath.Join(d, "pingpath", "images"), nil
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// EnsureKernel returns a kernel series from scripts/kernels.sh's cache,
// running the script (found above the working directory) to fetch it when
// it is not cached yet.
func EnsureKernel(ctx context.Context, series string, log io.Writer) (vm.Kernel, error) {
	cache, err := vm.CacheDir()
	if err != nil {
		return vm.Kernel{}, err
	}
	if k, err := vm.LoadKernel(cache, series); err == nil {
		return k, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return vm.Kernel{}, fmt.Errorf("kernel %s is not cached in %s and scripts/kernels.sh is not at hand: %w", series, cache, err)
	}
	fmt.Fprintf(log, "fetching kernel %s (scripts/kernels.sh)\n", series)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kernels.sh"), series)
	cmd.Env = append(os.Environ(), "PINGPATH_KERNEL_CACHE="+cache)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return vm.Kernel{}, fmt.Errorf("fetching kernel %s: %w", series, err)
	}
	return vm.LoadKernel(cache, series)
}

// EnsureHeaders returns the headers of the kernel k from scripts/kernels.sh's
// cache (next to the kernel), running kernels.sh --headers to fetch them
// from the kernel's own suites when they are not cached yet.
func EnsureHeaders(ctx context.Context, k vm.Kernel, log io.Writer) (Headers, error) {
	dir := filepath.Join(filepath.Dir(k.Root), "headers")
	if h, err := loadHeaders(dir, k.Release); err == nil {
		return h, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return Headers{}, fmt.Errorf("headers of kernel %s are not cached in %s and scripts/kernels.sh is not at hand: %w", k.Release, dir, err)
	}
	fmt.Fprintf(log, "fetching the headers of kernel %s (scripts/kernels.sh --headers)\n", k.Release)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kernels.sh"), "--headers", k.Series)
	cmd.Env = append(os.Environ(), "PINGPATH_KERNEL_CACHE="+filepath.Dir(filepath.Dir(k.Root)))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return Headers{}, fmt.Errorf("fetching the headers of kernel %s: %w", k.Release, err)
	}
	return loadHeaders(dir, k.Release)
}

// loadHeaders reads kernels.sh's headers directory of a kernel release.
func loadHeaders(dir, release string) (Headers, error) {
	b, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return Headers{}, fmt.Errorf("kernel headers: %w", err)
	}
	h := Headers{Root: filepath.Join(dir, "root"), Version: strings.TrimSpace(string(b))}
	build := filepath.Join(h.Root, "lib", "modules", release, "build")
	if _, err := os.Lstat(build); err != nil {
		return Headers{}, fmt.Errorf("kernel headers in %s are not those of %s: %w", dir, release, err)
	}
	return h, nil
}

// imageComplete is written last into a built image's directory.
const imageComplete = "complete"

// EnsureImage returns the image spec describes from the cache, building it
// first when it is not there (minutes: debootstrap downloads the packages,
// which the cache's debs/ directory keeps for the next build). Concurrent
// callers wait for one build.
func EnsureImage(ctx context.Context, cache string, spec ImageSpec, log io.Writer) (Image, error) {
	spec.fill()
	key, err := spec.Key()
	if err != nil {
		return Image{}, err
	}
	img := Image{
		Dir: filepath.Join(cache, spec.Kernel.Series+"-"+key), Key: key, Release: spec.Kernel.Release,
	}
	img.Disk = filepath.Join(img.Dir, "disk.img")
	img.Initrd = filepath.Join(img.Dir, "initrd")
	if complete(img.Dir) {
		return img.withKernel(), nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Image{}, fmt.Errorf("creating the image cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock-"+key), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Image{}, fmt.Errorf("locking the image build: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return Image{}, fmt.Errorf("locking the image build: %w", err)
	}
	if complete(img.Dir) { // built by another process meanwhile
		return img.withKernel(), nil
	}
	start := time.Now()
	fmt.Fprintf(log, "building the KVM lab image %s (kernel %s, Debian %s; a few minutes, once)\n", filepath.Base(img.Dir), spec.Kernel.Release, spec.Suite)
	if err := build(ctx, cache, spec, img, log); err != nil {
		return Image{}, fmt.Errorf("building image %s: %w", img.Dir, err)
	}
	fmt.Fprintf(log, "image built in %s: %s\n", time.Since(start).Round(time.Second), img.Dir)
	return img.withKernel(), nil
}

// withKernel picks the kernel the hosts boot: the uncompressed vmlinux
// (PVH entry) when build.sh could extract it, else the vmlinuz.
func (img Image) withKernel() Image {
	img.Vmlinuz = filepath.Join(img.Dir, "vmlinux")
	if _, err := os.Stat(img.Vmlinuz); err != nil {
		img.Vmlinuz = filepath.Join(img.Dir, "vmlinuz")
	}
	return img
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, imageComplete))
	return err == nil
}

// build runs image/build.sh into a scratch directory and renames it into
// place.
func build(ctx context.Context, cache string, spec ImageSpec, img Image, log io.Writer) error {
	pkgs, err := spec.Packages()
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(cache, ".build-"+img.Key+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	files, out := filepath.Join(scratch, "files"), filepath.Join(scratch, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	sub, err := fs.Sub(imageFiles, "image")
	if err != nil {
		return err
	}
	if err := os.CopyFS(files, sub); err != nil {
		return fmt.Errorf("writing the build files: %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(files, "build.sh"))
	cmd.Env = append(os.Environ(),
		"OUT="+out, "SUITE="+spec.Suite, "MIRROR="+spec.Mirror,
		"KROOT="+spec.Kernel.Root, "KVER="+spec.Kernel.Release,
		"PACKAGES="+strings.Join(pkgs, " "), "DEB_CACHE="+filepath.Join(cache, "debs"))
	if spec.Headers != nil {
		cmd.Env = append(cmd.Env, "HEADERS="+spec.Headers.Root)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build.sh: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, imageComplete), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	_ = os.RemoveAll(img.Dir) // an incomplete leftover
	return os.Rename(out, img.Dir)
}
