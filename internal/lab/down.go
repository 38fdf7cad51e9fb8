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
	// started over SSH, processes started with Exec. One pass over /proc
	// finds them in every namespace, and they are stopped together.
	left, err := netnsPids(l.Namespaces())
	if err != nil {
		errs = append(errs, fmt.Errorf("listing processes in the lab namespaces: %w", err))
	}
	if len(left) > 0 {
		if err := killAndWait(left, time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stopping processes in the lab namespaces: %w", err))
		}
	}
	// 3. Root links: the management veths (deleting the root end deletes
	// the node's end with it) and the bridge. Done before the namespaces,
	// whose links the kernel destroys asynchronously, so that no root link
	// outlives Down. A link of the same name that is not marked as ours
	// belongs to a lab that took our index after we were gone (Down run
	// twice, say by a test and its cleanup): leave it alone.
	for _, name := range l.RootLinks() {
		link, err := netlink.LinkByName(name)
		if err != nil || !l.ownsRootLink(link) {
			continue // gone, or another lab's
		}
		// ENODEV: removed meanwhile.
		if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("deleting link %s: %w", name, err))
		}
	}
	// 4. The namespaces, with everything left in them.
	for _, ns := range l.Namespaces() {
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	// 5. The sudo user, now that its sessions are gone.
	if err := l.removeSudoUser(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("tearing down lab %s: %w", l.Name, errors.Join(errs...))
	}
	// 6. Generated files; lab.json last so a failed Down can be retried.
	for _, p := range []string{l.EnvFile, l.SSHConfig, l.KnownHosts, l.IdentityFile, l.IdentityFile + ".pub"} {
		_ = os.Remove(p)
	}
	for _, d := range []string{l.path("ssh"), l.runDir(), l.kvmDir()} {
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

// ownsRootLink reports whether a root-namespace link with this name was
// made by this lab rather than by a later lab with the same index. A lab
// from a lab.json without an ID (written before IDs existed) owns links by
// name alone.
func (l *Lab) ownsRootLink(link netlink.Link) bool {
	return l.ID == "" || link.Attrs().Alias == l.RootAlias()
}
