package envfile

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// SSHConfig is the subset of an OpenSSH client configuration file pingpath
// understands: Host blocks with HostName, User, Port, IdentityFile,
// UserKnownHostsFile, ProxyJump and StrictHostKeyChecking. Other keywords
// are ignored, as are Match blocks.
type SSHConfig struct {
	blocks []hostBlock
}

type hostBlock struct {
	patterns []string
	kv       [][2]string // keyword (lower case), value; in file order
}

// HostConfig is the effective configuration for one host name.
type HostConfig struct {
	HostName              string
	User                  string
	Port                  int
	IdentityFiles         []string
	KnownHosts            []string
	ProxyJump             string
	StrictHostKeyChecking string
}

// ReadSSHConfig parses an ssh_config file.
func ReadSSHConfig(file string) (*SSHConfig, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading ssh config: %w", err)
	}
	defer f.Close()
	cfg := &SSHConfig{}
	// Lines before the first Host apply to every host.
	cur := &hostBlock{patterns: []string{"*"}}
	inMatch := false
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := splitKeyword(line)
		if !ok {
			return nil, fmt.Errorf("%s:%d: cannot parse %q", file, ln, line)
		}
		switch strings.ToLower(key) {
		case "host":
			cfg.blocks = append(cfg.blocks, *cur)
			cur = &hostBlock{patterns: strings.Fields(val)}
			inMatch = false
		case "match":
			cfg.blocks = append(cfg.blocks, *cur)
			cur = &hostBlock{}
			inMatch = true
		default:
			if !inMatch {
				cur.kv = append(cur.kv, [2]string{strings.ToLower(key), unquote(val)})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	cfg.blocks = append(cfg.blocks, *cur)
	return cfg, nil
}

// splitKeyword splits "Keyword value" or "Keyword=value".
func splitKeyword(line string) (string, string, bool) {
	i := strings.IndexAny(line, " \t=")
	if i <= 0 {
		return "", "", false
	}
	key := line[:i]
	val := strings.TrimLeft(line[i:], " \t")
	val = strings.TrimLeft(strings.TrimPrefix(val, "="), " \t")
	return key, strings.TrimSpace(val), val != ""
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// Lookup returns the settings for host: like OpenSSH, the first value seen
// for a keyword wins, across every matching block in file order;
// IdentityFile and UserKnownHostsFile accumulate.
func (c *SSHConfig) Lookup(host string) HostConfig {
	var h HostConfig
	seen := map[string]bool{}
	for _, b := range c.blocks {
		if !matchHost(b.patterns, host) {
			continue
		}
		for _, kv := range b.kv {
			k, v := kv[0], kv[1]
			switch k {
			case "identityfile":
				h.IdentityFiles = append(h.IdentityFiles, v)
				continue
			case "userknownhostsfile":
				if !seen[k] {
					h.KnownHosts = strings.Fields(v)
				}
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			switch k {
			case "hostname":
				h.HostName = strings.ReplaceAll(v, "%h", host)
			case "user":
				h.User = v
			case "port":
				h.Port, _ = strconv.Atoi(v)
			case "proxyjump":
				h.ProxyJump = v
			case "stricthostkeychecking":
				h.StrictHostKeyChecking = strings.ToLower(v)
			}
		}
	}
	return h
}

// matchHost applies a Host line's patterns: any positive match and no
// negated ("!pattern") match.
func matchHost(patterns []string, host string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if ok, _ := path.Match(p, host); ok {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}
