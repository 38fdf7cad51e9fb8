// Package vhostdiscover finds, from a vnet interface name, what the vhost
// tracers need to know about the VM behind it: the process holding the tun
// file (QEMU, or any user space backend), the file descriptors, the vhost
// worker threads, and the eventfd/KVM files of that process. It reads only
// /proc, whose root is a parameter so that tests can use a fabricated tree.
//
// How each fact is found:
//   - tun files: /proc/<pid>/fdinfo/<fd> of a tun/tap file has an "iff:"
//     line with the interface name (tun_chr_show_fdinfo);
//   - vhost workers: threads named "vhost-<tid>" after the owner's thread
//     that set vhost up: kernel threads (their own /proc/<tid>) before
//     Linux 6.4, threads of the owner (/proc/<pid>/task/<tid>) from 6.4 on;
//     both are looked for;
//   - vhost-net, KVM and eventfd files: the owner's /proc/<pid>/fd links
//     ("/dev/vhost-net", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:N",
//     "anon_inode:[eventfd]"). Which eventfd is a queue's call (irqfd) or
//     kick (ioeventfd) is known only inside the kernel; the tracer learns
//     the eventfd_ctx pointers from its events.
package vhostdiscover

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// TunFile is one open tun/tap file of the interface (one per queue).
type TunFile struct {
	PID  int    `json:"pid"`
	FD   int    `json:"fd"`
	Comm string `json:"comm"`
}

// Worker is a vhost worker thread of the owner.
type Worker struct {
	TID int `json:"tid"`
	// Kernel is true for a kernel thread (Linux < 6.4), false for a thread
	// of the owner process (6.4 and later).
	Kernel bool `json:"kernel"`
}

// EventFD is an eventfd the owner holds (its kernel eventfd-id when shown).
type EventFD struct {
	FD int    `json:"fd"`
	ID string `json:"id,omitempty"`
}

// Result is what was found for one interface.
type Result struct {
	Interface string    `json:"interface"`
	TunFiles  []TunFile `json:"tun_files"`
	// OwnerPID is the process holding the tun files (QEMU); 0 when several
	// processes do and none is the obvious owner.
	OwnerPID  int       `json:"owner_pid"`
	OwnerComm string    `json:"owner_comm,omitempty"`
	Workers   []Worker  `json:"vhost_workers,omitempty"`
	VhostNet  int       `json:"vhost_net_fds"` // open /dev/vhost-net files of the owner
	KVMVM     bool      `json:"kvm_vm"`        // the owner runs a KVM VM
	VCPUs     int       `json:"vcpus"`
	EventFDs  []EventFD `json:"eventfds,omitempty"`
}

// ErrNoTunFile is returned when no process holds a tun file of the interface.
var ErrNoTunFile = errors.New("no process holds a tun file of this interface")

// Discover looks the interface up under procRoot ("/proc" on a live system).
// netns, when not 0, is the inode of the network namespace the interface is
// in: interface names repeat across namespaces (every lab host has a
// vnet0), and a tun file's fdinfo shows only the name, so holders in other
// namespaces are left out — unless that leaves none (a tap moved to another
// namespace after it was created), in which case all holders are kept.
func Discover(procRoot, iface string, netns uint64) (*Result, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", iface, err)
	}
	r := &Result{Interface: iface}
	owners := map[int]bool{}
	for _, pid := range pids {
		fds, err := tunFDs(procRoot, pid, iface)
		if err != nil {
			continue // the process exited or is not readable
		}
		for _, fd := range fds {
			r.TunFiles = append(r.TunFiles, TunFile{PID: pid, FD: fd, Comm: readComm(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))})
			owners[pid] = true
		}
	}
	if len(r.TunFiles) == 0 {
		return r, fmt.Errorf("discovering %s under %s: %w", iface, procRoot, ErrNoTunFile)
	}
	if netns != 0 {
		var here []TunFile
		for _, f := range r.TunFiles {
			if processNetns(procRoot, f.PID) == netns {
				here = append(here, f)
			}
		}
		if len(here) > 0 {
			r.TunFiles = here
			owners = map[int]bool{}
			for _, f := range here {
				owners[f.PID] = true
			}
		}
	}
	if len(owners) == 1 {
		r.OwnerPID = r.TunFiles[0].PID
		r.OwnerComm = r.TunFiles[0].Comm
	}
	if r.OwnerPID == 0 {
		return r, nil
	}
	r.Workers = workers(procRoot, r.OwnerPID, pids)
	r.scanOwnerFDs(procRoot)
	return r, nil
}

