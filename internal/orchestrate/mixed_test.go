package orchestrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// TestRunMixedFleetPushesEachNodeItsArchitecture: one run with two
// binaries pushes to each node the one its `uname -m` names, and every
// tracer's command line carries that binary's path and checksum.
//
// The four nodes are SSH servers on this x86_64 machine (the real facts
// script, push and verified exec); the receiver VM's `uname -m` says
// aarch64 through a uname on its PATH. What this proves: the node's
// reported architecture, read before the plan, picks the binary pushed there
// and the checksum its tracers are verified against — the arm64 file
// arrives intact, passes the checksum check on the node, and is executed,
// which this machine's kernel refuses ("exec format error"), so that
// node's tracer fails and the run is partial. What it does not prove: an
// arm64 pingpath tracing on an arm64 node over SSH (the kernel matrix runs
// the arm64 tracers in an arm64 kernel, docs/kernel-matrix.md).
func TestRunMixedFleetPushesEachNodeItsArchitecture(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	uname := testenv.RequireProgram(t, "uname")
	fakeUname := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = -m ] && { echo aarch64; exit 0; }\nexec " + uname + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(fakeUname, "uname"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFakeEnv(t, map[string]remotetest.Options{
		manifest.RoleReceiverVM: {Env: []string{"PATH=" + fakeUname + ":" + os.Getenv("PATH")}},
	}, "")
	o := f.runOptions(t)
	// An arm64 "pingpath": an ELF header of machine AArch64 and a body.
	arm := filepath.Join(t.TempDir(), "pingpath-arm64")
	armContent := append(elfHeader(elf.EM_AARCH64), []byte("not really an arm64 program")...)
	if err := os.WriteFile(arm, armContent, 0o755); err != nil {
		t.Fatal(err)
	}
	o.OtherBinaries = []string{arm}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Status != StatusPartial || res.Err == nil || !strings.Contains(strings.ToLower(res.Err.Error()), "exec format error") {
		t.Fatalf("status %s, err %v, failures %+v; want partial, the receiver VM's arm64 tracer refused by this kernel", m.Status, res.Err, m.Failures)
	}
	fakeSum := fileSum(t, o.Binary)
	armSum := fileSum(t, arm)
	for _, n := range m.Nodes {
		specs := f.env.Nodes()
		spec := specs[slices.IndexFunc(specs, func(s envfile.Node) bool { return s.Role == n.Role })]
		dir := spec.Options.RemoteDir
		wantSum, wantArch := fakeSum, "x86_64"
		if n.Role == manifest.RoleReceiverVM {
			wantSum, wantArch = armSum, "aarch64"
		}
		if n.Arch != wantArch {
			t.Errorf("%s: arch %q in the manifest, want %q", n.Role, n.Arch, wantArch)
		}
		pushed := remote.PushedPath(dir, pushedName, wantSum)
		got, err := os.ReadFile(pushed)
		if err != nil {
			t.Errorf("%s: the binary of its architecture was not pushed: %v", n.Role, err)
		} else if fmtSum(got) != wantSum {
			t.Errorf("%s: %s holds another file", n.Role, pushed)
		}
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 1 {
			t.Errorf("%s: remote_dir holds %v, want only %s", n.Role, names, filepath.Base(pushed))
		}
		for _, tr := range n.Tracers {
			cmd := strings.Join(tr.Command, " ")
			// The pushed path carries the checksum's first 16 digits; the
			// node's verified exec checks all of them before it runs.
			if !strings.HasPrefix(cmd, pushed+" trace ") {
				t.Errorf("%s %s: command %q does not run %s", n.Role, tr.Tool, cmd, pushed)
			}
			wantState := "ok"
			if n.Role == manifest.RoleReceiverVM {
				wantState = "failed"
			}
			if tr.State != wantState {
				t.Errorf("%s %s: state %s (%s), want %s", n.Role, tr.Tool, tr.State, tr.Error, wantState)
			}
		}
	}
	// The x86_64 nodes' (fake) tracers ran: 3 of the 4 vm/host tracers.
	if args := f.tracerArgs(t); len(args["vm"]) != 1 || len(args["host"]) != 2 {
		t.Errorf("tracers started: %v", args)
	}
	noProcessLeft(t, "fake-pingpath", 0)
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmtSum(b)
}

func fmtSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// elfHeader is a 64-bit little-endian ELF header of machine, enough for
// debug/elf to read the architecture (and for a kernel to refuse another
// machine's).
func elfHeader(machine elf.Machine) []byte {
	var h bytes.Buffer
	h.Write([]byte(elf.ELFMAG))
	h.Write([]byte{byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	h.Write(make([]byte, 16-h.Len()))
	_ = binary.Write(&h, binary.LittleEndian, struct {
		Type, Machine uint16
		Version       uint32
		Entry, Phoff  uint64
		Shoff         uint64
		Flags         uint32
		Ehsize        uint16
		Rest          [5]uint16
	}{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT), Ehsize: 64})
	return h.Bytes()
}
