package kvm

import (
	"bytes"
	"os"
	"strings"
)

// Lines the nodes' /sbin/pingpath-init prints on the console.
const (
	markPrefix    = "pingpath: "
	markNodeReady = "pingpath: node ready"
	markVMReady   = "pingpath: vm ready"
	markVMFailed  = "pingpath: vm failed"
	markFailed    = "pingpath: FAILED"
)

// kernelDeath are console lines of a kernel that will not come up.
var kernelDeath = []string{"Kernel panic", "end Kernel panic", "BUG: kernel NULL pointer", "double fault:", "Oops:"}

// Console is what a host's console has shown so far.
type Console struct {
	NodeReady bool   // the host's sshd is up
	VMReady   bool   // its VM's sshd is up
	VMFailed  bool   // the host gave up on its VM
	Failed    string // the init's FAILED line, or the kernel's death line
	Progress  []string
}

// ReadConsole parses a host's console log.
func ReadConsole(path string) (Console, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Console{}, err
	}
	return parseConsole(b), nil
}

func parseConsole(b []byte) Console {
	var c Console
	for _, raw := range bytes.Split(b, []byte("\n")) {
		line := strings.TrimRight(string(raw), "\r")
		if i := strings.Index(line, markPrefix); i >= 0 {
			msg := line[i:]
			c.Progress = append(c.Progress, msg)
			switch {
			case strings.HasPrefix(msg, markNodeReady):
				c.NodeReady = true
			case strings.HasPrefix(msg, markVMReady):
				c.VMReady = true
			case strings.HasPrefix(msg, markVMFailed):
				c.VMFailed = true
			case strings.HasPrefix(msg, markFailed) && c.Failed == "":
				c.Failed = msg
			}
			continue
		}
		if c.Failed == "" {
			for _, d := range kernelDeath {
				if strings.Contains(line, d) {
					c.Failed = strings.TrimSpace(line)
					break
				}
			}
		}
	}
	return c
}
