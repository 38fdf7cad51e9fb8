// Package sshremote implements remote.Transport over SSH with
// golang.org/x/crypto/ssh: host keys verified against known_hosts by default,
// public-key authentication from ssh-agent and identity files, an optional
// jump host, keepalives that notice a lost node, a connect timeout and
// context cancellation.
package sshremote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/remote"
)

// Endpoint says where and how to connect: one SSH hop, with the hop before
// it in Jump.
type Endpoint struct {
	Name                  string // for messages (an ssh_config alias or the destination)
	Host                  string
	Port                  int
	User                  string
	IdentityFiles         []string
	KnownHosts            []string // known_hosts files; none: ~/.ssh/known_hosts
	Agent                 bool     // also offer the keys of $SSH_AUTH_SOCK
	InsecureIgnoreHostKey bool
	ConnectTimeout        time.Duration // per hop
	Jump                  *Endpoint
}

// Addr is host:port.
func (e *Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// Options tune a connection beyond what the Endpoint says.
type Options struct {
	// KeepAlive is the interval of keepalive requests; a node that leaves
	// three in a row unanswered is declared lost and the connection closed
	// (a crashed sshd is noticed at once anyway: the TCP connection ends).
	// Default 5s, lenient enough for a loaded node.
	KeepAlive time.Duration
}

// Client is an SSH connection to one node. It implements remote.Transport.
type Client struct {
	target *Endpoint
	client *ssh.Client
	jump   *ssh.Client
	agent  net.Conn

	done      chan struct{}
	closeOnce sync.Once
}

var _ remote.Transport = (*Client)(nil)

// Dial connects and authenticates to t (through its jump host, if any).
// It fails within t.ConnectTimeout (per hop) or when ctx ends.
func Dial(ctx context.Context, t *Endpoint, opts Options) (*Client, error) {
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 5 * time.Second
	}
	c := &Client{target: t, done: make(chan struct{})}
	auth, agentConn, err := authMethods(t)
	if err != nil {
		return nil, err
	}
	c.agent = agentConn
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if t.Jump != nil {
		jc, err := Dial(ctx, t.Jump, opts)
		if err != nil {
			c.closeAgent()
			return nil, fmt.Errorf("connecting to %s through jump host: %w", t.Name, err)
		}
		c.jump = jc.client
		dial = jc.client.DialContext
	} else {
		d := &net.Dialer{Timeout: t.ConnectTimeout}
		dial = d.DialContext
	}
	cl, err := handshake(ctx, t, auth, dial)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.client = cl
	go c.keepAlive(opts.KeepAlive)
	return c, nil
}

