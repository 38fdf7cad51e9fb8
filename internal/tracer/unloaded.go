package tracer

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// WaitProgramsUnloaded waits until none of the programs ids (e.g.
// Loaded.ProgramIDs of a tracer that exited) is known to the kernel any
// more, which happens one RCU grace period after the last reference is
// closed. It returns an error naming a program still loaded after timeout.
// Tests use it to check that a tracer leaves nothing behind.
func WaitProgramsUnloaded(ids []ebpf.ProgramID, timeout time.Duration) error {
	return waitGone("program", ids, timeout, func(id ebpf.ProgramID) (interface{ Close() error }, error) {
		return ebpf.NewProgramFromID(id)
	})
}

// WaitLinksGone is WaitProgramsUnloaded for BPF links.
func WaitLinksGone(ids []link.ID, timeout time.Duration) error {
	return waitGone("link", ids, timeout, func(id link.ID) (interface{ Close() error }, error) {
		return link.NewFromID(id)
	})
}

// waitGone polls open for each id until it reports os.ErrNotExist.
func waitGone[ID ~uint32](what string, ids []ID, timeout time.Duration, open func(ID) (interface{ Close() error }, error)) error {
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			obj, err := open(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				return fmt.Errorf("looking up %s %d: %w", what, id, err)
			}
			obj.Close()
			if time.Now().After(deadline) {
				return fmt.Errorf("%s %d still loaded %s after its tracer exited", what, id, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
