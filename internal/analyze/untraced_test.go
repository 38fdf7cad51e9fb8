package analyze

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/pingpath/pingpath/internal/manifest"
)

// TestUntracedVMs: a run whose environment declared one or both VMs
// untraced (no vm stream there) gets one coarser segment per untraced VM,
// bounded by the host tracers, instead of F/G/H (or A/M); the layers still
// partition the RTT exactly. The synthetic run knows every segment, so the
// coarse segments must equal the sums they stand for.
func TestUntracedVMs(t *testing.T) {
	for _, c := range []struct {
		name             string
		sender, receiver bool
	}{{"receiver", false, true}, {"sender", true, false}, {"both", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := synthRun{pings: 12, firstSeq: 1, id: 9}
			dir := t.TempDir()
			s.write(t, dir)
			m := &manifest.Manifest{Environment: "lab", Version: "test", Status: "complete",
				Ping: manifest.Ping{File: "ping.log", Count: 12, Sent: 12, Received: 12, ICMPID: 9}}
			for _, n := range []struct {
				role, file string
				untraced   bool
			}{{manifest.RoleSenderVM, "a.jsonl", c.sender}, {manifest.RoleReceiverVM, "b.jsonl", c.receiver}} {
				m.Nodes = append(m.Nodes, manifest.Node{Role: n.role, Untraced: n.untraced, Tracers: []manifest.Tracer{}})
				if n.untraced {
					if err := os.Remove(filepath.Join(dir, n.file)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := manifest.Write(dir, m); err != nil {
				t.Fatal(err)
			}
			r, err := Run(dir)
			if err != nil {
				t.Fatal(err)
			}
			if r.Counts.Complete != 12 {
				t.Fatalf("counts %+v, want 12 complete", r.Counts)
			}
			for k := range s.pings {
				p := &r.Pings[k]
				v := s.segs(k)
				if c.receiver {
					wantUS(t, p, ValUntracedR, float64(v["F"]+v["G"]+v["H"]+synthRes)/1000)
					if _, ok := p.raw(SegF); ok {
						t.Errorf("ping %d: F without a receiver VM tracer", k)
					}
				} else if _, ok := p.raw(ValUntracedR); ok {
					t.Errorf("ping %d: receiver_vm_untraced on a traced VM", k)
				}
				if c.sender {
					// ping's RTT is the VM's plus 30 µs of userspace, printed
					// to 1 µs.
					got, _ := p.raw(ValUntracedS)
					if want := v["A"] + v["M"] + synthRes + 30_000; math.Abs(float64(got-want)) > 500 {
						t.Errorf("ping %d: sender_vm_untraced %d ns, want %d ± 500", k, got, want)
					}
				} else if _, ok := p.raw(ValUntracedS); ok {
					t.Errorf("ping %d: sender_vm_untraced on a traced VM", k)
				}
			}
			var names []string
			var sum float64
			for _, l := range r.Layers {
				names = append(names, l.Name)
				sum += l.MeanUS
				if l.Name == "untraced VMs" && l.MeanUS <= 0 {
					t.Errorf("untraced layer %+v", l)
				}
				if l.Flag != "" {
					t.Errorf("layer %s flagged: %s", l.Name, l.Flag)
				}
			}
			if len(names) != 6 || names[4] != "untraced VMs" {
				t.Errorf("layers %v, want the untraced VMs layer before the residuals", names)
			}
			if math.Abs(sum-r.LayerRTTUS) > 0.01 || math.Abs(sharesSum(r)-1) > 1e-9 {
				t.Errorf("layers add up to %v µs of %v (shares %v)", sum, r.LayerRTTUS, sharesSum(r))
			}
			if _, ok := r.Contrib["unattributed"]; ok {
				t.Errorf("unattributed time with every VM's time bounded: %v", r.Contrib)
			}
		})
	}
}
