package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon describes a background process of the lab.
type daemon struct {
	name  string   // pid and log file stem: "sshd-sender-vm", "wire", "tap-sender"
	netns string   // namespace it runs in
	argv  []string // argv[0] is an absolute path
	files []*os.File
	// cloneflags adds namespaces of its own (CLONE_NEWUTS for sshd, so each
	// node has its own hostname).
	cloneflags uintptr
}

// start runs the daemon detached (its own session, stdin from /dev/null,
// output to its log file) inside its namespace and writes its pid file. Every
// daemon has the lab directory in its argv: Down checks that before killing
// a pid from a pid file, so a recycled pid is never hit.
func (l *Lab) start(d daemon) (int, error) {
	logf, err := os.OpenFile(l.LogFile(d.name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", d.name, err)
	}
	defer logf.Close()
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = d.files
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: d.cloneflags}
	if err := startInNetns(d.netns, cmd); err != nil {
		return 0, fmt.Errorf("starting %s (%s) in %s: %w", d.name, d.argv[0], d.netns, err)
	}
	pid := cmd.Process.Pid
	// Not waited for: the process outlives `lab up`. Down reaps it when the
	// caller is still its parent (tests).
	_ = cmd.Process.Release()
	if err := os.WriteFile(l.pidFile(d.name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return 0, fmt.Errorf("starting %s: writing pid file: %w", d.name, err)
	}
	return pid, nil
}

func (l *Lab) pidFile(name string) string { return filepath.Join(l.runDir(), name+".pid") }

// pids returns the live processes recorded in the lab's pid files, keyed by
// daemon name. Pid files whose process is gone or is not one of ours (its
// command line does not name the lab directory) are ignored.
func (l *Lab) pids() (map[string]int, error) {
	ents, err := os.ReadDir(l.runDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pid files: %w", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		pid, ok := l.pidOf(name)
		if !ok || !processAlive(pid) || !l.ownsProcess(pid) {
			continue
		}
		out[name] = pid
	}
	return out, nil
}

// daemonExited reports whether the daemon this lab started under name is
// known to be gone: its pid file names a pid that no longer runs (or is a
// zombie). Unlike pids it does not ask whether the pid's command line names
// the lab: right after exec.Cmd.Start returns, the kernel may not have set
// up the new program's arguments yet (Start returns when exec closes the
// parent's close-on-exec pipe, early in loading the binary; /proc/PID/cmdline
// reads empty until the loader has built the argument tables), so the first
// look at a QEMU just started could find a live process "not ours" — a
// host boot failed with "qemu exited" within its first second while its
// QEMU ran on (its log ended with the SIGTERM of the failed boot's own
// stopHost). A process this lab started cannot have had its pid reused
// before it is reaped, which processAlive does.
func (l *Lab) daemonExited(name string) bool {
	// No pid file: not known (it is written right after the start).
	pid, ok := l.pidOf(name)
	return ok && !processAlive(pid)
}

// pidOf reads the pid in the daemon's pid file.
func (l *Lab) pidOf(name string) (int, bool) {
	b, err := os.ReadFile(l.pidFile(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 1
}

// ownsProcess reports whether pid's command line mentions the lab directory.
// sshd rewrites its argv into one process title that still contains the
// original arguments, hence the substring test.
func (l *Lab) ownsProcess(pid int) bool {
	// Empty right after its exec (daemonExited): give it a moment, so that
	// Down right after a start still finds the process it started.
	var b []byte
	var err error
	for i := 0; i <= 20; i++ {
		if b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err != nil || len(b) > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		return false
	}
	cmdline := string(b)
	if strings.Contains(cmdline, l.Dir+"/") {
		return true
	}
	for _, arg := range strings.Split(cmdline, "\x00") {
		if arg == l.Dir {
			return true
		}
	}
	return false
}
