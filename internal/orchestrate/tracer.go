package orchestrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote"
)

// running is a started tracer whose output is being streamed to files.
type running struct {
	spec    *tracerSpec
	cmdLine []string // as recorded in the manifest (after sudo wrapping, no secrets)
	proc    remote.Process
	files   []*outFile
	started time.Time

	ready     chan struct{}
	readyOnce sync.Once
	readyAt   time.Duration
	exited    chan struct{}
	code      int
	err       error

	mu       sync.Mutex
	lastLine string // last stderr (or merged) line, for error messages
	failLine string
	stopped  bool // we asked it to stop
	gated    bool // the program waits for release
	released bool
}

// gateScript holds a program until a line arrives on stdin (release); EOF
// instead means it never runs. The read builtin takes one byte at a time
// from a pipe, so the program inherits the rest of stdin (its EOF stop).
const gateScript = `IFS= read -r _ || exit 1; exec "$@"`

// startTracer starts spec on its node and streams its output into out.
// The session is not tied to the run's context: a Ctrl-C must still stop
// the tracer cleanly, which stop does. A gated tracer's session (and the
// node's login shell) starts now, the program itself only on release.
func startTracer(ctx context.Context, out *output, spec *tracerSpec, gated bool) (*running, error) {
	args := spec.args
	if spec.sum != "" {
		args = remote.VerifiedExec(args[0], spec.sum, append([]string{remote.ExecProgram}, args[1:]...)...)
	}
	if gated {
		// The gated session may start before the push is done: the
		// program is checked when it is released.
		args = append([]string{"sh", "-c", gateScript, "sh"}, args...)
	}
	cmd, err := spec.node.sudo(remote.Command{Args: args, Env: spec.env, ReportPID: true})
	if err != nil {
		return nil, err
	}
	rt := &running{spec: spec, ready: make(chan struct{}), exited: make(chan struct{}), started: time.Now(), gated: gated}
	rt.cmdLine = spec.node.recordedArgv(spec.args, spec.env)
	open := func(name string) (*outFile, error) {
		if name == "" {
			return nil, nil // not kept
		}
		f, err := out.create(spec.node.role(), name)
		if err != nil {
			return nil, err
		}
		rt.files = append(rt.files, f)
		return f, nil
	}
	outw, err := open(spec.file)
	if err != nil {
		return nil, err
	}
	errw := outw
	if spec.stderr != "" {
		if errw, err = open(spec.stderr); err != nil {
			rt.closeFiles()
			return nil, err
		}
	}
	rt.proc, err = spec.node.t.Start(context.WithoutCancel(ctx), cmd)
	if err != nil {
		rt.closeFiles()
		return nil, fmt.Errorf("starting %s on %s: %w", spec.tool, spec.node.role(), err)
	}
	var copies sync.WaitGroup
	copies.Add(2)
	// Our tracers print readiness on stderr; origin tools on stdout.
	go func() {
		defer copies.Done()
		copyLines(rt.proc.Stdout(), outw, both(rt.watch(spec.origin), spec.onStdout))
	}()
	go func() {
		defer copies.Done()
		copyLines(rt.proc.Stderr(), errw, rt.watch(true))
	}()
	go func() {
		rt.code, rt.err = rt.proc.Wait()
		copies.Wait()
		rt.closeFiles()
		close(rt.exited)
	}()
	return rt, nil
}

// watch returns the per-line hook of a stream (nil: nothing to look for).
func (rt *running) watch(enabled bool) func(string) {
	if !enabled {
		return nil
	}
	return func(l string) {
		rt.mu.Lock()
		if strings.TrimSpace(l) != "" {
			rt.lastLine = l
		}
		if rt.spec.failed != nil && rt.failLine == "" && rt.spec.failed(l) {
			rt.failLine = l
		}
		rt.mu.Unlock()
		if rt.spec.onLine != nil {
			rt.spec.onLine(l)
		}
		if !rt.isReady() && rt.spec.ready(l) {
			rt.readyOnce.Do(func() {
				rt.mu.Lock()
				rt.readyAt = time.Since(rt.started)
				rt.mu.Unlock()
				close(rt.ready)
			})
		}
	}
}

