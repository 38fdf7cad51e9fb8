package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its bind mounts; netns.NewNamed uses it
// too, so `ip netns exec NAME` works on the lab's namespaces.
const netnsDir = "/run/netns"

// InNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets, TAP devices and /proc/sys/net files opened by fn belong
// to that namespace; so does a process that fn forks.
func InNetns(name string, fn func() error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	defer ns.Close()
	return onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", name, err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a locked OS thread and switches the thread back
// to its original network namespace afterwards. If that fails the thread
// stays locked, and the runtime discards it when the goroutine ends, so no
// other goroutine ever runs in a namespace by accident. (Simply never
// unlocking is not enough: the main thread is never discarded, and a main
// thread left in a lab namespace would keep the namespace alive.)
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("reading the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the original network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// createNetns makes a named network namespace (like `ip netns add`) and runs
// setup inside it.
func createNetns(name string, setup func() error) error {
	return onLockedThread(func() error {
		ns, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("creating network namespace %s: %w", name, err)
		}
		ns.Close()
		return setup()
	})
}

// netnsExists reports whether /run/netns/NAME exists.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// deleteNetns removes a named namespace; a missing one is not an error.
func deleteNetns(name string) error {
	if !netnsExists(name) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting network namespace %s: %w", name, err)
	}
	return nil
}

// netnsInode returns the inode identifying the named namespace.
func netnsInode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// netnsPids lists the processes whose network namespace is one of the named
// ones, like `ip netns pids NAME` for each, in one pass over /proc.
// Namespaces that do not exist are skipped; one that cannot be inspected
// is reported in the error, and the processes of the others are still
// returned.
func netnsPids(names []string) ([]int, error) {
	inodes := map[uint64]bool{}
	var errs []error
	for _, name := range names {
		if !netnsExists(name) {
			continue
		}
		ino, err := netnsInode(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("network namespace %s: %w", name, err))
			continue
		}
		inodes[ino] = true
	}
	if len(inodes) == 0 {
		return nil, errors.Join(errs...)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue // gone, or a kernel thread we cannot inspect
		}
		if inodes[st.Ino] && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, errors.Join(errs...)
}

// startInNetns starts cmd with the named namespace as its network
// namespace: the fork happens on a thread that has joined it.
func startInNetns(name string, cmd *exec.Cmd) error {
	return InNetns(name, cmd.Start)
}

// processAlive reports whether pid exists and is not a zombie. A zombie child
// of ours is reaped on the way.
func processAlive(pid int) bool {
	var ws unix.WaitStatus
	if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p == pid {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z'
}

// killAndWait sends SIGTERM to each pid, waits up to grace for them to go,
// then SIGKILLs the rest and waits again.
func killAndWait(pids []int, grace time.Duration) error {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	if waitGone(pids, grace) {
		return nil
	}
	for _, p := range pids {
		if processAlive(p) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if waitGone(pids, 3*time.Second) {
		return nil
	}
	var left []int
	for _, p := range pids {
		if processAlive(p) {
			left = append(left, p)
		}
	}
	return fmt.Errorf("processes %v did not exit after SIGKILL", left)
}

func waitGone(pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive := false
		for _, p := range pids {
			if processAlive(p) {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
