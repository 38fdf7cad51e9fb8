package orchestrate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/remote/remotetest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// sudoEnv is a fake environment whose nodes need a sudo password.
func sudoEnv(t *testing.T, sudo string) *fakeEnv {
	bin, _ := filepath.Abs("testdata/fakebin")
	o := remotetest.Options{Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_SUDO_PASSWORD=s3cret p'w"}}
	opts := map[string]remotetest.Options{}
	for _, r := range roles {
		opts[r] = o
	}
	f := newFakeEnv(t, opts, "")
	f.env.SSH.Sudo = sudo
	return f
}

func TestRunSudoPassword(t *testing.T) {
	testenv.RequireProgram(t, "ping")
	f := sudoEnv(t, "password")
	o := f.runOptions(t)
	o.SudoPassword = []byte("s3cret p'w")
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusComplete {
		t.Fatalf("status %s: %+v", res.Manifest.Status, res.Manifest.Failures)
	}
	// Every tracer ran under sudo -S and still stopped on stdin EOF (the
	// password line was consumed by sudo, the EOF reached the tracer).
	for _, n := range res.Manifest.Nodes {
		for _, tr := range n.Tracers {
			if tr.State != "ok" || !strings.HasPrefix(strings.Join(tr.Command, " "), "sudo -S -k -p  -- ") {
				t.Errorf("%s %s: %+v", n.Role, tr.Tool, tr)
			}
		}
	}
	// The password is nowhere in the run directory.
	filepath.WalkDir(o.OutDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "s3cret") {
				t.Errorf("%s contains the sudo password", p)
			}
		}
		return nil
	})
	noProcessLeft(t, "fake-pingpath", 0)
}

func TestRunSudoWrongPassword(t *testing.T) {
	f := sudoEnv(t, "password")
	o := f.runOptions(t)
	o.SudoPassword = []byte("wrong")
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusFailed || !strings.Contains(res.Err.Error(), "sudo with password failed") {
		t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
	}
	// The tracer sessions opened ahead behind their gates never ran a
	// tracer, and are gone.
	if args := f.tracerArgs(t); len(args) != 0 {
		t.Fatalf("tracers ran although the run failed before starting them: %v", args)
	}
	for _, n := range res.Manifest.Nodes {
		for _, tr := range n.Tracers {
			if tr.State != "not-started" {
				t.Errorf("%s %s: %s", n.Role, tr.Tool, tr.State)
			}
		}
	}
	noProcessLeft(t, "fake-pingpath", 2*time.Second)
}

func TestRunSudoPasswordlessRefused(t *testing.T) {
	f := sudoEnv(t, "passwordless")
	res, err := Run(context.Background(), f.runOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != StatusFailed || !strings.Contains(res.Err.Error(), "allow passwordless sudo") {
		t.Fatalf("status %s err %v", res.Manifest.Status, res.Err)
	}
}
