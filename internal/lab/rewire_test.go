package lab_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

// TestSetWire changes a running lab's relay from no delay to 5 ms each way
// and back, and checks the pings, lab.json, env.yaml and the kept log.
func TestSetWire(t *testing.T) {
	l := labtest.Up(t, lab.Options{Wire: lab.WireRelay})
	ctx := context.Background()
	rvm, _ := l.Node(lab.ReceiverVM)
	minRTT := func() time.Duration {
		t.Helper()
		out, err := l.Exec(ctx, lab.SenderVM, "ping", "-c", "5", "-i", "0.05", "-W", "2", rvm.DataIP.String())
		if err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`= ([\d.]+)/`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no RTT summary:\n%s", out)
		}
		ms, _ := strconv.ParseFloat(m[1], 64)
		return time.Duration(ms * float64(time.Millisecond))
	}
	before := minRTT()

	const delay = 5 * time.Millisecond
	kept, err := l.SetWire(ctx, wire.Impairment{Delay: delay, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(kept); err != nil || !strings.Contains(string(b), "received=") {
		t.Errorf("the stopped relay's log %s lacks its counters (%v):\n%s", kept, err, b)
	}
	if got := minRTT(); got < 2*delay {
		t.Errorf("min RTT %s after SetWire(%s each way), was %s before: want at least %s", got, delay, before, 2*delay)
	}
	re, err := lab.Load(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if re.WireDelay != delay || re.WireSeed != 3 {
		t.Errorf("lab.json: wire delay %s seed %d, want %s and 3", re.WireDelay, re.WireSeed, delay)
	}
	if env := re.Environment(); env.Lab.WireDelay != delay.String() {
		t.Errorf("env.yaml's lab: wire_delay %q, want %s", env.Lab.WireDelay, delay)
	}
	if b, _ := os.ReadFile(l.EnvFile); !strings.Contains(string(b), "wire_delay: "+delay.String()) {
		t.Errorf("%s does not say wire_delay: %s:\n%s", l.EnvFile, delay, b)
	}

	if _, err := l.SetWire(ctx, wire.Impairment{}); err != nil {
		t.Fatal(err)
	}
	if got := minRTT(); got >= 2*delay {
		t.Errorf("min RTT %s after the delay was taken off again", got)
	}
	if _, err := l.SetWire(ctx, wire.Impairment{Loss: 101}); err == nil {
		t.Error("SetWire accepted 101 % loss")
	}
}

// TestSetWireNeedsRelay: a lab without the relay cannot change its wire.
func TestSetWireNeedsRelay(t *testing.T) {
	l := labtest.Up(t, lab.Options{})
	if _, err := l.SetWire(context.Background(), wire.Impairment{Delay: time.Millisecond}); !errors.Is(err, lab.ErrOptions) {
		t.Errorf("SetWire on a %s wire: %v, want lab.ErrOptions", l.Wire, err)
	}
}

// TestWirePorts: a KVM host's ports in the wire namespace, one per data
// NIC in the NICs' order; a VM or a namespace lab has none.
func TestWirePorts(t *testing.T) {
	nodes := []lab.Node{
		{Name: lab.SenderVM, Role: "vm", Side: "sender"}, {Name: lab.SenderHost, Role: "host", Side: "sender"},
		{Name: lab.ReceiverHost, Role: "host", Side: "receiver"}, {Name: lab.ReceiverVM, Role: "vm", Side: "receiver"},
	}
	for _, c := range []struct {
		kvm  *lab.KVMState
		node string
		want string // ports joined by commas; "" for an error
	}{
		{&lab.KVMState{Bond: true}, lab.SenderHost, "to-sender,to-sender1"},
		{&lab.KVMState{Bond: true}, lab.ReceiverHost, "to-receiver,to-receiver1"},
		{&lab.KVMState{}, lab.ReceiverHost, "to-receiver"},
		{&lab.KVMState{Bond: true}, lab.SenderVM, ""},
		{nil, lab.SenderHost, ""},
	} {
		l := &lab.Lab{Name: "t", Nodes: nodes, KVM: c.kvm}
		got, err := l.WirePorts(c.node)
		if c.want == "" {
			if !errors.Is(err, lab.ErrOptions) {
				t.Errorf("%s (kvm %v): %v, %v; want lab.ErrOptions", c.node, c.kvm, got, err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != c.want {
			t.Errorf("%s (kvm %+v): %v, %v; want %s", c.node, c.kvm, got, err, c.want)
		}
	}
}