func handshake(ctx context.Context, t *Endpoint, auth []ssh.AuthMethod,
	dial func(context.Context, string, string) (net.Conn, error)) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: t.User, Auth: auth, Timeout: t.ConnectTimeout}
	if t.InsecureIgnoreHostKey {
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // explicit user choice
	} else {
		cb, algos, err := hostKeyCallback(t)
		if err != nil {
			return nil, err
		}
		cfg.HostKeyCallback, cfg.HostKeyAlgorithms = cb, algos
	}
	ctx, cancel := context.WithTimeout(ctx, t.ConnectTimeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, fmt.Errorf("connecting to %s (%s): %w", t.Name, t.Addr(), err)
	}
	// The handshake obeys the same deadline and the caller's context.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, t.Addr(), cfg)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh handshake with %s (%s): %w", t.Name, t.Addr(), ctx.Err())
		}
		return nil, fmt.Errorf("ssh handshake with %s (%s): %w", t.Name, t.Addr(), err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// authMethods offers the agent's keys and the identity files (or the usual
// default key files when none is configured). Passwords are never used for
// login.
func authMethods(t *Endpoint) ([]ssh.AuthMethod, net.Conn, error) {
	var signers []ssh.Signer
	var agentConn net.Conn
	files := t.IdentityFiles
	explicit := len(files) > 0
	if !explicit {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			files = append(files, envfile.ExpandHome("~/.ssh/"+n))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if explicit {
				return nil, nil, fmt.Errorf("reading identity file for %s: %w", t.Name, err)
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			var pe *ssh.PassphraseMissingError
			if errors.As(err, &pe) {
				// Encrypted keys are used through ssh-agent.
				continue
			}
			return nil, nil, fmt.Errorf("parsing identity file %s for %s: %w", f, t.Name, err)
		}
		signers = append(signers, s)
	}
	var methods []ssh.AuthMethod
	if t.Agent {
		if conn, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK")); err == nil {
			agentConn = conn
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if len(methods) == 0 {
		return nil, nil, fmt.Errorf("no SSH key for %s: set identity_file, or load a key into ssh-agent", t.Name)
	}
	return methods, agentConn, nil
}

// hostKeyCallback verifies the server key against the known_hosts files and
// returns the key algorithms recorded there for the host, so that the
// server is asked for a key type we can check.
func hostKeyCallback(t *Endpoint) (ssh.HostKeyCallback, []string, error) {
	var files []string
	for _, f := range t.KnownHosts {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no known_hosts file for %s (looked at %v): add its key (ssh-keyscan -p %d %s >> ~/.ssh/known_hosts) or set known_hosts",
			t.Name, t.KnownHosts, t.Port, t.Host)
	}
	kh, err := knownhosts.New(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("reading known_hosts for %s: %w", t.Name, err)
	}
	cb := func(hostname string, remoteAddr net.Addr, key ssh.PublicKey) error {
		err := kh(hostname, remoteAddr, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re):
			return fmt.Errorf("host key of %s is revoked in known_hosts", t.Name)
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return fmt.Errorf("HOST KEY MISMATCH for %s (%s): the server's %s key %s is not the one in %s line %d; refusing to connect (someone may be intercepting, or the host was reinstalled: check, then fix known_hosts)",
				t.Name, hostname, key.Type(), ssh.FingerprintSHA256(key), ke.Want[0].Filename, ke.Want[0].Line)
		case errors.As(err, &ke):
			return fmt.Errorf("host key of %s (%s) is not in %v: verify it and add it (ssh-keyscan -p %d %s >> %s)",
				t.Name, hostname, files, t.Port, t.Host, files[0])
		}
		return err
	}
	return cb, knownAlgorithms(kh, t), nil
}

// knownAlgorithms asks the known_hosts callback which key types it has for
// the target (it lists them when shown a key it does not know).
func knownAlgorithms(kh ssh.HostKeyCallback, t *Endpoint) []string {
	addr := &net.TCPAddr{IP: net.IPv4zero}
	err := kh(knownhosts.Normalize(t.Addr()), addr, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		typ := w.Key.Type()
		cands := []string{typ}
		if typ == ssh.KeyAlgoRSA {
			cands = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range cands {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// probeKey is a key no known_hosts file contains.
type probeKey struct{}

func (probeKey) Type() string                        { return "pingpath-probe" }
func (probeKey) Marshal() []byte                     { return []byte("pingpath-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// keepAlive closes the connection when the node stops answering, so that
// every session on it fails instead of hanging.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		res := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			res <- err
		}()
		select {
		case err := <-res:
			if err == nil {
				missed = 0
				continue
			}
			c.Close()
			return
		case <-time.After(every):
			if missed++; missed >= 3 {
				c.Close()
				return
			}
		case <-c.done:
			return
		}
	}
}

// Close ends the connection (and the jump connection).
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		if c.client != nil {
			c.client.Close()
		}
		if c.jump != nil {
			c.jump.Close()
		}
		c.closeAgent()
	})
	return nil
}

func (c *Client) closeAgent() {
	if c.agent != nil {
		c.agent.Close()
	}
}

