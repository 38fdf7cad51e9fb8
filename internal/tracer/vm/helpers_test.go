package vm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pingpath/pingpath/internal/cli"
	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/record"
)

// The test binary doubles as the pingpath binary: started with
// PINGPATH_TEST_EXEC_TRACER=1 it runs the CLI. This works in the kernel-matrix
// guest, which has the test binary but no Go toolchain.
const execEnv = "PINGPATH_TEST_EXEC_TRACER"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// tracerProc is a `pingpath trace vm` process running in a namespace.
type tracerProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    string // stdout file
	stderr *bytes.Buffer
	stdin  io.WriteCloser
	ready  string
	// progIDs and linkIDs are the BPF objects the process held when ready
	// (from /proc/PID/fdinfo).
	progIDs []ebpf.ProgramID
	linkIDs []uint32
	done    chan error
	readyc  chan string
}

// startTracer starts the tracer with args in ns and waits for its ready line.
func startTracer(t testing.TB, ns *nettest.Netns, args ...string) *tracerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startTracerBinary(t, exe, ns, args...)
}

// startTracerBinary is startTracer with another pingpath executable.
func startTracerBinary(t testing.TB, exe string, ns *nettest.Netns, args ...string) *tracerProc {
	t.Helper()
	p := startTracerNoWait(t, exe, ns, args...)
	p.waitReady()
	return p
}

func startTracerNoWait(t testing.TB, exe string, ns *nettest.Netns, args ...string) *tracerProc {
	t.Helper()
	var err error
	p := &tracerProc{t: t, out: filepath.Join(t.TempDir(), "trace.out"), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(exe, append([]string{"trace", "vm", "--output", p.out}, args...)...)
	p.cmd.Env = append(os.Environ(), execEnv+"=1")
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := ns.Start(p.cmd); err != nil {
		t.Fatalf("starting tracer: %v", err)
	}
	readyc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.WriteString(line + "\n")
			if strings.HasPrefix(line, "ready ") {
				readyc <- line
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	p.readyc = readyc
	return p
}

// waitReady waits for the ready line and records the process's BPF objects.
func (p *tracerProc) waitReady() {
	p.t.Helper()
	select {
	case p.ready = <-p.readyc:
	case err := <-p.done:
		p.done <- err
		p.t.Fatalf("tracer exited before ready (%v): %s", err, p.stderr)
	case <-time.After(20 * time.Second):
		p.t.Fatalf("tracer not ready after 20 s: %s", p.stderr)
	}
	p.progIDs, p.linkIDs = bpfObjectsOf(p.t, p.cmd.Process.Pid)
	if len(p.progIDs) == 0 {
		p.t.Fatalf("ready tracer holds no BPF programs")
	}
}

// bpfObjectsOf lists the program and link IDs pid holds file descriptors for.
func bpfObjectsOf(t testing.TB, pid int) (progs []ebpf.ProgramID, links []uint32) {
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
		isLink := strings.Contains(string(b), "link_type:")
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
				links = append(links, uint32(id))
			case k == "prog_id" && !isLink && !seenP[id]:
				seenP[id] = true
				progs = append(progs, ebpf.ProgramID(id))
			}
		}
	}
	return progs, links
}

// signal stops the tracer with sig and returns its stream.
func (p *tracerProc) signal(sig os.Signal) *record.Stream {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	return p.wait(15 * time.Second)
}

// wait waits for exit (status 0 required) and parses the output.
func (p *tracerProc) wait(limit time.Duration) *record.Stream {
	p.t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Fatalf("tracer exited with %v: %s", err, p.stderr)
		}
	case <-time.After(limit):
		p.t.Fatalf("tracer did not exit within %v: %s", limit, p.stderr)
	}
	f, err := os.Open(p.out)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	s, err := record.Read(f)
	if err != nil {
		p.t.Fatalf("reading tracer output: %v", err)
	}
	if len(s.Problems) > 0 {
		p.t.Errorf("bad lines in tracer output: %v", s.Problems)
	}
	if s.Trailer == nil {
		p.t.Fatalf("no trailer: %s", p.stderr)
	}
	return s
}

// assertGone checks that the programs and links the tracer held are gone.
// The kernel frees them asynchronously (RCU) after the process exits, so it
// polls for a few seconds.
func (p *tracerProc) assertGone() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := p.stillLoaded()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Errorf("BPF objects of the tracer still present 10 s after exit: %s", strings.Join(left, ", "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *tracerProc) stillLoaded() []string {
	var left []string
	for _, id := range p.progIDs {
		prog, err := ebpf.NewProgramFromID(id)
		if err == nil {
			prog.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		} else if !errors.Is(err, os.ErrNotExist) {
			left = append(left, fmt.Sprintf("program %d (%v)", id, err))
		}
	}
	for _, id := range p.linkIDs {
		lk, err := link.NewFromID(link.ID(id))
		if err == nil {
			lk.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		} else if !errors.Is(err, os.ErrNotExist) {
			left = append(left, fmt.Sprintf("link %d (%v)", id, err))
		}
	}
	return left
}
