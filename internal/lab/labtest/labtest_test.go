package labtest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
)

// This package has no labtest.Main, so Up takes the path other packages
// take without it: $PINGPATH_BIN or a pingpath built from the module.
func TestUpWithBuiltBinary(t *testing.T) {
	var dir string
	var namespaces []string
	t.Run("up", func(t *testing.T) {
		l := labtest.Up(t, lab.Options{VMLink: lab.VMLinkVeth})
		dir, namespaces = l.Dir, l.Namespaces()
		bin := labtest.Binary(t)
		if exe, _ := os.Executable(); bin == exe {
			t.Fatalf("Binary is the test binary %s without labtest.Main", bin)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := l.Exec(ctx, lab.SenderVM, "ping", "-c", "2", "-i", "0.01", "-W", "1", l.Nodes[3].DataIP.String())
		if err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	})
	// The subtest's cleanup has taken the lab down.
	if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); err == nil {
		t.Error("lab.json still there after the test's cleanup")
	}
	for _, ns := range namespaces {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s still there after the test's cleanup", ns)
		}
	}
}