// processNetns returns the inode of pid's network namespace (from the
// "net:[INODE]" link), 0 when unknown.
func processNetns(procRoot string, pid int) uint64 {
	target, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return 0
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "net:["), "]"), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func listPIDs(procRoot string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// tunFDs returns the fds of pid whose fdinfo names iface.
func tunFDs(procRoot string, pid int, iface string) ([]int, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fdinfo")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if v, ok := fdinfoField(filepath.Join(dir, e.Name()), "iff"); ok && v == iface {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// fdinfoField returns the value of "key:" in an fdinfo file.
func fdinfoField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func readComm(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// workers finds the vhost workers of owner. vhost names a worker
// "vhost-<tid>" after the thread that called VHOST_SET_OWNER (QEMU's main
// thread, so usually the pid; any thread in a Go program), so every
// thread id of the owner counts. Workers are the owner's own threads from
// 6.4 on and kernel threads (their own /proc/<tid>) before.
func workers(procRoot string, owner int, pids []int) []Worker {
	taskDir := filepath.Join(procRoot, strconv.Itoa(owner), "task")
	names := map[string]bool{"vhost-" + strconv.Itoa(owner): true}
	var tids []int
	if ents, err := os.ReadDir(taskDir); err == nil {
		for _, e := range ents {
			if tid, err := strconv.Atoi(e.Name()); err == nil {
				tids = append(tids, tid)
				names["vhost-"+e.Name()] = true
			}
		}
	}
	var out []Worker
	seen := map[int]bool{}
	for _, tid := range tids {
		if names[readComm(filepath.Join(taskDir, strconv.Itoa(tid), "comm"))] {
			out = append(out, Worker{TID: tid})
			seen[tid] = true
		}
	}
	for _, pid := range pids {
		if pid == owner || seen[pid] {
			continue
		}
		if names[readComm(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))] {
			out = append(out, Worker{TID: pid, Kernel: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out
}

func (r *Result) scanOwnerFDs(procRoot string) {
	dir := filepath.Join(procRoot, strconv.Itoa(r.OwnerPID), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch {
		case target == "/dev/vhost-net":
			r.VhostNet++
		case target == "anon_inode:kvm-vm":
			r.KVMVM = true
		case strings.HasPrefix(target, "anon_inode:kvm-vcpu"):
			r.VCPUs++
		case target == "anon_inode:[eventfd]":
			id, _ := fdinfoField(filepath.Join(procRoot, strconv.Itoa(r.OwnerPID), "fdinfo", e.Name()), "eventfd-id")
			r.EventFDs = append(r.EventFDs, EventFD{FD: fd, ID: id})
		}
	}
	sort.Slice(r.EventFDs, func(i, j int) bool { return r.EventFDs[i].FD < r.EventFDs[j].FD })
}

// WorkerTIDs returns the worker thread ids.
func (r *Result) WorkerTIDs() []int {
	out := make([]int, len(r.Workers))
	for i, w := range r.Workers {
		out[i] = w.TID
	}
	return out
}

// Summary is a one-line description for headers and logs.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d tun file(s)", r.Interface, len(r.TunFiles))
	if r.OwnerPID != 0 {
		fmt.Fprintf(&b, " held by pid %d (%s)", r.OwnerPID, r.OwnerComm)
	}
	kernel := 0
	for _, w := range r.Workers {
		if w.Kernel {
			kernel++
		}
	}
	fmt.Fprintf(&b, ", %d vhost worker(s) (%d kernel threads), vhost-net fds %d, kvm vm %t, vcpus %d, eventfds %d",
		len(r.Workers), kernel, r.VhostNet, r.KVMVM, r.VCPUs, len(r.EventFDs))
	return b.String()
}
