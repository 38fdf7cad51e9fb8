// Package inputfile opens the files pingpath reads from a user's directory
// or command line (environment files, manifests, tracer streams, origin
// logs) so that none of them can hang or exhaust the process: only regular
// files are read (a FIFO, a device or a socket, directly or behind a
// symlink, is refused without blocking on it), and reads are bounded.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by Open's error for a file that is not a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// Open opens path for reading if it is a regular file (following
// symlinks). O_NONBLOCK keeps the open of a FIFO from waiting for a
// writer, and the type checked is that of the file opened, so a file
// swapped between a check and the open cannot slip through.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, st, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, TypeName(st.Mode()))
	}
	return f, st, nil
}

// ReadAll reads a regular file of at most limit bytes; limitText names the
// limit in the error ("1 MiB").
func ReadAll(path string, limit int64, limitText string) ([]byte, error) {
	f, st, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: larger than %s (%d bytes)", path, limitText, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %s", path, limitText)
	}
	return data, nil
}

// TypeName names a file type for messages ("a named pipe").
func TypeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "type " + m.Type().String()
}
