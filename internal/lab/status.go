package lab

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// statusTimeout bounds Status's dial and banner read per node. sshd on a
// lab bridge answers in milliseconds, but on a loaded machine (parallel test
// packages, a kernel matrix) a second has not always been enough.
const statusTimeout = 3 * time.Second

// NodeStatus is what Status found for one node.
type NodeStatus struct {
	Node      string
	Netns     string
	NetnsOK   bool   // the namespace exists
	SSHDPid   int    // 0 when the sshd of the pid file is not running
	SSHBanner string // the server's identification line when it answered
	Err       string // why SSH did not answer
}

// OK reports whether the node is fully there.
func (s NodeStatus) OK() bool { return s.NetnsOK && s.SSHDPid != 0 && s.SSHBanner != "" }

// Status checks each node: namespace, sshd process, and an SSH banner on
// its management address. It also reports the other daemons (TAP backends,
// wire relay) by name with their pid, or 0 when not running.
func (l *Lab) Status(ctx context.Context) ([]NodeStatus, map[string]int) {
	pids, _ := l.pids()
	out := make([]NodeStatus, len(l.Nodes))
	var wg sync.WaitGroup
	for i, n := range l.Nodes {
		out[i] = NodeStatus{Node: n.Name, Netns: n.Netns, NetnsOK: netnsExists(n.Netns), SSHDPid: pids["sshd-"+n.Name]}
		if l.IsKVM() {
			// The node is a machine: its QEMU (a VM's: its host's, which
			// runs the VM's QEMU inside) stands for namespace and sshd.
			out[i].NetnsOK, out[i].SSHDPid = true, pids[qemuDaemon(l.hostOf(n))]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := statusTimeout
			if l.IsKVM() {
				timeout = kvmSSHTimeout
			}
			banner, err := sshBanner(ctx, n.MgmtIP, timeout)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			out[i].SSHBanner = banner
		}()
	}
	wg.Wait()
	daemons := map[string]int{}
	for _, name := range l.daemonNames() {
		daemons[name] = pids[name]
	}
	return out, daemons
}

// daemonNames lists the background processes other than sshd that the lab
// runs: the TAP backends and the wire relay, when it has them.
func (l *Lab) daemonNames() []string {
	var names []string
	if l.IsKVM() {
		names = append(names, qemuDaemon(SenderHost), qemuDaemon(ReceiverHost))
	}
	if l.VMLink == VMLinkTap {
		names = append(names, "tap-sender", "tap-receiver")
	}
	if l.Wire == WireRelay {
		names = append(names, "wire")
	}
	return names
}

// checkDaemons fails when a background process has already exited (a
// relay that could not open its sockets, say), naming its log.
func (l *Lab) checkDaemons() error {
	pids, err := l.pids()
	if err != nil {
		return err
	}
	for _, name := range l.daemonNames() {
		if pids[name] == 0 {
			return fmt.Errorf("%s exited right after starting (log: %s)", name, l.LogFile(name))
		}
	}
	return nil
}
