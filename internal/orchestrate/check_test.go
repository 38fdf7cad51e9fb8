package orchestrate

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

func TestCheck(t *testing.T) {
	testenv.RequireRoot(t) // "root" row: the fake nodes run as the test user
	testenv.RequireProgram(t, "ip")
	f := newFakeEnv(t, nil, "")
	f.servers[manifest.RoleReceiverHost].Close() // unreachable
	o := f.runOptions(t).Options                 // with Binary: the tracers are tried too
	rep := Check(context.Background(), o)
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	out := buf.String()
	t.Log("\n" + out)
	status := map[string]string{}
	for _, r := range rep.Rows {
		status[r.Role+"/"+r.Check] = r.Status
	}
	for key, want := range map[string]string{
		"receiver-host/ssh":      CheckFail,
		"receiver-vm/ssh":        CheckOK,
		"receiver-vm/root":       CheckOK,
		"receiver-vm/kernel":     CheckOK,
		"receiver-vm/interfaces": CheckOK,
		"receiver-vm/vm ip":      CheckOK,
		"sender-host/interfaces": CheckOK,
		"sender-vm/vm ip":        CheckFail, // 127.0.0.2 is not an address of this machine
		"sender-vm/ping":         CheckOK,
		"sender-host/attach":     CheckOK,
	} {
		if status[key] != want {
			t.Errorf("%s: %q, want %q", key, status[key], want)
		}
	}
	if rep.Failed() != 2 {
		t.Errorf("failed rows %d, want 2", rep.Failed())
	}
	for _, r := range rep.Rows {
		if r.Check == "tracer vm" && r.Detail != "s1=tracepoint; unavailable s2: no vhost" {
			t.Errorf("tracer row %+v", r)
		}
	}
	// One actionable line per failure.
	for _, w := range []string{"receiver-host ssh: receiver-host: connecting to tester@127.0.0.1", "-> nothing listens there", "sender-vm vm ip: 127.0.0.2 is not configured", "-> check sender.vm.ip"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestCheckMissingInterface(t *testing.T) {
	testenv.RequireProgram(t, "ip")
	f := newFakeEnv(t, nil, "")
	f.env.Sender.Host.VnetInterface = "vnet-nope"
	rep := Check(context.Background(), f.runOptions(t).Options)
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	if !strings.Contains(buf.String(), "sender-host interfaces: missing: vnet-nope") {
		t.Fatalf("no missing-interface failure:\n%s", buf.String())
	}
}

// TestCheckUntraced: an untraced receiver VM without ssh is not contacted;
// an untraced sender VM is checked as the login user (no root row) and can
// ping; neither gets a tracer tried.
func TestCheckUntraced(t *testing.T) {
	testenv.RequireProgram(t, "ip")
	f := newFakeEnv(t, nil, "")
	f.env.Receiver.VM.Untraced, f.env.Receiver.VM.SSH = true, ""
	f.env.Sender.VM.Untraced = true
	rep := Check(context.Background(), f.runOptions(t).Options)
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	t.Log("\n" + buf.String())
	status := map[string]string{}
	for _, r := range rep.Rows {
		status[r.Role+"/"+r.Check] = r.Status
		if (r.Role == manifest.RoleSenderVM || r.Role == manifest.RoleReceiverVM) && (strings.HasPrefix(r.Check, "tracer") || r.Check == "root") {
			t.Errorf("untraced VM row %+v", r)
		}
	}
	for key, want := range map[string]string{
		"receiver-vm/untraced": CheckOK,
		"receiver-vm/ssh":      "",
		"sender-vm/untraced":   CheckOK,
		"sender-vm/kernel":     CheckOK,
		"sender-vm/ping":       CheckOK,
		"sender-host/root":     CheckOK,
	} {
		if status[key] != want {
			t.Errorf("%s: %q, want %q", key, status[key], want)
		}
	}
}

// TestCheckNoBTF: a node whose kernel has no /sys/kernel/btf/vmlinux and no
// btf: file fails its btf row with what the tracers themselves say when
// started there without --btf (tracer.noKernelBTF, proven in the kernel
// matrix's btf-file rung): the pahole command for that kernel, the btf:
// field to set and the origin scripts as last resort; a VM is also offered
// the untraced mode.
func TestCheckNoBTF(t *testing.T) {
	const release = "4.19.90-2112.8.0.0131.oe1.x86_64"
	for _, spec := range []envfile.Node{
		{Role: manifest.RoleReceiverHost, Field: "receiver.host"},
		{Role: manifest.RoleReceiverVM, Field: "receiver.vm"},
	} {
		var c checker
		c.btf(context.Background(), &node{spec: spec, facts: map[string]string{"btf": "no", "kernel": release}})
		if len(c.rows) != 1 || c.rows[0].Status != CheckFail || c.rows[0].Check != "btf" {
			t.Fatalf("%s: rows %+v, want one failed btf row", spec.Field, c.rows)
		}
		r := c.rows[0]
		for _, want := range []string{kernel.NoBTF(release)} {
			if !strings.Contains(r.Detail, want) {
				t.Errorf("%s: detail %q lacks %q", spec.Field, r.Detail, want)
			}
		}
		for _, want := range []string{kernel.BTFFileCommand(release), spec.Field + ".btf: ", kernel.BTFLastResort} {
			if !strings.Contains(r.Hint, want) {
				t.Errorf("%s: hint %q lacks %q", spec.Field, r.Hint, want)
			}
		}
		if untraced := strings.Contains(r.Hint, spec.Field+".untraced: true"); untraced != spec.IsVM() {
			t.Errorf("%s: hint %q: untraced mode offered %v", spec.Field, r.Hint, untraced)
		}
	}
}
