package tracertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
)

// Process is a pingpath tracer process (`pingpath trace ...`).
type Process struct {
	t      testing.TB
	Cmd    *exec.Cmd
	out    string // --output file
	stderr syncBuffer
	stdin  io.WriteCloser
	ready  chan string
	done   chan error
	// Ready is the ready line; ProgIDs and LinkIDs are the BPF objects the
	// process held when ready (from /proc/PID/fdinfo).
	Ready   string
	ProgIDs []ebpf.ProgramID
	LinkIDs []link.ID
}

// Starter starts a command, e.g. inside a namespace (nettest.Netns.Start);
// nil starts it here.
type Starter func(*exec.Cmd) error

// StartProcess runs exe with args plus "--output FILE" and env added to the
// environment, through start, without waiting for readiness. The process is
// killed at the end of the test if still running. A tracer (args "trace
// ...") also gets what the kernel matrix's rung forces (--btf: testenv.BTF,
// --probe-read-compat) and, in its guests, --max-cpu GuestMaxCPU, unless
// args name them.
func StartProcess(t testing.TB, start Starter, exe string, env []string, args ...string) *Process {
	t.Helper()
	var err error
	p := &Process{t: t, out: filepath.Join(t.TempDir(), "trace.out"), done: make(chan error, 1), ready: make(chan string, 1)}
	if testenv.InGuest() && !slices.Contains(args, "--max-cpu") {
		args = append(args, "--max-cpu", strconv.FormatFloat(GuestMaxCPU, 'g', -1, 64))
	}
	if tracer := len(args) > 0 && args[0] == "trace"; tracer {
		if f := testenv.BTF(); f != "" && !slices.Contains(args, "--btf") {
			args = append(args, "--btf", f)
		}
		if testenv.ProbeReadCompat() && !slices.Contains(args, "--probe-read-compat") {
			args = append(args, "--probe-read-compat")
		}
	}
	p.Cmd = exec.Command(exe, append(args, "--output", p.out)...)
	p.Cmd.Env = append(os.Environ(), env...)
	if p.stdin, err = p.Cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	p.Cmd.Stderr = pw
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(p.Cmd); err != nil {
		t.Fatalf("starting tracer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.stderr.Write([]byte(line + "\n"))
			if strings.HasPrefix(line, "ready ") {
				p.ready <- line
			}
		}
	}()
	go func() {
		err := p.Cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Stdin is the process's standard input.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Stderr is what the process wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// WaitReady waits for the ready line and records the process's BPF objects.
func (p *Process) WaitReady() {
	p.t.Helper()
	select {
	case p.Ready = <-p.ready:
	case err := <-p.done:
		p.done <- err
		p.t.Fatalf("tracer exited before ready (%v): %s", err, p.Stderr())
	case <-time.After(startTimeout()):
		p.t.Fatalf("tracer not ready after %v: %s", startTimeout(), p.Stderr())
	}
	p.ProgIDs, p.LinkIDs = BPFObjectsOf(p.t, p.Cmd.Process.Pid)
	if len(p.ProgIDs) == 0 {
		p.t.Fatalf("ready tracer holds no BPF programs")
	}
	if slices.Contains(p.Cmd.Args, "--probe-read-compat") {
		checkProbeReadCompat(p.t, p.Cmd.Path, p.Stderr())
	}
}

// Signal stops the process with sig and returns its stream.
func (p *Process) Signal(sig os.Signal) *record.Stream {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			out, _ := os.ReadFile(p.out)
			if len(out) > 2000 {
				out = out[len(out)-2000:]
			}
			p.t.Fatalf("tracer exited before it was stopped; stderr: %s\noutput (tail): %s", p.Stderr(), out)
		}
		p.t.Fatal(err)
	}
	return p.Wait(15 * time.Second)
}

// Wait waits for exit (status 0 required) and parses the output.
func (p *Process) Wait(limit time.Duration) *record.Stream {
	p.t.Helper()
	return ReadStream(p.t, p.WaitExit(limit))
}

// WaitExit waits for exit (status 0 required) and returns the output file's
// contents (any format).
func (p *Process) WaitExit(limit time.Duration) []byte {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			p.t.Fatalf("tracer exited with %v: %s", err, p.Stderr())
		}
	case <-time.After(limit):
		p.t.Fatalf("tracer did not exit within %v: %s", limit, p.Stderr())
	}
	b, err := os.ReadFile(p.out)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

// AssertGone checks that the programs and links the process held are gone.
func (p *Process) AssertGone() {
	p.t.Helper()
	if err := WaitGone(p.ProgIDs, p.LinkIDs, GoneTimeout); err != nil {
		p.t.Error(err)
	}
}

// WaitGone waits until the kernel knows none of progs and links any more.
func WaitGone(progs []ebpf.ProgramID, links []link.ID, timeout time.Duration) error {
	if err := tracer.WaitProgramsUnloaded(progs, timeout); err != nil {
		return err
	}
	return tracer.WaitLinksGone(links, timeout)
}

// BPFObjectsOf lists the program and link IDs pid holds file descriptors for.
func BPFObjectsOf(t testing.TB, pid int) (progs []ebpf.ProgramID, links []link.ID) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seenP, seenL := map[uint64]bool{}, map[uint64]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		isLink := bytes.Contains(b, []byte("link_type:"))
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				continue
			}
			switch {
			case k == "link_id" && !seenL[id]:
				seenL[id] = true
				links = append(links, link.ID(id))
			case k == "prog_id" && !isLink && !seenP[id]:
				seenP[id] = true
				progs = append(progs, ebpf.ProgramID(id))
			}
		}
	}
	return progs, links
}

// StatusKB reads a "Name: N kB" line of /proc/PID/status (0 if absent).
func StatusKB(pid int, name string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}

// CPUSeconds is utime+stime of pid (10 ms resolution; 0 if unreadable).
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends comm: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// PingpathBinary returns $PINGPATH_BIN or builds cmd/pingpath (CGO off,
// trimmed paths), so start time and memory are those of what users run.
// Without a Go toolchain (the kernel-matrix guest) it skips, or fails when
// CI=true.
func PingpathBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PINGPATH_BIN"); p != "" {
		return p
	}
	goBin := testenv.RequireProgram(t, "go")
	out := filepath.Join(t.TempDir(), "pingpath")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "github.com/pingpath/pingpath/cmd/pingpath")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building pingpath: %v\n%s", err, msg)
	}
	return out
}