// both calls a and b (either may be nil).
func both(a, b func(string)) func(string) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(l string) { a(l); b(l) }
}

// copyLines copies r to w as lines arrive, calling onLine for each
// (without its line ending). A final unterminated line is kept. Lines that
// arrived together are written together, in whole lines (streams may share
// w), and before the next read could block, so the file keeps up with the
// stream at one write per read rather than per line.
func copyLines(r io.Reader, w *outFile, onLine func(string)) {
	const size = 64 << 10
	br := bufio.NewReaderSize(r, size)
	var pending []byte // whole lines not yet written
	for {
		start := len(pending)
		var err error
		for {
			var b []byte
			b, err = br.ReadSlice('\n')
			pending = append(pending, b...)
			if err != bufio.ErrBufferFull {
				break // a line longer than the buffer is read in pieces
			}
		}
		if onLine != nil && len(pending) > start {
			onLine(strings.TrimRight(string(pending[start:]), "\r\n"))
		}
		if err != nil || len(pending) >= size || !lineBuffered(br) {
			if len(pending) > 0 {
				w.write(pending)
			}
			pending = pending[:0]
		}
		if err != nil {
			return
		}
	}
}

// lineBuffered tells whether br holds a whole line, which reading next
// will not block for.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

func (rt *running) closeFiles() {
	for _, f := range rt.files {
		f.close()
	}
}

// writeErr tells which of the tracer's output files are not all on disk.
func (rt *running) writeErr() error {
	var errs []error
	for _, f := range rt.files {
		errs = append(errs, f.failed())
	}
	return errors.Join(errs...)
}

// release lets a gated tracer's program start.
func (rt *running) release() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if !rt.gated || rt.released {
		return nil
	}
	rt.released = true
	rt.started = time.Now()
	_, err := rt.proc.Stdin().Write([]byte("\n"))
	return err
}

// renew sends a line to a released tracer's stdin: under --renew-on-stdin
// it renews the tracer's --max-duration.
func (rt *running) renew() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.gated && !rt.released || rt.stopped {
		return nil
	}
	_, err := rt.proc.Stdin().Write([]byte("\n"))
	return err
}

func (rt *running) name() string { return rt.spec.tool + " on " + rt.spec.node.role() }

func (rt *running) isReady() bool {
	select {
	case <-rt.ready:
		return true
	default:
		return false
	}
}

func (rt *running) hasExited() bool {
	select {
	case <-rt.exited:
		return true
	default:
		return false
	}
}

// waitReady waits for the readiness line.
func (rt *running) waitReady(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-rt.ready:
		return nil
	case <-rt.exited:
		select {
		case <-rt.ready:
			return nil
		default:
		}
		return fmt.Errorf("%s exited before it was ready (%s): %s", rt.name(), rt.exitText(), rt.last())
	case <-t.C:
		return fmt.Errorf("%s: no ready line within %s (last output: %q)", rt.name(), timeout, rt.last())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (rt *running) last() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.lastLine
}

func (rt *running) exitText() string {
	if errors.Is(rt.err, remote.ErrConnectionLost) {
		return "connection lost"
	}
	if rt.err != nil {
		return rt.err.Error()
	}
	return "exit " + strconv.Itoa(rt.code)
}

// stopTimeouts are the grace periods of stop.
type stopTimeouts struct {
	Graceful time.Duration // after stdin EOF / SIGINT, before SIGTERM
	Term     time.Duration // after SIGTERM, before SIGKILL
}

