package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/lab/wire"
)

// SetWire changes the impairment of a lab whose wire is the relay (--wire
// relay, or any impairment at up): it stops the relay and starts it again
// with the same binary and receipt clock and the new delay, jitter, loss and
// seed, then rewrites lab.json and env.yaml (whose lab: section a run's
// manifest copies). Frames in flight while the relay restarts are lost, so
// call it between runs, never during one. It returns the stopped relay's
// log, kept as logs/wire.N.log: its last lines count what it forwarded and
// dropped (the relay writes them when it stops).
//
// It exists for tests that need several impairments and cannot afford a lab
// each: a KVM lab takes minutes to come up, restarting its relay
// milliseconds.
func (l *Lab) SetWire(ctx context.Context, im wire.Impairment) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("setting the wire of lab %s: %w", l.Name, err) }
	if err := im.Validate(); err != nil {
		return fail(err)
	}
	if l.Wire != WireRelay {
		return fail(fmt.Errorf("its wire is %q, not the relay (bring it up with --wire relay): %w", l.Wire, ErrOptions))
	}
	pids, err := l.pids()
	if err != nil {
		return fail(err)
	}
	pid, ok := pids["wire"]
	if !ok {
		return fail(fmt.Errorf("its relay is not running (%s)", l.pidFile("wire")))
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return fail(fmt.Errorf("reading the relay's command line: %w", err))
	}
	argv, err := withImpairment(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), im)
	if err != nil {
		return fail(fmt.Errorf("relay %d: %w", pid, err))
	}
	if err := killAndWait([]int{pid}, 2*time.Second); err != nil {
		return fail(fmt.Errorf("stopping the relay: %w", err))
	}
	kept, err := l.keepLog("wire")
	if err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return kept, fmt.Errorf("setting the wire of lab %s: the relay is stopped and not restarted: %w", l.Name, err)
	}
	l.WireDelay, l.WireJitter, l.WireLoss, l.WireSeed = im.Delay, im.Jitter, im.Loss, im.Seed
	if _, err := l.start(daemon{name: "wire", netns: l.WireNetns, argv: argv}); err != nil {
		return kept, fmt.Errorf("setting the wire of lab %s: %w", l.Name, err)
	}
	return kept, errors.Join(l.save(), l.writeEnvFile())
}

// keepLog renames a daemon's log to NAME.N.log, N the first number not
// taken, so that starting the daemon again does not overwrite it.
func (l *Lab) keepLog(name string) (string, error) {
	for n := 1; ; n++ {
		p := filepath.Join(filepath.Dir(l.LogFile(name)), fmt.Sprintf("%s.%d.log", name, n))
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Rename(l.LogFile(name), p); err != nil {
			return "", fmt.Errorf("keeping the log of %s: %w", name, err)
		}
		return p, nil
	}
}

// withImpairment returns the relay's argv (`pingpath lab wire …`, as
// startWire builds it) with the impairment flags set to im.
func withImpairment(argv []string, im wire.Impairment) ([]string, error) {
	values := map[string]string{
		"--delay": im.Delay.String(), "--jitter": im.Jitter.String(),
		"--loss": strconv.FormatFloat(im.Loss, 'g', -1, 64), "--seed": strconv.FormatUint(im.Seed, 10),
	}
	if len(argv) < 3 || argv[1] != "lab" || argv[2] != "wire" {
		return nil, fmt.Errorf("command line %q is not a lab wire relay", strings.Join(argv, " "))
	}
	out := append([]string{}, argv...)
	for i := 3; i+1 < len(out); i++ {
		if v, ok := values[out[i]]; ok {
			out[i+1] = v
			delete(values, out[i])
			i++
		}
	}
	if len(values) > 0 {
		return nil, fmt.Errorf("command line %q lacks an impairment flag", strings.Join(argv, " "))
	}
	return out, nil
}

// WirePorts returns a KVM host's ports in the wire namespace (WireNetns), in
// the order of its data NICs: eth0's, then eth1's with --bond. Taking one
// down is the wire's side of pulling that NIC's cable: the relay's port
// channel then sends only on the other member.
func (l *Lab) WirePorts(host string) ([]string, error) {
	n, err := l.Node(host)
	if err != nil {
		return nil, err
	}
	if l.KVM == nil || n.IsVM() {
		return nil, fmt.Errorf("lab %s: %s is not a KVM host: %w", l.Name, host, ErrOptions)
	}
	return l.wirePorts(*n), nil
}