// session opens a session on the connection (every command of a node
// shares its one SSH connection) and returns the line to start in it. The
// line begins with exec: the login shell, whatever it is, replaces itself
// with the program instead of waiting for it, so that no shell stays
// between the session and the program (signals and stdin EOF reach it).
func (c *Client) session(cmd remote.Command) (*ssh.Session, string, error) {
	line, err := remote.Line(cmd)
	if err != nil {
		return nil, "", err
	}
	s, err := c.client.NewSession()
	if err != nil {
		return nil, "", fmt.Errorf("opening session on %s: %w", c.target.Name, err)
	}
	return s, "exec " + line, nil
}

// Run implements remote.Transport.
func (c *Client) Run(ctx context.Context, cmd remote.Command) (*remote.Result, error) {
	s, line, err := c.session(cmd)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if len(cmd.StdinPrefix) > 0 || cmd.Stdin != nil {
		var rs []io.Reader
		if len(cmd.StdinPrefix) > 0 {
			rs = append(rs, bytes.NewReader(cmd.StdinPrefix))
		}
		if cmd.Stdin != nil {
			rs = append(rs, cmd.Stdin)
		}
		s.Stdin = io.MultiReader(rs...)
	}
	if err := s.Start(line); err != nil {
		return nil, fmt.Errorf("starting command on %s: %w", c.target.Name, err)
	}
	stop := context.AfterFunc(ctx, func() {
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
	})
	defer stop()
	err = s.Wait()
	res := &remote.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	code, err := exitCode(err)
	res.ExitCode = code
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		return res, fmt.Errorf("running command on %s: %w", c.target.Name, err)
	}
	return res, nil
}

// exitCode maps session.Wait's error to an exit status.
func exitCode(err error) (int, error) {
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		// x/crypto already maps a signal exit to 128+N.
		return ee.ExitStatus(), nil
	case errors.As(err, &em), errors.Is(err, io.EOF):
		return -1, remote.ErrConnectionLost
	}
	return -1, err
}

// process is a started session.
type process struct {
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
	pid    *remote.PIDReader
	stop   func() bool

	waitOnce sync.Once
	code     int
	err      error
}

// Start implements remote.Transport.
func (c *Client) Start(ctx context.Context, cmd remote.Command) (remote.Process, error) {
	s, line, err := c.session(cmd)
	if err != nil {
		return nil, err
	}
	p := &process{s: s}
	if p.stdin, err = s.StdinPipe(); err == nil {
		if p.stdout, err = s.StdoutPipe(); err == nil {
			p.stderr, err = s.StderrPipe()
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening session pipes on %s: %w", c.target.Name, err)
	}
	if cmd.ReportPID {
		p.pid = remote.NewPIDReader(p.stderr)
		p.stderr = p.pid
	}
	if err := s.Start(line); err != nil {
		s.Close()
		return nil, fmt.Errorf("starting command on %s: %w", c.target.Name, err)
	}
	if len(cmd.StdinPrefix) > 0 {
		if _, err := p.stdin.Write(cmd.StdinPrefix); err != nil {
			s.Close()
			return nil, fmt.Errorf("writing stdin on %s: %w", c.target.Name, err)
		}
	}
	p.stop = context.AfterFunc(ctx, func() { s.Close() })
	return p, nil
}

func (p *process) Stdout() io.Reader { return p.stdout }
func (p *process) Stderr() io.Reader { return p.stderr }
func (p *process) Stdin() io.Writer  { return p.stdin }
func (p *process) CloseStdin() error { return p.stdin.Close() }
func (p *process) Signal(sig string) error {
	return p.s.Signal(ssh.Signal(sig))
}
func (p *process) PID() int {
	if p.pid == nil {
		return 0
	}
	return p.pid.PID()
}
func (p *process) Wait() (int, error) {
	p.waitOnce.Do(func() {
		p.code, p.err = exitCode(p.s.Wait())
		p.stop()
	})
	return p.code, p.err
}
func (p *process) Close() error { return p.s.Close() }