// stop ends the tracer: stdin EOF and one SIGINT, then SIGTERM and SIGKILL
// (SSH signal and kill(1) of the reported pid) after the grace periods, and
// finally the session is closed. It returns when the tracer exited or everything was tried.
func (rt *running) stop(ctx context.Context, to stopTimeouts) {
	if rt.hasExited() {
		return // it ended by itself: not stopped by us
	}
	rt.mu.Lock()
	rt.stopped = true
	rt.mu.Unlock()
	_ = rt.proc.CloseStdin()
	// Exactly one SIGINT: a second one would interrupt the origin tools'
	// KeyboardInterrupt handler and lose their summaries. Origin tools get
	// it by kill(1) on their pid (the SSH signal request is optional for
	// servers); ours stop on stdin EOF and get the SSH signal as a second
	// way.
	if rt.spec.origin && rt.proc.PID() > 0 {
		rt.kill(ctx, "INT")
	} else {
		_ = rt.proc.Signal(remote.SIGINT)
	}
	for _, step := range []struct {
		wait time.Duration
		sig  string
	}{{to.Graceful, "TERM"}, {to.Term, "KILL"}, {to.Term, ""}} {
		if rt.waitExit(step.wait) {
			return
		}
		if step.sig == "" {
			break
		}
		_ = rt.proc.Signal(step.sig)
		rt.kill(ctx, step.sig)
	}
	rt.proc.Close()
	select {
	case <-rt.exited:
	case <-time.After(2 * time.Second):
	}
}

// waitExit waits d for the tracer to exit, and longer while its output is
// stalled on a full disk: it keeps running until its data is safe (or the
// write is given up, see output).
func (rt *running) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-rt.exited:
			return true
		case <-t.C:
			if !slices.ContainsFunc(rt.files, func(f *outFile) bool { return f.stalled.Load() }) {
				return false
			}
			t.Reset(writeRetry)
		}
	}
}

// kill signals the tracer's remote pid with kill(1) through a new session.
func (rt *running) kill(ctx context.Context, sig string) {
	pid := rt.proc.PID()
	if pid <= 0 {
		return
	}
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = rt.spec.node.runRoot(kctx, "kill", "-s", sig, strconv.Itoa(pid))
}

// result describes the tracer for the manifest.
func (rt *running) result() manifest.Tracer {
	t := manifest.Tracer{
		Tool: rt.spec.tool, Origin: rt.spec.origin, Command: rt.cmdLine,
		File: rt.spec.file, Stderr: rt.spec.stderr,
	}
	rt.mu.Lock()
	stopped, failLine, readyAt := rt.stopped, rt.failLine, rt.readyAt
	neverRan := rt.gated && !rt.released
	rt.mu.Unlock()
	if rt.isReady() {
		t.ReadyMS = ms(readyAt)
	}
	if neverRan {
		t.State, t.Error = "not-started", "the run ended before this tracer's turn"
		return t
	}
	if !rt.hasExited() {
		t.State, t.Error = "lost", "did not exit after SIGKILL; the --max-duration backstop ends it"
		return t
	}
	switch {
	case errors.Is(rt.err, remote.ErrConnectionLost):
		t.State, t.Error = "lost", "connection to "+rt.spec.node.role()+" lost"
		return t
	case rt.err != nil:
		t.State, t.Error = "lost", rt.err.Error()
		return t
	}
	code := rt.code
	t.ExitCode = &code
	switch {
	case failLine != "":
		t.State, t.Error = "failed", failLine
	case !stopped:
		t.State, t.Error = "failed", "exited early "+rt.exitDescription(code)
	case code == 0 || rt.spec.origin && code == 128+2:
		// Origin tools exit through KeyboardInterrupt (0 or 130).
		t.State = "ok"
	default:
		t.State, t.Error = "failed", rt.exitDescription(code)
	}
	return t
}

// exitDescription says how the tracer ended: its exit status, the signal
// that killed it, and its last output line unless that is only its ready
// line (which says nothing about why it ended).
func (rt *running) exitDescription(code int) string {
	s := fmt.Sprintf("(exit %d)", code)
	if code > 128 && code <= 128+64 {
		s = fmt.Sprintf("(exit %d: killed by %s)", code, unix.SignalName(syscall.Signal(code-128)))
	}
	if l := rt.last(); l != "" && !rt.spec.ready(l) {
		s += ": " + l
	}
	return s
}
