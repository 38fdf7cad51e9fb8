package orchestrate

import (
	"fmt"

	"github.com/pingpath/pingpath/internal/remote"
)

// binaries are the pingpath executables a run can push, opened once: the
// controller's own (Options.Binary) first, then builds for other
// architectures (Options.OtherBinaries), at most one per architecture.
type binaries []*remote.Local

// openBinaries opens and hashes Options.Binary and Options.OtherBinaries.
// An extra binary must be an ELF executable of an architecture no other
// binary has: a node's `uname -m` picks among them.
func openBinaries(o *Options) (binaries, error) {
	var bins binaries
	for i, path := range append([]string{o.Binary}, o.OtherBinaries...) {
		b, err := remote.OpenLocal(path)
		if err != nil {
			bins.Close()
			return nil, fmt.Errorf("reading the pingpath binary to push: %w", err)
		}
		bins = append(bins, b)
		if i == 0 {
			continue
		}
		if b.Arch == "" {
			bins.Close()
			return nil, fmt.Errorf("pingpath binary %s: not an executable of a known architecture (an ELF file built with GOARCH=…)", path)
		}
		for _, other := range bins[:i] {
			if other.Arch == b.Arch {
				bins.Close()
				return nil, fmt.Errorf("pingpath binary %s: a second %s binary (one per architecture)", path, b.Arch)
			}
		}
	}
	return bins, nil
}

// mixed tells whether there is more than one binary, so that a node's
// architecture (its facts) decides which one it gets.
func (b binaries) mixed() bool { return len(b) > 1 }

// forMachine is the binary for a node whose `uname -m` is machine: the one
// of its architecture, or else the controller's own (whose push then
// refuses the node with both architectures named, remote.Local.FitsMachine).
func (b binaries) forMachine(machine string) *remote.Local {
	want := remote.UnameArch(machine)
	for _, l := range b {
		if want != "" && l.Arch == want {
			return l
		}
	}
	return b[0]
}

// Close closes every binary.
func (b binaries) Close() {
	for _, l := range b {
		l.Close()
	}
}
