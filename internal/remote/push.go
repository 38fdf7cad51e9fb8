package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// PushResult says what Push did.
type PushResult struct {
	Path    string // the remote file
	SHA256  string // its checksum (hex)
	Skipped bool   // it was already there
}

// Push copies the local executable into remoteDir (created with mode 0700)
// as NAME-<sha256 prefix>. The copy is written under a temporary name, its
// SHA-256 verified on the node, and only then renamed into place, so the
// content-addressed name only ever holds a verified copy: a later push
// finding it skips the upload. Distinct builds never overwrite each other,
// and nodes sharing one filesystem (the lab) can push at the same time.
// sum is local's SHA-256 when the caller has it already ("" to compute it).
func Push(ctx context.Context, t Transport, local, sum, remoteDir, name string) (*PushResult, error) {
	if sum == "" {
		var err error
		if sum, err = FileSHA256(local); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", local, err)
		}
	}
	dst := PushedPath(remoteDir, name, sum)
	res := &PushResult{Path: dst, SHA256: sum}
	// One command looks for the copy and, when it is not there, creates
	// the directory; one more verifies the upload and renames it: every
	// command costs a round trip and a login shell on the node.
	r, err := t.Run(ctx, Command{Args: []string{"sh", "-c", pushPrepareScript, "sh", dst, remoteDir}})
	switch {
	case err != nil:
		return nil, fmt.Errorf("creating %s: %w", remoteDir, err)
	case r.ExitCode != 0:
		return nil, fmt.Errorf("creating %s: %s", remoteDir, bytes.TrimSpace(r.Stderr))
	case strings.TrimSpace(string(r.Stdout)) == "present":
		res.Skipped = true
		return res, nil
	}
	tmp := path.Join(remoteDir, "."+name+".upload-"+randomSuffix())
	if err := t.Upload(ctx, local, tmp, 0o755); err != nil {
		return nil, err
	}
	r, err = t.Run(ctx, Command{Args: []string{"sh", "-c", pushVerifyScript, "sh", tmp, sum, dst}})
	if err == nil && r.ExitCode != 0 {
		if got := strings.TrimSpace(string(r.Stdout)); r.ExitCode == 3 && got != "" {
			err = fmt.Errorf("checksum %s, want %s (upload corrupted)", got, sum)
		} else {
			err = fmt.Errorf("exit %d: %s", r.ExitCode, bytes.TrimSpace(r.Stderr))
		}
	}
	if err != nil {
		_, _ = t.Run(context.WithoutCancel(ctx), Command{Args: []string{"rm", "-f", tmp}})
		return nil, fmt.Errorf("verifying the upload to %s: %w", dst, err)
	}
	return res, nil
}

// pushPrepareScript ($1 the pushed path, $2 its directory) prints
// "present" when the verified copy is there, else creates the directory.
const pushPrepareScript = `if [ -f "$1" ] && [ -x "$1" ]; then echo present; else mkdir -p -m 0700 "$2"; fi`

// pushVerifyScript ($1 the upload, $2 the expected SHA-256, $3 the final
// name) renames the upload into place if its checksum is right; otherwise
// it prints the checksum found and exits 3.
const pushVerifyScript = `s=$(sha256sum -- "$1") || exit 2
s=${s%% *}
if [ "$s" != "$2" ]; then echo "$s"; exit 3; fi
mv -f -- "$1" "$3"`

// PushedPath is where Push puts a file with checksum sum.
func PushedPath(remoteDir, name, sum string) string {
	return path.Join(remoteDir, name+"-"+sum[:16])
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FileSHA256 is the hex SHA-256 of a local file.
func FileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
