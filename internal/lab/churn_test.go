package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
)

// churnEnv makes the test binary run TestChurnChild: bring labs up and down
// in a loop. TestLabsChurnAcrossProcesses starts several such processes.
const churnEnv = "PINGPATH_LAB_CHURN_CYCLES"

// requireOwnMgmt fails unless the lab's management bridge is there, marked
// as this lab's, and carries the lab's gateway address: that is, no other
// lab removed it or took its index.
func requireOwnMgmt(l *lab.Lab) error {
	br, err := netlink.LinkByName(l.MgmtBridge)
	if err != nil {
		return fmt.Errorf("lab %s index %d: bridge %s: %w", l.Name, l.Index, l.MgmtBridge, err)
	}
	if got := br.Attrs().Alias; got != l.RootAlias() {
		return fmt.Errorf("lab %s index %d: bridge %s belongs to %q, want %q", l.Name, l.Index, l.MgmtBridge, got, l.RootAlias())
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("lab %s: addresses of %s: %w", l.Name, l.MgmtBridge, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == l.MgmtGateway {
			return nil
		}
	}
	return fmt.Errorf("lab %s index %d: %s lost its address %s (has %v)", l.Name, l.Index, l.MgmtBridge, l.MgmtGateway, addrs)
}

// TestChurnChild is the body of one churning process (see churnEnv). For
// each cycle it brings a lab up, checks it owns its management bridge and
// address, brings it down, and brings it down a second time, as a test
// whose cleanup repeats an explicit Down does. It prints "up INDEX ID NS"
// after Up returned and "down INDEX ID NS" before Down starts, NS being
// CLOCK_MONOTONIC nanoseconds, which all processes share.
func TestChurnChild(t *testing.T) {
	cycles, _ := strconv.Atoi(os.Getenv(churnEnv))
	if cycles == 0 {
		t.Skip("runs only as a child of TestLabsChurnAcrossProcesses")
	}
	ctx := ctxT(t)
	for range cycles {
		l, err := lab.Up(ctx, lab.Options{
			Dir: t.TempDir(), Name: labtest.UniqueName(), VMLink: lab.VMLinkVeth, Binary: labtest.Binary(t),
			ReadyTimeout: time.Minute,
		})
		if err != nil {
			t.Fatalf("lab up: %v", err)
		}
		fmt.Printf("up %d %s %d\n", l.Index, l.ID, monotonic())
		if err := requireOwnMgmt(l); err != nil {
			t.Error(err)
		}
		time.Sleep(300 * time.Millisecond) // overlap with the other processes' labs
		if err := requireOwnMgmt(l); err != nil {
			t.Error(err)
		}
		fmt.Printf("down %d %s %d\n", l.Index, l.ID, monotonic())
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
		// The second Down runs while the other processes may already
		// have taken this index (the pause stands for a test's checks
		// between its own Down and its cleanup's); it must not touch
		// their links.
		time.Sleep(150 * time.Millisecond)
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("second lab down: %v", err)
		}
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// TestLabsChurnAcrossProcesses keeps one lab up while several processes
// bring labs up and down (twice) concurrently, and checks that the kept
// lab's management bridge and address survive and that no two labs up at
// the same time share a management index.
func TestLabsChurnAcrossProcesses(t *testing.T) {
	if os.Getenv(churnEnv) != "" {
		t.Skip("not inside a churning child")
	}
	keep := labtest.Up(t, lab.Options{VMLink: lab.VMLinkVeth})
	if err := requireOwnMgmt(keep); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const procs, cycles = 3, 4
	type event struct {
		up    bool
		index int
		id    string
		at    int64
	}
	events := make(chan event, procs*cycles*2)
	var wg sync.WaitGroup
	for p := range procs {
		cmd := exec.Command(exe, "-test.run=^TestChurnChild$", "-test.v")
		cmd.Env = append(os.Environ(), churnEnv+"="+strconv.Itoa(cycles))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				out.WriteString(line + "\n")
				var e event
				var verb string
				if n, _ := fmt.Sscanf(line, "%s %d %s %d", &verb, &e.index, &e.id, &e.at); n == 4 && (verb == "up" || verb == "down") {
					e.up = verb == "up"
					events <- e
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("churning process %d: %v\n%s%s", p, err, out.String(), stderr.String())
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(events); close(done) }()

	var all []event
	lost := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case e, ok := <-events:
			if !ok {
				running = false
				break
			}
			all = append(all, e)
		case <-tick.C:
			// Report once, and keep reading: the children still run.
			if err := requireOwnMgmt(keep); err != nil && !lost {
				t.Errorf("while other labs come and go: %v", err)
				lost = true
			}
		}
	}
	// Replay in time order: a lab holds its index from its "up" to its
	// "down", so a second "up" of an index before the first one's "down"
	// means two labs shared it.
	sort.Slice(all, func(i, j int) bool { return all[i].at < all[j].at })
	holder := map[int]string{keep.Index: keep.ID}
	ups := 0
	for _, e := range all {
		if !e.up {
			delete(holder, e.index)
			continue
		}
		ups++
		if other, ok := holder[e.index]; ok {
			t.Errorf("index %d taken by lab %s while lab %s holds it", e.index, e.id, other)
		}
		holder[e.index] = e.id
	}
	<-done
	if ups != procs*cycles {
		t.Errorf("%d labs came up, want %d", ups, procs*cycles)
	}
	if err := requireOwnMgmt(keep); err != nil {
		t.Fatal(err)
	}
	st, _ := keep.Status(ctxT(t))
	for _, s := range st {
		if !s.OK() {
			t.Errorf("kept lab after the churn: %+v", s)
		}
	}
}
