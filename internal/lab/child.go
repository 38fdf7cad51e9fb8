package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab/tapbackend"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

// The lab's background processes are started as `BINARY lab CHILD ARGS...`
// where CHILD is one of these. The pingpath CLI routes them to ChildMain;
// test binaries do the same through labtest.Main, so tests need no separate
// pingpath build.
const (
	ChildWire       = "wire"        // the wire relay, in the wire namespace
	ChildTapBackend = "tap-backend" // a VM's TAP backend, in its host's namespace
	ChildNodeInit   = "node-init"   // sets a node's hostname, then execs its sshd
)

// ChildNames lists the background process commands.
func ChildNames() []string { return []string{ChildWire, ChildTapBackend, ChildNodeInit} }

// IsChild reports whether args (without the program name) start a lab
// background process: "lab" followed by a child name.
func IsChild(args []string) bool {
	if len(args) < 2 || args[0] != "lab" {
		return false
	}
	for _, c := range ChildNames() {
		if args[1] == c {
			return true
		}
	}
	return false
}

// ChildMain runs background process name with its arguments and returns
// the exit code. Diagnostics go to stderr, which is the process's log file.
func ChildMain(ctx context.Context, name string, args []string, stderr io.Writer) int {
	var err error
	switch name {
	case ChildWire:
		err = runWire(ctx, args, stderr)
	case ChildTapBackend:
		err = runTapBackend(args, stderr)
	case ChildNodeInit:
		err = runNodeInit(args)
	default:
		err = fmt.Errorf("unknown lab process %q", name)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pingpath lab %s: %v\n", name, err)
		return 1
	}
	return 0
}

func runWire(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(ChildWire, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var r wire.Relay
	var clock string
	fs.String("dir", "", "lab directory (identifies the process)")
	fs.StringVar(&r.A, "a", "", "first interface")
	fs.StringVar(&r.B, "b", "", "second interface")
	fs.DurationVar(&r.Impairment.Delay, "delay", 0, "one-way delay")
	fs.DurationVar(&r.Impairment.Jitter, "jitter", 0, "uniform jitter (±)")
	fs.Float64Var(&r.Impairment.Loss, "loss", 0, "loss percentage")
	fs.Uint64Var(&r.Impairment.Seed, "seed", 1, "seed of the loss and jitter draws")
	fs.StringVar(&clock, "clock", string(wire.ClockKernel), "receipt clock: kernel or user")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r.Clock = wire.Clock(clock)
	r.Log = stderr
	// Each of the relay's threads (a reader per interface, a port
	// channel's members each, and a sender per direction) is locked and
	// may spin: give each a P of its own so a spinning sender never keeps a
	// reader from running Go code.
	threads := 2 + len(strings.Split(r.A, ",")) + len(strings.Split(r.B, ","))
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), threads+2))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return r.Run(ctx)
}

func runTapBackend(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(ChildTapBackend, flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := &tapbackend.Backend{}
	fs.String("dir", "", "lab directory (identifies the process)")
	name := fs.String("name", "", "which VM, for the log")
	fs.IntVar(&b.VM, "vm-fd", 3, "inherited descriptor of the VM's TAP (eth0)")
	fs.IntVar(&b.Host, "host-fd", 4, "inherited descriptor of the host's TAP (vnet0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tap backend %s: relaying fd %d (vm eth0) <-> fd %d (host vnet0)\n", *name, b.VM, b.Host)
	done := make(chan error, 1)
	go func() { done <- b.Run() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var err error
	select {
	case s := <-sig:
		fmt.Fprintf(stderr, "tap backend %s: %s\n", *name, s)
	case err = <-done:
	}
	fmt.Fprintf(stderr, "tap backend %s: to host %d frames (%d dropped), to vm %d frames (%d dropped)\n", *name,
		b.ToHost.Frames.Load(), b.ToHost.Errors.Load(), b.ToVM.Frames.Load(), b.ToVM.Errors.Load())
	return err
}

// runNodeInit runs in a fresh UTS namespace: it sets the node's hostname
// and execs the program (sshd), keeping the pid that is in the pid file.
func runNodeInit(args []string) error {
	fs := flag.NewFlagSet(ChildNodeInit, flag.ContinueOnError)
	fs.String("dir", "", "lab directory (identifies the process)")
	hostname := fs.String("hostname", "", "hostname of the node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prog := fs.Args()
	if len(prog) == 0 {
		return errors.New("no program to run after the flags")
	}
	if *hostname != "" {
		if err := unix.Sethostname([]byte(*hostname)); err != nil {
			return fmt.Errorf("setting hostname %s: %w", *hostname, err)
		}
	}
	if err := syscall.Exec(prog[0], prog, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", prog[0], err)
	}
	return nil
}
