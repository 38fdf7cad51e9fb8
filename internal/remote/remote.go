// Package remote runs commands on a node: the Transport interface the
// orchestrator drives (implemented over SSH by remote/sshremote and by an
// in-process server in remote/remotetest), and the shell quoting that makes
// sure no value from the environment file reaches a remote shell unquoted.
package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Command is one remote program invocation. Args are quoted one by one
// (Line) before they are sent; nothing in them is interpreted by a shell.
type Command struct {
	Args []string
	// Env is set with env(1) in front of Args (names are checked, values quoted).
	Env map[string]string
	// StdinPrefix is written to the program's stdin before anything else
	// (the sudo password). It is never logged.
	StdinPrefix []byte
	// Stdin, for Run, is copied to the program's stdin after StdinPrefix;
	// stdin is then closed.
	Stdin io.Reader
	// ReportPID makes the remote program print its pid on stderr first
	// ("pingpath-pid N"), consumed by the transport and returned by
	// Process.PID, so that the orchestrator can signal it with kill(1).
	ReportPID bool
	// pidWrapped: Args already hold the pid wrapper (WithSudo puts it
	// inside sudo), ReportPID only tells the transport to read the line.
	pidWrapped bool
}

// Result is what a finished Run returns.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// Signal names understood by Process.Signal (the SSH names, without "SIG").
const (
	SIGINT  = "INT"
	SIGTERM = "TERM"
	SIGKILL = "KILL"
)

// Transport is a connection to one node.
type Transport interface {
	// Run executes cmd and waits for it. A non-zero exit is reported in
	// Result.ExitCode with a nil error; err is for transport failures.
	Run(ctx context.Context, cmd Command) (*Result, error)
	// Start begins cmd and returns at once; its output is read through the
	// Process. Cancelling ctx closes the session (the remote side sees its
	// stdin closed).
	Start(ctx context.Context, cmd Command) (Process, error)
	// Close ends the connection.
	Close() error
}

// Process is a started remote command.
type Process interface {
	Stdout() io.Reader
	Stderr() io.Reader
	// Stdin writes to the program's stdin.
	Stdin() io.Writer
	// CloseStdin sends EOF to the program.
	CloseStdin() error
	// Signal asks the server to deliver a signal (ignored by servers that
	// do not implement the SSH "signal" request).
	Signal(sig string) error
	// PID is the remote pid when the command asked for ReportPID and the
	// pid line has arrived (0 otherwise).
	PID() int
	// Wait waits for the exit status. An ExitMissingError-like transport
	// failure (connection lost) is returned as err with code -1.
	Wait() (code int, err error)
	// Close ends the session whatever the program's state.
	Close() error
}

// ErrConnectionLost reports a session that ended without an exit status.
var ErrConnectionLost = errors.New("connection lost before the command exited")

// Quote quotes s for a POSIX shell: plain words stay as they are, anything
// else is single-quoted, an embedded single quote being closed, escaped and reopened.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:,+@%", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every argument and joins them with spaces.
func Join(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// pidPrefix starts the line a ReportPID command prints first on stderr.
const pidPrefix = "pingpath-pid "

// Line is cmd quoted for the remote shell (sshremote sends it as "exec " + Line).
func Line(cmd Command) (string, error) {
	args, err := Argv(cmd)
	if err != nil {
		return "", err
	}
	return Join(args), nil
}

// Argv is cmd's full argument vector: Args behind env(1) for Env and behind
// the pid-printing sh wrapper for ReportPID.
func Argv(cmd Command) ([]string, error) {
	args := cmd.Args
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	if len(cmd.Env) > 0 {
		keys := slices.Sorted(maps.Keys(cmd.Env))
		env := []string{"env"}
		for _, k := range keys {
			if !validEnvName(k) {
				return nil, fmt.Errorf("invalid environment variable name %q", k)
			}
			env = append(env, k+"="+cmd.Env[k])
		}
		args = append(env, args...)
	}
	if cmd.ReportPID && !cmd.pidWrapped {
		// exec keeps the pid: the number printed is the program's own.
		args = append([]string{"sh", "-c", `echo "` + pidPrefix + `$$" >&2; exec "$@"`, "sh"}, args...)
	}
	return args, nil
}

// Sudo modes (the envfile values).
const (
	SudoNone         = "none"
	SudoPasswordless = "passwordless"
	SudoPassword     = "password"
)

// WithSudo wraps cmd to run as root: sudo -n (passwordless), or sudo -S -k
// with an empty prompt and the password fed on stdin ahead of anything else.
// Mode "" or "none" leaves cmd as it is.
func WithSudo(cmd Command, mode string, password []byte) (Command, error) {
	var prefix []string
	switch mode {
	case "", SudoNone:
		return cmd, nil
	case SudoPasswordless:
		prefix = []string{"sudo", "-n", "--"}
	case SudoPassword:
		if password == nil {
			return cmd, errors.New("sudo password mode but no password given")
		}
		// -k: ignore cached credentials, so that sudo always reads the
		// password line and never leaves it to the program.
		prefix = []string{"sudo", "-S", "-k", "-p", "", "--"}
		cmd.StdinPrefix = append(append(append([]byte{}, password...), '\n'), cmd.StdinPrefix...)
	default:
		return cmd, fmt.Errorf("unknown sudo mode %q", mode)
	}
	// Env and the pid wrapper go inside sudo: sudo would reset the
	// environment, and the pid printed must be the program's.
	inner, err := Argv(cmd)
	if err != nil {
		return cmd, err
	}
	cmd.Args = append(prefix, inner...)
	cmd.Env, cmd.pidWrapped = nil, cmd.ReportPID
	return cmd, nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// PIDReader strips the "pingpath-pid N" line from the head of a stderr
// stream and records N. Transports wrap a ReportPID command's stderr with it.
// Lines before it (sudo's warnings, such as a hostname that does not
// resolve) are passed on; after a few such lines it stops looking.
type PIDReader struct {
	r       *bufio.Reader
	once    sync.Once
	mu      sync.Mutex
	pid     int
	pending []byte // lines read while looking for the pid line
}

// pidSearchLines bounds the lines read while looking for the pid line.
const pidSearchLines = 8

// NewPIDReader wraps stderr.
func NewPIDReader(stderr io.Reader) *PIDReader {
	return &PIDReader{r: bufio.NewReader(stderr)}
}

func (p *PIDReader) Read(b []byte) (int, error) {
	p.once.Do(func() {
		for range pidSearchLines {
			line, err := p.r.ReadSlice('\n')
			if rest, ok := bytes.CutPrefix(line, []byte(pidPrefix)); ok && err == nil {
				n, _ := strconv.Atoi(string(bytes.TrimSpace(rest)))
				p.mu.Lock()
				p.pid = n
				p.mu.Unlock()
				return
			}
			p.pending = append(p.pending, line...)
			if err != nil {
				return
			}
		}
	})
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// PID is the pid read so far (0 before the line arrived or without one).
func (p *PIDReader) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}
