package lab

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHPort is the port every node's sshd listens on (on its management
// address only).
const SSHPort = 22

// privsepDir is the directory OpenSSH's sshd chroots its unprivileged child
// into; Debian creates it at boot for the system sshd only.
const privsepDir = "/run/sshd"

// genKey makes an ed25519 key pair and writes the private key in OpenSSH
// format (mode 0600) and the public key beside it (.pub). It returns the
// public key in authorized_keys format, without the trailing newline.
func genKey(path, comment string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generating key %s: %w", path, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", fmt.Errorf("encoding key %s: %w", path, err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", fmt.Errorf("writing key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key %s: %w", path, err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing public key: %w", err)
	}
	return line, nil
}

// nodeSSHDir holds a node's host key and sshd_config.
func (l *Lab) nodeSSHDir(node string) string { return l.path("ssh", node) }

// writeSSHFiles generates the client key and every node's host key, the
// sshd configs, DIR/ssh_config and DIR/known_hosts.
func (l *Lab) writeSSHFiles() error {
	if err := os.MkdirAll(l.path("ssh"), 0o700); err != nil {
		return fmt.Errorf("creating ssh directory: %w", err)
	}
	clientPub, err := genKey(l.IdentityFile, "pingpath-lab-"+l.Name)
	if err != nil {
		return err
	}
	authorized := l.path("ssh", "authorized_keys")
	if err := os.WriteFile(authorized, []byte(clientPub+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing authorized_keys: %w", err)
	}
	var known, config strings.Builder
	fmt.Fprintf(&config, "# ssh_config of pingpath lab %q (generated; removed by pingpath lab down)\n", l.Name)
	for i := range l.Nodes {
		n := &l.Nodes[i]
		dir := l.nodeSSHDir(n.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
		pub, err := genKey(hostKey, "root@"+n.Hostname)
		if err != nil {
			return err
		}
		n.HostKey = pub
		// OpenSSH's ConnectTimeout also bounds the banner exchange: a KVM
		// lab's VM, emulated inside an emulated host, was seen taking more
		// than 5 s for it on a loaded machine.
		connectTimeout := 5
		if l.IsKVM() {
			connectTimeout = 60
		}
		if !l.IsKVM() { // a KVM lab's machines bring their own sshd_config
			cfg := sshdConfig(n.MgmtIP, hostKey, authorized, rootPasswordLocked()) + l.sudoUserSSHDConfig()
			if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
				return fmt.Errorf("writing sshd_config of %s: %w", n.Name, err)
			}
		}
		// The alias and the address both name the key: OpenSSH looks up
		// HostName (the address), x/crypto's knownhosts the dialled address.
		fmt.Fprintf(&known, "%s,%s %s\n", n.Name, n.MgmtIP, keyField(pub))
		fmt.Fprintf(&config, "\nHost %s\n", n.Name)
		fmt.Fprintf(&config, "  HostName %s\n  Port %d\n  User root\n", n.MgmtIP, SSHPort)
		fmt.Fprintf(&config, "  IdentityFile %s\n  IdentitiesOnly yes\n", sshQuote(l.IdentityFile))
		fmt.Fprintf(&config, "  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n", sshQuote(l.KnownHosts))
		fmt.Fprintf(&config, "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout %d\n  LogLevel ERROR\n", connectTimeout)
	}
	if err := os.WriteFile(l.KnownHosts, []byte(known.String()), 0o644); err != nil {
		return fmt.Errorf("writing known_hosts: %w", err)
	}
	if err := os.WriteFile(l.SSHConfig, []byte(config.String()), 0o644); err != nil {
		return fmt.Errorf("writing ssh_config: %w", err)
	}
	return nil
}

// keyField drops the comment from an authorized_keys line.
func keyField(authorizedLine string) string {
	f := strings.Fields(authorizedLine)
	if len(f) < 2 {
		return authorizedLine
	}
	return f[0] + " " + f[1]
}

// sshQuote quotes a path for ssh_config, which splits on whitespace.
func sshQuote(s string) string {
	if strings.ContainsAny(s, " \t\"") {
		return strconv.Quote(s)
	}
	return s
}

// rootPasswordLocked reports whether root's password is locked ("!" in
// /etc/shadow). Without PAM, sshd refuses every login, even by key, to an
// account whose password is locked this way; with PAM, Debian's sshd stack
// allows key logins to it. So the lab uses PAM only on such machines.
func rootPasswordLocked() bool {
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "root:"); ok {
			return strings.HasPrefix(rest, "!")
		}
	}
	return false
}

// sshdConfig is a minimal sshd_config: root by key only, listening only on
// the node's management address, no PAM unless root's password is locked.
func sshdConfig(addr netip.Addr, hostKey, authorized string, usePAM bool) string {
	pam := "no"
	if usePAM {
		pam = "yes"
	}
	return fmt.Sprintf(`# generated by pingpath lab
ListenAddress %s:%d
HostKey %s
AuthorizedKeysFile %s
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM %s
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
MaxStartups 100
MaxSessions 100
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, addr, SSHPort, sshQuote(hostKey), sshQuote(authorized), pam)
}

// sshdArgv is the command that starts a node's sshd: pingpath lab node-init
// gives the node its own hostname, then execs sshd in the foreground (-D) so
// the pid stays the one in the pid file.
func (l *Lab) sshdArgv(binary, sshd string, n *Node) []string {
	return []string{binary, "lab", "node-init", "--dir", l.Dir, "--hostname", n.Hostname, "--",
		sshd, "-D", "-e", "-f", filepath.Join(l.nodeSSHDir(n.Name), "sshd_config")}
}

// waitSSH waits until the node's sshd accepts a TCP connection on its
// management address and sends its SSH banner, giving each try perTry to
// answer (sshd forks and re-executes itself per connection: milliseconds
// in a namespace, seconds on an emulated machine).
func waitSSH(ctx context.Context, addr netip.Addr, timeout, perTry time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		banner, err := sshBanner(ctx, addr, perTry)
		if err == nil {
			if strings.HasPrefix(banner, "SSH-2.0-") {
				return nil
			}
			err = fmt.Errorf("unexpected banner %q", banner)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd on %s not ready after %s: %w", addr, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sshBanner connects to addr:22 and reads the server's identification line.
func sshBanner(ctx context.Context, addr netip.Addr, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, SSHPort).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading ssh banner from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// SSHClientConfig returns an x/crypto/ssh client configuration for the lab's
// nodes: user root, the lab's client key, and host keys verified against
// DIR/known_hosts.
func (l *Lab) SSHClientConfig() (*ssh.ClientConfig, error) {
	keyPEM, err := os.ReadFile(l.IdentityFile)
	if err != nil {
		return nil, fmt.Errorf("reading lab identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing lab identity %s: %w", l.IdentityFile, err)
	}
	hostKeys, err := knownhosts.New(l.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.KnownHosts, err)
	}
	return &ssh.ClientConfig{
		User:              "root",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	}, nil
}

// Dial opens an SSH connection to a node with SSHClientConfig.
func (l *Lab) Dial(ctx context.Context, node string) (*ssh.Client, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	cfg, err := l.SSHClientConfig()
	if err != nil {
		return nil, err
	}
	addr := netip.AddrPortFrom(n.MgmtIP, SSHPort).String()
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s (%s): %w", node, addr, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh to %s (%s): %w", node, addr, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}
