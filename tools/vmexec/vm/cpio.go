package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as its
// initramfs. It creates parent directories on demand, because the kernel's
// unpacker does not.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{"": true, ".": true, "/": true}}
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

func (c *cpioWriter) header(name string, mode uint32, size int64, rdevMajor, rdevMinor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	name = strings.TrimPrefix(name, "/")
	_, c.err = fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if c.err == nil {
		_, c.err = c.w.WriteString(name + "\x00")
	}
	c.pad(110 + int64(len(name)) + 1)
}

func (c *cpioWriter) pad(n int64) {
	if c.err != nil {
		return
	}
	if r := n % 4; r != 0 {
		_, c.err = c.w.Write(make([]byte, 4-r))
	}
}

// Dir creates a directory and its parents.
func (c *cpioWriter) Dir(name string) {
	name = path.Clean("/" + name)
	if c.dirs[name] {
		return
	}
	c.Dir(path.Dir(name))
	c.dirs[name] = true
	c.header(name, modeDir|0o755, 0, 0, 0)
}

// Bytes adds a file with the given content.
func (c *cpioWriter) Bytes(name string, perm uint32, data []byte) {
	c.Dir(path.Dir(path.Clean("/" + name)))
	c.header(name, modeFile|perm, int64(len(data)), 0, 0)
	if c.err == nil {
		_, c.err = c.w.Write(data)
	}
	c.pad(int64(len(data)))
}

// File copies a host file into the archive.
func (c *cpioWriter) File(name string, perm uint32, hostPath string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(hostPath)
	if err != nil {
		c.err = fmt.Errorf("adding %s to the initramfs: %w", hostPath, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = fmt.Errorf("adding %s to the initramfs: %w", hostPath, err)
		return
	}
	c.Dir(path.Dir(path.Clean("/" + name)))
	c.header(name, modeFile|perm, st.Size(), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed size while copying", hostPath)
	}
	if err != nil {
		c.err = fmt.Errorf("adding %s to the initramfs: %w", hostPath, err)
		return
	}
	c.pad(n)
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	c.Dir(path.Dir(path.Clean("/" + name)))
	c.header(name, modeSymlink|0o777, int64(len(target)), 0, 0)
	if c.err == nil {
		_, c.err = c.w.WriteString(target)
	}
	c.pad(int64(len(target)))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, major, minor uint32) {
	c.Dir(path.Dir(path.Clean("/" + name)))
	c.header(name, modeChar|0o600, 0, major, minor)
}

// Tree copies a host directory (regular files, directories and symlinks)
// to dest in the archive.
func (c *cpioWriter) Tree(dest, hostDir string) {
	if c.err != nil {
		return
	}
	err := filepath.WalkDir(hostDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		name := path.Join(dest, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			c.Dir(name)
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.Symlink(name, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			c.File(name, uint32(info.Mode().Perm()), p)
		}
		return c.err
	})
	if err != nil && c.err == nil {
		c.err = fmt.Errorf("adding %s to the initramfs: %w", hostDir, err)
	}
}

// Close writes the trailer and flushes.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
