package orchestrate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// smallDisk mounts a tmpfs of 64 pages and fills it but for free pages.
// It returns the mount point and the filler file, which frees the space
// when removed.
func smallDisk(t *testing.T, free int) (dir, filler string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	filler = filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, (64-free)*4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, filler
}

// TestRunDiskFull: the run directory's disk fills up during the run. The
// run waits (the tracers keep running) until space comes back, and then
// completes with nothing lost; or, stopped while the disk is still full, it
// fails and says which files could not be written. Never "complete" with
// files cut short.
func TestRunDiskFull(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	for _, freed := range []bool{true, false} {
		name := "space freed"
		if !freed {
			name = "stopped while full"
		}
		t.Run(name, func(t *testing.T) {
			// One page for the env.yaml copy, one more for the 17 output
			// files.
			disk, filler := smallDisk(t, 2)
			f := newFakeEnv(t, nil, "")
			o := f.runOptions(t)
			o.OutDir = filepath.Join(disk, "run")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runUntil(t, ctx, o, "stalled writing")
			time.Sleep(500 * time.Millisecond) // still stalled, not failed
			select {
			case res := <-done:
				t.Fatalf("the run ended while its files could not be written: %s %v", res.Manifest.Status, res.Err)
			default:
			}
			if freed {
				os.Remove(filler)
			} else {
				cancel()
			}
			var res *RunResult
			select {
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the run did not end")
			}
			if !freed {
				if res.Manifest.Status != StatusFailed || res.WriteErr == nil || !strings.Contains(res.WriteErr.Error(), "no space left on device") ||
					!strings.Contains(res.WriteErr.Error(), o.OutDir+"/") {
					t.Fatalf("status %s, error %v: want failed, naming the file", res.Manifest.Status, res.WriteErr)
				}
				t.Logf("error: %v", res.WriteErr)
				if _, err := os.Stat(filepath.Join(o.OutDir, "manifest.json.tmp")); err == nil {
					t.Error("an empty manifest.json.tmp was left behind")
				}
				return
			}
			if res.Manifest.Status != StatusComplete {
				t.Fatalf("status %s: %+v", res.Manifest.Status, res.Manifest.Failures)
			}
			// Everything is on disk, in full.
			for _, n := range res.Manifest.Nodes {
				for _, tr := range n.Tracers {
					b, err := os.ReadFile(filepath.Join(o.OutDir, tr.File))
					if err != nil || !bytes.Contains(b, []byte(`"type":"trailer"`)) {
						t.Errorf("%s: no trailer (%v): %q", tr.File, err, b)
					}
				}
			}
			if b, err := os.ReadFile(filepath.Join(o.OutDir, PingFile)); err != nil || !bytes.Contains(b, []byte("packets transmitted")) {
				t.Errorf("%s incomplete (%v): %q", PingFile, err, b)
			}
			if _, err := os.Stat(filepath.Join(o.OutDir, "manifest.json")); err != nil {
				t.Error(err)
			}
		})
	}
}
