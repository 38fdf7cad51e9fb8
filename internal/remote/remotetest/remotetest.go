// Package remotetest runs an in-process SSH server on 127.0.0.1 for unit
// tests of remote transports and the orchestrator. Commands are run locally
// with the shell (bash when present) -c, with stdin, stdout, stderr, exit status and the SSH
// "signal" request wired like OpenSSH's sshd.
package remotetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/remote/sshremote"
	"golang.org/x/crypto/ssh"
)

// Options change the server's behaviour.
type Options struct {
	NoSignal bool // ignore "signal" requests, like old sshd versions
	// Env is added to every command's environment.
	Env []string
}

// Server is a running test SSH server.
type Server struct {
	Addr           string // 127.0.0.1:port
	Port           int
	KnownHostsFile string // a known_hosts file holding this server's key
	IdentityFile   string // the private key the server accepts
	HostKey        ssh.PublicKey

	opts    Options
	ln      net.Listener
	mu      sync.Mutex
	conns   map[net.Conn]bool
	procs   map[*exec.Cmd]bool
	execs   []string
	wg      sync.WaitGroup
	closed  bool
	signals []string
}

// New starts a server that lives until the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(idFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	authorized, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port,
		IdentityFile: idFile, HostKey: hostSigner.PublicKey(),
		opts: opts, ln: ln, conns: map[net.Conn]bool{}, procs: map[*exec.Cmd]bool{},
	}
	s.KnownHostsFile = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, ssh.MarshalAuthorizedKey(s.HostKey))
	if err := os.WriteFile(s.KnownHostsFile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go s.serve(cfg)
	t.Cleanup(s.Close)
	return s
}

// Endpoint is an sshremote.Endpoint for this server, verified by its
// known_hosts.
func (s *Server) Endpoint(name string) *sshremote.Endpoint {
	u := "tester"
	return &sshremote.Endpoint{
		Name: name, Host: "127.0.0.1", Port: s.Port, User: u,
		IdentityFiles: []string{s.IdentityFile}, KnownHosts: []string{s.KnownHostsFile},
		ConnectTimeout: 5 * time.Second,
	}
}

// Execs returns the command lines the server was asked to run, in order.
func (s *Server) Execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

// Signals returns the signal requests received, in order.
func (s *Server) Signals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.signals...)
}

// DropConnections cuts every client connection, as a node crash would; the
// commands they started see their stdin closed.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Close stops the server and kills whatever its sessions left running.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	for p := range s.procs {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serve(cfg *ssh.ServerConfig) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handleConn(c, cfg)
	}
}

func (s *Server) handleConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go func() {
		for r := range reqs {
			// keepalive@openssh.com and friends: answer as OpenSSH does.
			_ = r.Reply(false, nil)
		}
	}()
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			s.forward(nc)
			continue
		}
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ch, creqs)
		}()
	}
	wg.Wait()
}

// forward serves a jump-host connection (ssh -J), to loopback only.
func (s *Server) forward(nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil || p.Host != "127.0.0.1" {
		_ = nc.Reject(ssh.Prohibited, "loopback only")
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		_, _ = io.Copy(ch, conn)
		ch.Close()
	}()
	go func() {
		_, _ = io.Copy(conn, ch)
		conn.Close()
	}()
}

// session serves one channel: exec, plus signals.
func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var cmd *exec.Cmd
	exited := make(chan struct{})
	for r := range reqs {
		switch r.Type {
		case "exec":
			if cmd != nil {
				_ = r.Reply(false, nil)
				continue
			}
			var p struct{ Command string }
			if err := ssh.Unmarshal(r.Payload, &p); err != nil {
				_ = r.Reply(false, nil)
				continue
			}
			cmd = s.start(ch, p.Command, exited)
			_ = r.Reply(cmd != nil, nil)
			if cmd == nil {
				return
			}
		case "signal":
			var p struct{ Signal string }
			_ = ssh.Unmarshal(r.Payload, &p)
			s.mu.Lock()
			s.signals = append(s.signals, p.Signal)
			s.mu.Unlock()
			if !s.opts.NoSignal && cmd != nil && cmd.Process != nil {
				if sig, ok := signals[p.Signal]; ok {
					_ = cmd.Process.Signal(sig)
				}
			}
			if r.WantReply {
				_ = r.Reply(!s.opts.NoSignal, nil)
			}
		default:
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
	// The client closed the channel: like sshd, leave the process to
	// notice its closed pipes.
	if cmd != nil {
		<-exited
	}
}

var signals = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL,
	"HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
}

func (s *Server) start(ch ssh.Channel, line string, exited chan struct{}) *exec.Cmd {
	// Like sshd, run the line with the login shell (bash on Debian, which
	// execs a single command, so that signals reach the program itself).
	shell := "/bin/sh"
	if _, err := os.Stat("/bin/bash"); err == nil {
		shell = "/bin/bash"
	}
	cmd := exec.Command(shell, "-c", line)
	cmd.Env = append(os.Environ(), s.opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	s.mu.Lock()
	s.execs = append(s.execs, line)
	s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil
	}
	s.mu.Lock()
	s.procs[cmd] = true
	s.mu.Unlock()
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	var out sync.WaitGroup
	out.Add(2)
	go func() { defer out.Done(); _, _ = io.Copy(ch, stdout) }()
	go func() { defer out.Done(); _, _ = io.Copy(ch.Stderr(), stderr) }()
	go func() {
		out.Wait()
		err := cmd.Wait()
		s.mu.Lock()
		delete(s.procs, cmd)
		s.mu.Unlock()
		status := 0
		if ee, ok := err.(*exec.ExitError); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				msg := struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}{Signal: signalName(ws.Signal())}
				_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(&msg))
				_ = ch.CloseWrite()
				ch.Close()
				close(exited)
				return
			}
			status = ws.ExitStatus()
		}
		b := make([]byte, 4)
		binary.BigEndian.PutUint32(b, uint32(status))
		_, _ = ch.SendRequest("exit-status", false, b)
		_ = ch.CloseWrite()
		ch.Close()
		close(exited)
	}()
	return cmd
}

func signalName(sig syscall.Signal) string {
	for n, s := range signals {
		if s == sig {
			return n
		}
	}
	return strconv.Itoa(int(sig))
}
