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

// Runner runs one command to completion on a node: Transport.Run, or
// Transport.Run behind sudo.
type Runner func(ctx context.Context, cmd Command) (*Result, error)

// PushResult says what Push did.
type PushResult struct {
	Path     string // the remote file
	SHA256   string // its checksum (hex)
	Skipped  bool   // a verified copy was already there
	Replaced bool   // a damaged copy was there and has been replaced
}

// Push copies the local executable into remoteDir as NAME-<sha256 prefix>
// and returns once a copy with the right SHA-256 is there. The copy is
// later run as root, so every command of Push must run as root (run is the
// node's Transport.Run behind its sudo mode), and Push first makes sure
// that nobody but root (or the login user sudo was called by) can have
// put anything there or can change it later: remoteDir and each of its
// parents must be a real directory (no symbolic link), owned by root or
// that user, and writable by nobody else — a parent may be
// world-writable if it is sticky, like /tmp, because then nobody else
// can rename or remove an entry in it. Anything else is refused with
// the path and the reason.
//
// A copy already there is verified in full (owner, mode, SHA-256) and
// replaced when it does not match. The upload streams over the command's
// stdin into a file of its own, is verified, and only then renamed into
// place. Uploads that a killed push left behind are removed by the next one.
// Exec verifies the copy again right before it runs it.
func Push(ctx context.Context, run Runner, local *Local, remoteDir, name string) (*PushResult, error) {
	check, err := PushCheck(remoteDir, name, local.SHA256)
	if err != nil {
		return nil, err
	}
	r, err := run(ctx, check)
	if err != nil {
		return nil, fmt.Errorf("checking remote_dir %s: %w", remoteDir, err)
	}
	return PushChecked(ctx, run, local, remoteDir, name, r)
}

// Local is a local file to push, opened once: its checksum and every
// upload of it are of the same content even if its path is replaced
// meanwhile (a rebuild, a package upgrade).
type Local struct {
	f      *os.File
	size   int64
	SHA256 string // hex
	// Arch is the Go architecture the file is an executable for ("amd64",
	// "arm64"), "" when it is not an ELF executable of a known machine.
	Arch string
}

// OpenLocal opens and hashes the file at path.
func OpenLocal(path string) (*Local, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &Local{f: f, size: st.Size()}
	h := sha256.New()
	if _, err := io.Copy(h, l.content()); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	l.SHA256 = hex.EncodeToString(h.Sum(nil))
	l.Arch = elfArch(io.NewSectionReader(l.f, 0, l.size))
	return l, nil
}

// FitsMachine returns nil when l can run on a machine whose `uname -m` is
// machine, or when either is unknown (then the push goes ahead, as before
// architectures were told apart); else an error saying both.
func (l *Local) FitsMachine(machine string) error {
	want := UnameArch(machine)
	if l.Arch == "" || want == "" || l.Arch == want {
		return nil
	}
	return fmt.Errorf("the node is %s (%s) and the pingpath binary to push is %s: build pingpath for it (GOARCH=%s CGO_ENABLED=0 go build -o pingpath-%s ./cmd/pingpath) and give it to pingpath run with --push-binary, or run pingpath from a controller of the node's architecture", machine, want, l.Arch, want, want)
}

// content reads the file from the start; readers may run in parallel.
func (l *Local) content() io.Reader { return io.NewSectionReader(l.f, 0, l.size) }

// Close closes the file.
func (l *Local) Close() error { return l.f.Close() }

// PushCheck is Push's first command, for callers that run it behind
// another script in the same shell (a login shell on the node saved):
// it checks remoteDir and the copy of the file with checksum sum in it.
// Its output must end with the check's, which goes to PushChecked.
func PushCheck(remoteDir, name, sum string) (Command, error) {
	dir := path.Clean(remoteDir)
	if !path.IsAbs(dir) || dir == "/" {
		return Command{}, fmt.Errorf("remote_dir %q: must be an absolute path below /", remoteDir)
	}
	return Command{Args: []string{"sh", "-c", pushCheckScript, "sh", dir, PushedPath(dir, name, sum), sum, uploadPrefix(name)}}, nil
}

