package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// SudoUser is the lab's optional non-root login user (Options.SudoUser):
// a real account of this machine, which the four nodes share, that may
// become root with sudo — without a password on the VMs, with one on the
// hosts (sudoers rules per hostname; each node has its own) — so that a
// run through the lab exercises both of pingpath's sudo modes for real.
// Up creates the account (useradd, its home under /home), its
// authorized_keys, its password (chpasswd, on stdin) and a file in
// /etc/sudoers.d; Down removes them all.
type SudoUser struct {
	Name         string `json:"name"`
	SudoersFile  string `json:"sudoers_file"`
	PasswordFile string `json:"password_file"` // in the lab directory, mode 0600
}

// planSudoUser names the user and its files; nothing is created yet, so
// that lab.json lists them before they exist.
func (l *Lab) planSudoUser() *SudoUser {
	return &SudoUser{
		Name:         "pp-" + l.Name,
		SudoersFile:  "/etc/sudoers.d/pingpath-lab-" + l.Name,
		PasswordFile: l.path("sudo-password"),
	}
}

// SudoPassword returns the password the sudo user types on the hosts.
func (l *Lab) SudoPassword() ([]byte, error) {
	if l.SudoUser == nil {
		return nil, errors.New("the lab has no sudo user (lab up --sudo-user)")
	}
	b, err := os.ReadFile(l.SudoUser.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("reading the lab's sudo password: %w", err)
	}
	return bytes.TrimSuffix(b, []byte("\n")), nil
}

// sudoUserSSHDConfig is the tail of every node's sshd_config: the user's
// keys are in its home (sshd reads them as the user, who cannot read the
// lab directory).
func (l *Lab) sudoUserSSHDConfig() string {
	if l.SudoUser == nil {
		return ""
	}
	return fmt.Sprintf("Match User %s\n  AuthorizedKeysFile .ssh/authorized_keys\n", l.SudoUser.Name)
}

// sudoersRules lets the user become root without a password on the VMs and
// with its password on the hosts.
func (l *Lab) sudoersRules() string {
	var vms, hosts []string
	for _, n := range l.Nodes {
		if n.IsVM() {
			vms = append(vms, n.Hostname)
		} else {
			hosts = append(hosts, n.Hostname)
		}
	}
	u := l.SudoUser.Name
	return fmt.Sprintf("# pingpath lab %s (removed by pingpath lab down): sudo without a password on the VMs, with one on the hosts\n"+
		"%s %s = (root) NOPASSWD: ALL\n%s %s = (root) ALL\n", l.Name, u, strings.Join(vms, ", "), u, strings.Join(hosts, ", "))
}

// createSudoUser makes the account, its keys, its password and its sudoers
// rules.
func (l *Lab) createSudoUser() error {
	su := l.SudoUser
	if _, err := exec.LookPath("sudo"); err != nil {
		return fmt.Errorf("sudo user: %w (install sudo)", err)
	}
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/bash",
		"--comment", "pingpath lab "+l.Name, "--user-group", su.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("useradd %s: %w: %s", su.Name, err, bytes.TrimSpace(out))
	}
	u, err := user.Lookup(su.Name)
	if err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pub, err := os.ReadFile(l.IdentityFile + ".pub")
	if err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	keys := filepath.Join(sshDir, "authorized_keys")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	if err := os.WriteFile(keys, pub, 0o600); err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	for _, p := range []string{sshDir, keys} {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("sudo user: %w", err)
		}
	}
	// A password with characters a shell would interpret: it must reach
	// sudo intact without ever passing through one.
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	password := "pp '" + hex.EncodeToString(b) + `"$`
	if err := os.WriteFile(su.PasswordFile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(su.Name + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		return fmt.Errorf("chpasswd %s: %w: %s", su.Name, err, bytes.TrimSpace(out))
	}
	// Checked by visudo before it is installed: a broken file in
	// /etc/sudoers.d breaks sudo for the whole machine.
	tmp := su.SudoersFile + ".tmp" // sudo ignores names with a dot
	if err := os.WriteFile(tmp, []byte(l.sudoersRules()), 0o440); err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	if out, err := exec.Command("visudo", "-cqf", tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checking %s: %w: %s", tmp, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, su.SudoersFile); err != nil {
		return fmt.Errorf("sudo user: %w", err)
	}
	return nil
}

// removeSudoUser undoes createSudoUser, whatever part of it was done. The
// user's processes (its SSH sessions in the nodes) must be gone.
func (l *Lab) removeSudoUser() error {
	su := l.SudoUser
	if su == nil {
		return nil
	}
	var errs []error
	for _, p := range []string{su.SudoersFile, su.SudoersFile + ".tmp", su.PasswordFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if _, err := user.Lookup(su.Name); err == nil {
		// --remove: the home directory too (userdel warns that there is
		// no mail spool; what counts is that the account is gone).
		out, err := exec.Command("userdel", "--remove", su.Name).CombinedOutput()
		if _, lerr := user.Lookup(su.Name); lerr == nil {
			errs = append(errs, fmt.Errorf("userdel %s: %v: %s", su.Name, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}
