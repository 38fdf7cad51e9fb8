package remote

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// elfHeader is a bare ELF64 little-endian executable header for machine
// (no sections, no program headers): enough for debug/elf to read.
func elfHeader(machine elf.Machine) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(machine))
	binary.LittleEndian.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return h
}

// A binary is pushed only to a machine it runs on: an arm64 node refuses
// an amd64 pingpath (and the other way round) with both named, before
// anything is copied; files that are no known executable, and machines
// that uname names in a way not known here, go ahead as before.
func TestFitsMachine(t *testing.T) {
	dir := t.TempDir()
	open := func(name string, content []byte) *Local {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLocal(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	amd, arm := open("amd64", elfHeader(elf.EM_X86_64)), open("arm64", elfHeader(elf.EM_AARCH64))
	script := open("script", []byte("#!/bin/sh\necho hi\n"))
	if amd.Arch != "amd64" || arm.Arch != "arm64" || script.Arch != "" {
		t.Fatalf("arch: %q %q %q", amd.Arch, arm.Arch, script.Arch)
	}
	for _, tc := range []struct {
		l       *Local
		machine string
		ok      bool
	}{
		{amd, "x86_64", true},
		{arm, "aarch64", true},
		{arm, "arm64", true},
		{amd, "aarch64", false},
		{arm, "x86_64", false},
		{script, "aarch64", true},
		{amd, "", true},
		{amd, "mips64", true},
	} {
		err := tc.l.FitsMachine(tc.machine)
		if (err == nil) != tc.ok {
			t.Errorf("%s binary on %q: %v, want ok=%v", tc.l.Arch, tc.machine, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), tc.machine) || !strings.Contains(err.Error(), tc.l.Arch) || !strings.Contains(err.Error(), "GOARCH=")) {
			t.Errorf("error does not name both architectures and the fix: %v", err)
		}
	}
	// The test binary itself is an executable of this machine.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, err := OpenLocal(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if self.Arch != runtime.GOARCH {
		t.Errorf("this test binary: arch %q, want %q", self.Arch, runtime.GOARCH)
	}
}
