package orchestrate

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// output is where a run's files go, and what happens when writing one
// fails. A full disk (or quota) does not lose data silently: the write is
// retried every writeRetry, and meanwhile the stream is not read, so the
// node's tracer is slowed down (its ring buffer drops and counts) but keeps
// running; the run says so (state "stalled"). It goes on once space comes
// back, or gives up on the file when the run is stopped or patience runs
// out — the file then ends at its last whole write and the run fails,
// naming it.
type output struct {
	dir      string
	progress Progress
	// stopped is closed when the run is stopped (Ctrl-C).
	stopped <-chan struct{}
	// patience bounds how long one stalled write is retried (0: not at all).
	patience time.Duration
}

// writeRetry is how often a write that failed for lack of space is retried.
const writeRetry = time.Second

// outFile is one output file of the run, written by whole chunks of lines.
type outFile struct {
	out  *output
	role string // the node whose output it is, for progress
	path string

	stalled atomic.Bool // a write is waiting for space

	mu  sync.Mutex
	f   *os.File
	err error // the write error given up on; nothing more is written
}

// create makes (truncates) a file of the run directory.
func (o *output) create(role, name string) (*outFile, error) {
	p := filepath.Join(o.dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", p, err)
	}
	return &outFile{out: o, role: role, path: p, f: f}, nil
}

// write writes b in full, retrying while the disk is full (see output).
// A nil outFile (output not kept) takes nothing.
func (w *outFile) write(b []byte) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	err := w.out.retryWrite(w.role, w.path, &w.stalled, func() error {
		n, err := w.f.Write(b)
		b = b[n:]
		return err
	})
	if err != nil {
		w.err = fmt.Errorf("writing %s: %w (%d bytes not written)", w.path, bare(err), len(b))
	}
}

// close flushes the file to disk: what is reported written must be there.
func (w *outFile) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	syncErr, closeErr := w.f.Sync(), w.f.Close()
	w.f = nil
	if err := cmp.Or(syncErr, closeErr); err != nil && w.err == nil {
		w.err = fmt.Errorf("writing %s: %w", w.path, bare(err))
	}
}

// failed is the file's write error (nil when all of it is on disk).
func (w *outFile) failed() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// retryWrite runs write (which carries on where it stopped) until it
// succeeds: at once for most errors, while the disk is full for the others
// until the run is stopped or patience runs out; stalled is set meanwhile.
// what names the file.
func (o *output) retryWrite(role, what string, stalled *atomic.Bool, write func() error) error {
	var giveUp <-chan time.Time
	defer stalled.Store(false)
	for {
		err := write()
		switch {
		case err == nil:
			if giveUp != nil {
				o.progress.NodeState(role, "resumed", "writing "+what)
			}
			return nil
		case !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT):
			return err
		case giveUp == nil:
			stalled.Store(true)
			giveUp = time.After(o.patience)
			o.progress.NodeState(role, "stalled", fmt.Sprintf("stalled writing %s: %v; retrying every %s (free some space, or Ctrl-C)", what, bare(err), writeRetry))
		}
		select {
		case <-o.stopped:
			return err
		case <-giveUp:
			return err
		case <-time.After(writeRetry):
		}
	}
}

// bare drops the path from a file operation's error, for messages that
// name the file already.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
