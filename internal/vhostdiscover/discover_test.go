package vhostdiscover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// fakeProc builds a /proc tree: files maps relative paths to contents,
// links maps relative paths to symlink targets.
func fakeProc(t *testing.T, files, links map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const tunInfo = "pos:\t0\nflags:\t0104002\nmnt_id:\t25\nino:\t1091\niff:\t%s\n"

func TestDiscoverKernelThreadWorkers(t *testing.T) {
	// A 5.10 host: QEMU 4242 with two queues on vnet3, vhost workers are
	// kernel threads vhost-4242; another VM on vnet2 with its own worker.
	root := fakeProc(t, map[string]string{
		"4242/comm":           "qemu-kvm\n",
		"4242/fdinfo/30":      fmt.Sprintf(tunInfo, "vnet3"),
		"4242/fdinfo/31":      fmt.Sprintf(tunInfo, "vnet3"),
		"4242/fdinfo/40":      "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1\neventfd-count:                0\neventfd-id: 12\n",
		"4242/task/4242/comm": "qemu-kvm\n",
		"4242/task/4250/comm": "CPU 0/KVM\n",
		"5000/comm":           "qemu-kvm\n",
		"5000/fdinfo/30":      fmt.Sprintf(tunInfo, "vnet2"),
		"811/comm":            "vhost-4242\n",
		"812/comm":            "vhost-4242\n",
		"900/comm":            "vhost-5000\n",
		// A worker named after a thread of QEMU other than the main one.
		"813/comm":   "vhost-4250\n",
		"1/comm":     "systemd\n",
		"1/fdinfo/3": "pos:\t0\nflags:\t02\n",
	}, map[string]string{
		"4242/fd/30": "/dev/net/tun",
		"4242/fd/31": "/dev/net/tun",
		"4242/fd/32": "/dev/vhost-net",
		"4242/fd/33": "/dev/vhost-net",
		"4242/fd/35": "anon_inode:kvm-vm",
		"4242/fd/36": "anon_inode:kvm-vcpu:0",
		"4242/fd/37": "anon_inode:kvm-vcpu:1",
		"4242/fd/40": "anon_inode:[eventfd]",
	})
	r, err := Discover(root, "vnet3", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.TunFiles) != 2 || r.OwnerPID != 4242 || r.OwnerComm != "qemu-kvm" {
		t.Errorf("tun files %+v owner %d %q", r.TunFiles, r.OwnerPID, r.OwnerComm)
	}
	if len(r.Workers) != 3 || r.Workers[0] != (Worker{TID: 811, Kernel: true}) || r.Workers[1].TID != 812 || r.Workers[2].TID != 813 {
		t.Errorf("workers %+v", r.Workers)
	}
	if r.VhostNet != 2 || !r.KVMVM || r.VCPUs != 2 || len(r.EventFDs) != 1 || r.EventFDs[0] != (EventFD{FD: 40, ID: "12"}) {
		t.Errorf("fds: %+v", r)
	}
	t.Log(r.Summary())
}

func TestDiscoverUserThreadWorkers(t *testing.T) {
	// 6.4+: the worker is a thread of QEMU itself.
	root := fakeProc(t, map[string]string{
		"7000/comm":           "qemu-system-x86\n",
		"7000/fdinfo/12":      fmt.Sprintf(tunInfo, "vnet0"),
		"7000/task/7000/comm": "qemu-system-x86\n",
		"7000/task/7003/comm": "vhost-7000\n",
		"7000/task/7004/comm": "CPU 0/KVM\n",
	}, nil)
	r, err := Discover(root, "vnet0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Workers) != 1 || r.Workers[0] != (Worker{TID: 7003}) {
		t.Errorf("workers %+v", r.Workers)
	}
	if got := r.WorkerTIDs(); len(got) != 1 || got[0] != 7003 {
		t.Errorf("WorkerTIDs %v", got)
	}
}

// TestDiscoverSameNameOtherNetns is the lab: each host namespace has a
// vnet0 with its own backend process; the namespace picks the right one.
func TestDiscoverSameNameOtherNetns(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"300/comm":     "pingpath\n",
		"300/fdinfo/7": fmt.Sprintf(tunInfo, "vnet0"),
		"400/comm":     "pingpath\n",
		"400/fdinfo/7": fmt.Sprintf(tunInfo, "vnet0"),
		"400/fdinfo/9": fmt.Sprintf(tunInfo, "vnet0"),
	}, map[string]string{
		"300/ns/net": "net:[4026532001]",
		"400/ns/net": "net:[4026532002]",
	})
	r, err := Discover(root, "vnet0", 4026532002)
	if err != nil {
		t.Fatal(err)
	}
	if r.OwnerPID != 400 || len(r.TunFiles) != 2 {
		t.Errorf("owner %d files %+v, want pid 400 with 2 files", r.OwnerPID, r.TunFiles)
	}
	if r, _ := Discover(root, "vnet0", 0); r.OwnerPID != 0 || len(r.TunFiles) != 3 {
		t.Errorf("without a namespace: owner %d files %+v, want no single owner", r.OwnerPID, r.TunFiles)
	}
	if r, _ := Discover(root, "vnet0", 1); len(r.TunFiles) != 3 {
		t.Errorf("unknown namespace: %+v, want every holder kept", r.TunFiles)
	}
}

func TestDiscoverMissing(t *testing.T) {
	root := fakeProc(t, map[string]string{"1/comm": "init\n", "1/fdinfo/0": "pos:\t0\n"}, nil)
	if _, err := Discover(root, "vnet9", 0); !errors.Is(err, ErrNoTunFile) {
		t.Fatalf("err %v, want ErrNoTunFile", err)
	}
	if _, err := Discover(filepath.Join(root, "nope"), "vnet9", 0); err == nil {
		t.Fatal("no error for a missing proc root")
	}
}

// TestDiscoverLiveTap opens a real tap device in a private network namespace
// and finds this very process as its owner through the real /proc.
func TestDiscoverLiveTap(t *testing.T) {
	testenv.RequireRoot(t)
	name := "vdisc" + strconv.Itoa(os.Getpid()%100000)
	fd := openTapInNewNetns(t, name)
	r, err := Discover("/proc", name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.OwnerPID != os.Getpid() {
		t.Fatalf("owner %d, want this process %d (%+v)", r.OwnerPID, os.Getpid(), r)
	}
	found := false
	for _, tf := range r.TunFiles {
		found = found || tf.FD == fd
	}
	if !found {
		t.Errorf("tun files %+v lack fd %d", r.TunFiles, fd)
	}
}

// openTapInNewNetns creates a tap device in a throwaway network namespace
// (the calling thread switches there and back) and returns its fd.
func openTapInNewNetns(t *testing.T, name string) int {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	testenv.Require(t, err == nil, fmt.Sprintf("/dev/net/tun: %v", err))
	t.Cleanup(func() { unix.Close(fd) })
	// Any namespace would do: the device lives as long as the fd and
	// disappears with it; a new namespace keeps the host's list clean.
	done := make(chan error, 1)
	go func() {
		// unshare moves only this OS thread; it stays locked and so ends
		// with the goroutine, never running other goroutines in the new
		// namespace.
		runtime.LockOSThread()
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			var ifr [unix.IFNAMSIZ + 64]byte
			copy(ifr[:], name)
			*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
			_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNSETIFF), uintptr(unsafe.Pointer(&ifr[0])))
			if e != 0 {
				return e
			}
			return nil
		}()
	}()
	if err := <-done; err != nil {
		t.Fatalf("creating tap %s: %v", name, err)
	}
	return fd
}
