package lab

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestDaemonExitedRightAfterStart: a process looked at right after
// exec.Cmd.Start returns may not show its command line yet (the kernel
// builds the argument tables after closing the parent's close-on-exec
// pipe), which made a booting host's QEMU look gone; daemonExited says
// "gone" only for a pid that no longer runs, and pids (Down's list) waits
// for the command line.
func TestDaemonExitedRightAfterStart(t *testing.T) {
	l := &Lab{Dir: t.TempDir()}
	if err := os.MkdirAll(l.runDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if l.daemonExited("absent") {
		t.Error("a daemon without a pid file reported gone")
	}
	for i := 0; i < 20; i++ {
		// The lab directory in its argv, as every daemon has.
		cmd := exec.Command("/bin/sh", "-c", "sleep 30; :", l.Dir+"/x")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(l.pidFile("d"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if l.daemonExited("d") {
			t.Errorf("start %d: a running process reported gone", i)
		}
		if pids, err := l.pids(); err != nil || pids["d"] != cmd.Process.Pid {
			t.Errorf("start %d: pids right after the start: %v, %v", i, pids, err)
		}
		_ = cmd.Process.Kill()
		// Not waited for: daemonExited sees the zombie and reaps it.
		gone := false
		for j := 0; j < 5000 && !gone; j++ {
			if gone = l.daemonExited("d"); !gone {
				time.Sleep(time.Millisecond)
			}
		}
		if !gone {
			t.Errorf("start %d: a killed process never reported gone", i)
		}
	}
}
