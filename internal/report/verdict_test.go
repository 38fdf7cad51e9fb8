package report

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/manifest"
)

// The verdict of a real lab run with a 1 ms, 10 % lossy wire says where the
// time went, where the pings were lost, what was not measured and why, and
// the context names the lab and its wire.
func TestVerdictLabRun(t *testing.T) {
	res, err := analyze.Run(filepath.Join("testdata", "lab-runs", "wire1ms"))
	if err != nil {
		t.Fatal(err)
	}
	v := BuildVerdict(res)
	got := map[string]string{}
	for _, l := range v.Lines {
		got[l.Label] = l.Text
	}
	for label, want := range map[string][]string{
		"where":        {"physical network takes 68.4 %", "2968.1 µs over 16 pings"},
		"tail":         {"slowest 2 ping(s)", "virt_unmeasured_sender"},
		"lost":         {"4 of 20 pings", "3 in C (physical network, request)", "1 in J (physical network, reply)", "no kernel drop reason seen"},
		"not measured": {"B_1, E, I_1, L (vhost-tx, vhost-rx)", "served by a user space backend"},
	} {
		for _, w := range want {
			if !strings.Contains(got[label], w) {
				t.Errorf("%s: %q lacks %q", label, got[label], w)
			}
		}
	}
	if v.Lines[0].Label != "where" {
		t.Errorf("the verdict starts with %q", v.Lines[0].Label)
	}
	line := BuildContext(res).Line()
	for _, w := range []string{"lab-h15b", "2026-12-06 04:25 UTC", "namespace lab (VM link tap, wire relay, delay 1ms, loss 10 %)",
		"kernel 6.18.44-fc-v1272 on every node", "pingpath 0.1.0"} {
		if !strings.Contains(line, w) {
			t.Errorf("context %q lacks %q", line, w)
		}
	}
}

// The lab kind comes from the manifest: the KVM lab with its emulation note,
// real machines without a lab entry.
func TestContextLabKind(t *testing.T) {
	for _, c := range []struct {
		m    manifest.Manifest
		want string
	}{
		{manifest.Manifest{Environment: "lab-k", Lab: &manifest.Lab{Kind: "kvm", Wire: "veth"}, Emulation: "emulated: TCG hosts"}, "KVM lab (emulated, TCG) (wire veth)"},
		{manifest.Manifest{Environment: "lab-n", Lab: &manifest.Lab{Kind: "netns", VMLink: "tap", Wire: "veth"}}, "namespace lab (VM link tap, wire veth)"},
		{manifest.Manifest{Environment: "prod-az1"}, "real machines (not a pingpath lab)"},
	} {
		m := c.m
		ctx := BuildContext(&analyze.Result{Manifest: &m})
		if !strings.Contains(ctx.Line(), c.want) {
			t.Errorf("%s: context %q, want %q", m.Environment, ctx.Line(), c.want)
		}
		v := BuildVerdict(&analyze.Result{Manifest: &m, Empty: true})
		if emulated := len(v.Caution) > 0 && strings.Contains(v.Caution[0], "Emulated"); emulated != (m.Emulation != "") {
			t.Errorf("%s: caution %v", m.Environment, v.Caution)
		}
	}
}
