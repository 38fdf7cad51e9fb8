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
	if r, err := t.Run(ctx, Command{Args: []string{"test", "-f", dst, "-a", "-x", dst}}); err == nil && r.ExitCode == 0 {
		res.Skipped = true
		return res, nil
	}
	mk, err := t.Run(ctx, Command{Args: []string{"mkdir", "-p", "-m", "0700", remoteDir}})
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", remoteDir, err)
	}
	if mk.ExitCode != 0 {
		return nil, fmt.Errorf("creating %s: %s", remoteDir, bytes.TrimSpace(mk.Stderr))
	}
	tmp := path.Join(remoteDir, "."+name+".upload-"+randomSuffix())
	if err := t.Upload(ctx, local, tmp, 0o755); err != nil {
		return nil, err
	}
	got, err := RemoteSHA256(ctx, t, tmp)
	if err == nil && got != sum {
		err = fmt.Errorf("checksum %s, want %s (upload corrupted)", got, sum)
	}
	if err == nil {
		var r *Result
		if r, err = t.Run(ctx, Command{Args: []string{"mv", "-f", tmp, dst}}); err == nil && r.ExitCode != 0 {
			err = fmt.Errorf("mv: %s", bytes.TrimSpace(r.Stderr))
		}
	}
	if err != nil {
		_, _ = t.Run(context.WithoutCancel(ctx), Command{Args: []string{"rm", "-f", tmp}})
		return nil, fmt.Errorf("verifying the upload to %s: %w", dst, err)
	}
	return res, nil
}

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

// RemoteSHA256 runs sha256sum on the node.
func RemoteSHA256(ctx context.Context, t Transport, file string) (string, error) {
	res, err := t.Run(ctx, Command{Args: []string{"sha256sum", "--", file}})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("sha256sum %s: %s", file, bytes.TrimSpace(res.Stderr))
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("sha256sum %s: unexpected output %q", file, res.Stdout)
	}
	return f[0], nil
}
