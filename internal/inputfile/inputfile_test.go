package inputfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/badfile"
)

// Every kind of non-regular file is refused at once, also behind a
// symlink, and a regular file is read only up to its limit.
func TestOpenRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := badfile.FIFO(t, filepath.Join(dir, "stream.jsonl"))
	link := badfile.DeviceLink(t, filepath.Join(dir, "urandom.log"))
	for path, want := range map[string]string{fifo: "a named pipe", link: "a character device", dir: "a directory", "/dev/zero": "a character device"} {
		done := make(chan error, 1)
		go func() {
			f, _, err := Open(path)
			if f != nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), path+": not a regular file ("+want+")") {
				t.Errorf("%s: got %v, want not a regular file (%s)", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Open blocked for 5 s", path)
		}
	}
	reg := filepath.Join(dir, "ok.log")
	if err := os.WriteFile(reg, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadAll(reg, 10, "10 B"); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadAll at the limit: %q, %v", b, err)
	}
	if _, err := ReadAll(reg, 9, "9 B"); err == nil || !strings.Contains(err.Error(), reg+": larger than 9 B (10 bytes)") {
		t.Errorf("ReadAll over the limit: %v", err)
	}
	if _, _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