// PushChecked completes a push from the result of PushCheck's command
// (whose last stdout line is the check's): it uploads the file unless a
// verified copy is there.
func PushChecked(ctx context.Context, run Runner, local *Local, remoteDir, name string, check *Result) (*PushResult, error) {
	sum := local.SHA256
	remoteDir = path.Clean(remoteDir)
	dst := PushedPath(remoteDir, name, sum)
	res := &PushResult{Path: dst, SHA256: sum}
	switch {
	case check.ExitCode == exitRefused:
		return nil, fmt.Errorf("refusing remote_dir %s: %s", remoteDir, bytes.TrimSpace(check.Stderr))
	case check.ExitCode != 0:
		return nil, fmt.Errorf("checking remote_dir %s: exit %d: %s", remoteDir, check.ExitCode, bytes.TrimSpace(check.Stderr))
	}
	out := strings.TrimSpace(string(check.Stdout))
	switch out[strings.LastIndexByte(out, '\n')+1:] {
	case "present":
		res.Skipped = true
		return res, nil
	case "replaced":
		res.Replaced = true
	case "absent":
	default:
		return nil, fmt.Errorf("checking remote_dir %s: unexpected output %q", remoteDir, out)
	}
	tmp := path.Join(remoteDir, uploadPrefix(name)+randomSuffix())
	r, err := run(ctx, Command{Args: []string{"sh", "-c", pushUploadScript, "sh", tmp, sum, dst}, Stdin: local.content()})
	if err == nil && r.ExitCode != 0 {
		if got := strings.TrimSpace(string(r.Stdout)); r.ExitCode == 3 && got != "" {
			err = fmt.Errorf("checksum %s, want %s (upload corrupted)", got, sum)
		} else {
			err = fmt.Errorf("exit %d: %s", r.ExitCode, bytes.TrimSpace(r.Stderr))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("uploading to %s: %w", dst, err)
	}
	return res, nil
}

// uploadPrefix starts the name of an upload in progress.
func uploadPrefix(name string) string { return "." + name + ".upload-" }

// sha256Func defines sha256, which prints the SHA-256 of stdin (hex, then
// more): OpenSSL's when the node has it (it uses the CPU's SHA
// instructions: ≈ 10 ms of CPU for the 17 MB binary here, against ≈ 100 ms
// for coreutils' sha256sum), else sha256sum. Every run hashes the binary
// once per node and once per tracer start.
const sha256Func = `sha256() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }
`

// exitRefused is pushCheckScript's exit status for an unsafe remote_dir.
const exitRefused = 4

// pushCheckScript ($1 remote_dir, clean and absolute; $2 the copy's path;
// $3 its SHA-256; $4 the upload name prefix) checks remote_dir from / down,
// creating what is missing (mode 0700), and exits 4 with the reason on
// stderr when a directory is unsafe. It removes uploads untouched for 30
// minutes (an upload in progress writes all the time), then prints
// "present" when the copy is there, root's, writable by root only and of
// the right checksum; otherwise it removes it and prints "replaced" or
// "absent".
const pushCheckScript = sha256Func + `umask 077
refuse() { echo "$*" >&2; exit 4; }
# check DIR [parent]: a real directory, owned by root or the login user that
# called sudo, writable by nobody else (a parent may be sticky instead).
check() {
	if [ -L "$1" ]; then refuse "$1 is a symbolic link"; fi
	if [ ! -d "$1" ]; then refuse "$1 is not a directory"; fi
	st=$(stat -c '%u %a' -- "$1") || exit 4
	u=${st% *} m=${st#* }
	[ "$u" = 0 ] || [ "$u" = "${SUDO_UID:-0}" ] || refuse "$1 is owned by uid $u, not by root or the login user"
	[ $((0$m & 022)) = 0 ] || { [ "$2" = parent ] && [ $((0$m & 01000)) != 0 ]; } ||
		refuse "$1 is writable by group or others (mode $m)"
}
check / parent
p= rest=${1#/}
while [ -n "$rest" ]; do
	case $rest in
	*/*) c=${rest%%/*}; rest=${rest#*/} ;;
	*) c=$rest; rest= ;;
	esac
	p=$p/$c
	[ -e "$p" ] || [ -L "$p" ] || mkdir -m 0700 -- "$p" || exit 4
	if [ -n "$rest" ]; then check "$p" parent; else check "$p"; fi
done
find "$1" -maxdepth 1 -type f -name "$4*" -mmin +30 -exec rm -f -- {} + 2>/dev/null
if [ -f "$2" ] && [ ! -L "$2" ]; then
	st=$(stat -c '%u %a' -- "$2") && s=$(sha256 < "$2") &&
		[ "${st% *}" = 0 ] && [ $((0${st#* } & 022)) = 0 ] && [ "${s%% *}" = "$3" ] && { echo present; exit 0; }
fi
if [ -e "$2" ] || [ -L "$2" ]; then
	rm -f -- "$2" || exit 4
	echo replaced
else
	echo absent
fi`

// pushUploadScript ($1 the upload's name, $2 the expected SHA-256, $3 the
// copy's path; stdin the file) writes stdin to a new file, and renames it
// into place if its checksum is right; otherwise it prints the checksum
// found and exits 3. The upload is removed whatever happens.
const pushUploadScript = sha256Func + `umask 077
trap 'rm -f -- "$1"' EXIT
trap 'exit 1' HUP INT TERM PIPE
set -C
cat > "$1" || exit 2
s=$(sha256 < "$1") || exit 2
s=${s%% *}
if [ "$s" != "$2" ]; then echo "$s"; exit 3; fi
chmod 0755 -- "$1" && mv -f -- "$1" "$3"`

// ExecProgram is how the command given to VerifiedExec names the program
// it verified: the file descriptor it was read from.
const ExecProgram = "/proc/self/fd/3"

// VerifiedExec is the command that runs program (a copy Push made) only if
// it is root's, writable by root only and its SHA-256 is sum, and then
// executes command, in which the program is named ExecProgram: the very
// file that was read and checked, whatever happens to the path meanwhile.
// Wrappers (a gate) can come before it in command. It fails with exit
// status 126 and the reason on stderr.
func VerifiedExec(program, sum string, command ...string) []string {
	return append([]string{"sh", "-c", verifiedExecScript, "sh", program, sum}, command...)
}

const verifiedExecScript = sha256Func + `exec 3< "$1" || exit 126
st=$(stat -L -c '%u %a' /proc/self/fd/3) || exit 126
if [ "${st% *}" != 0 ] || [ $((0${st#* } & 022)) != 0 ]; then
	echo "pingpath: $1 is not owned by root or is writable by others (uid and mode $st): not run" >&2; exit 126
fi
s=$(sha256 <&3) || exit 126
s=${s%% *}
if [ "$s" != "$2" ]; then
	echo "pingpath: $1 has SHA-256 $s, want $2 (changed since it was pushed): not run" >&2; exit 126
fi
shift 2
exec "$@"`

// PushedPath is where Push puts a file with checksum sum.
func PushedPath(remoteDir, name, sum string) string {
	return path.Join(path.Clean(remoteDir), name+"-"+sum[:16])
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
