package tracer

import (
	"strings"
	"testing"
)

// A module function whose fentry link the kernel never patched loses its
// fentry rung (the stage takes the next one) and the choice says why.
func TestWithoutUnpatchedFentry(t *testing.T) {
	stages := []Stage{
		{Name: "s4", Rungs: []Rung{
			{Method: Fentry, Hooks: []Hook{{Target: "irqfd_wakeup", Program: "s4_fentry"}}},
			{Method: Kprobe, Hooks: []Hook{{Target: "irqfd_wakeup", Program: "s4_kprobe"}}},
		}},
		{Name: "s5", Rungs: []Rung{
			{Method: Fentry, Hooks: []Hook{{Target: "svm_deliver_interrupt", Program: "s5_fentry"}}},
			{Method: Kprobe, Hooks: []Hook{{Target: "svm_deliver_interrupt", Program: "s5_kprobe"}}},
		}},
	}
	drop := map[string]bool{"irqfd_wakeup": true}
	caps := Capabilities{Methods: map[Method]string{Fentry: "", Kprobe: ""}, Targets: map[Method]map[string]bool{}}
	for m, names := range Targets(stages) {
		caps.Targets[m] = map[string]bool{}
		for _, n := range names {
			caps.Targets[m][n] = true
		}
	}
	for _, probe := range []string{"auto", "fentry"} {
		choices, err := Select(withoutFentry(stages, drop), caps, probe)
		if err != nil {
			t.Fatalf("%s: %v", probe, err)
		}
		noteUnpatched(choices, stages, drop)
		if c := choices[0]; c.Rung.Method != Kprobe || !strings.Contains(c.Reason, "did not patch") {
			t.Errorf("%s: s4 %s (%s), want kprobe saying fentry was not patched", probe, c.Rung.Method, c.Reason)
		}
		if c := choices[1]; c.Rung.Method != Fentry || strings.Contains(c.Reason, "did not patch") {
			t.Errorf("%s: s5 %s (%s), want fentry", probe, c.Rung.Method, c.Reason)
		}
	}
	if len(stages[0].Rungs) != 2 {
		t.Error("withoutFentry changed its input")
	}
}
