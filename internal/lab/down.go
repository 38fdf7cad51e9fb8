package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Down stops every process of the lab and removes its namespaces, links and
// generated files (the logs stay). It works on a half-built lab and on one
// that is already partly gone; it fails only if something it made is still
// there afterwards. It does not stop early when ctx is cancelled — a
// teardown cut short would leave exactly the mess it exists to remove — and
// is bounded by its own timeouts (a few seconds) instead.
func (l *Lab) Down(ctx context.Context) error {
	var errs []error
	// 1. The daemons from the pid files, politely first.
	pids, err := l.pids()
	if err != nil {
		errs = append(errs, err)
	}
	var list []int
	for _, p := range pids {
		list = append(list, p)
	}
	if len(list) > 0 {
		if err := killAndWait(list, 2*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stopping lab processes: %w", err))
		}
	}
	// 2. Anything else still inside a lab namespace: SSH sessions, tracers
	// started over SSH, processes started with Exec.
	for _, ns := range l.Namespaces() {
		if !netnsExists(ns) {
			continue
		}
		left, err := netnsPids(ns)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing processes in %s: %w", ns, err))
			continue
		}
		if len(left) > 0 {
			if err := killAndWait(left, time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stopping processes in %s: %w", ns, err))
			}
		}
	}
	// 3. The namespaces; their links (and the root ends of the management
	// veths) go with them.
	for _, ns := range l.Namespaces() {
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	// 4. Root links: the bridge, and veth ends whose namespace is gone
	// already. Deleting a namespace destroys its links asynchronously, so
	// wait briefly for the root ends of the veths to disappear.
	deadline := time.Now().Add(3 * time.Second)
	for _, name := range l.RootLinks() {
		for {
			link, err := netlink.LinkByName(name)
			if err != nil {
				break // gone
			}
			if name == l.MgmtBridge || time.Now().After(deadline) {
				// ENODEV: the namespace's cleanup removed it meanwhile.
				if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("deleting link %s: %w", name, err))
				}
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tearing down lab %s: %w", l.Name, errors.Join(errs...))
	}
	// 5. Generated files; lab.json last so a failed Down can be retried.
	for _, p := range []string{l.EnvFile, l.SSHConfig, l.KnownHosts, l.IdentityFile, l.IdentityFile + ".pub"} {
		_ = os.Remove(p)
	}
	for _, d := range []string{l.path("ssh"), l.runDir()} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(l.path(StateFile)); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("tearing down lab %s: %w", l.Name, errors.Join(errs...))
	}
	return nil
}
