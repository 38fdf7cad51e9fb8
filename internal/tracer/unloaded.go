package tracer

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
)

// WaitProgramsUnloaded waits until none of the programs ids (e.g.
// Loaded.ProgramIDs of a tracer that exited) is known to the kernel any
// more, which happens one RCU grace period after the last reference is
// closed. It returns an error naming a program still loaded after timeout.
// Tests use it to check that a tracer leaves nothing behind.
func WaitProgramsUnloaded(ids []ebpf.ProgramID, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				return fmt.Errorf("looking up program %d: %w", id, err)
			}
			p.Close()
			if time.Now().After(deadline) {
				return fmt.Errorf("program %d still loaded %s after its tracer exited", id, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
