package remote

import (
	"bytes"
	"context"
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
	Skipped bool   // the remote copy already matched
}

// Push copies the local executable into remoteDir (created with mode 0700)
// unless a file with the same SHA-256 is already there, and verifies the
// checksum of what landed.
func Push(ctx context.Context, t Transport, local, remoteDir, name string) (*PushResult, error) {
	sum, err := FileSHA256(local)
	if err != nil {
		return nil, fmt.Errorf("pushing %s: %w", local, err)
	}
	dst := path.Join(remoteDir, name)
	res := &PushResult{Path: dst, SHA256: sum}
	if remote, err := RemoteSHA256(ctx, t, dst); err == nil && remote == sum {
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
	if err := t.Upload(ctx, local, dst, 0o755); err != nil {
		return nil, err
	}
	got, err := RemoteSHA256(ctx, t, dst)
	if err != nil {
		return nil, fmt.Errorf("verifying %s: %w", dst, err)
	}
	if got != sum {
		return nil, fmt.Errorf("verifying %s: checksum %s, want %s (upload corrupted)", dst, got, sum)
	}
	return res, nil
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
