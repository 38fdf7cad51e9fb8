package envfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/badfile"
)

func TestLoadGood(t *testing.T) {
	env, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nodes := env.Nodes()
	if len(nodes) != 4 || nodes[0].Role != "receiver-vm" || nodes[3].Role != "sender-vm" {
		t.Fatalf("nodes order: %+v", nodes)
	}
	sh := nodes[2]
	if sh.Options.Sudo != "none" || sh.Options.Port != 2200 || sh.Options.User != "root" || sh.Options.KnownHosts != "/tmp/kh" {
		t.Fatalf("merge: %+v", sh.Options)
	}
	if len(sh.PhyInterfaces) != 2 || sh.PhyInterfaces[1] != "eth1" {
		t.Fatalf("phy: %v", sh.PhyInterfaces)
	}
	if nodes[0].Options.Sudo != "passwordless" {
		t.Fatalf("global sudo not applied: %+v", nodes[0].Options)
	}
	if env.Measurement.PingCount != 50 || env.Tools.Python != "python3" {
		t.Fatalf("measurement/defaults: %+v %+v", env.Measurement, env.Tools)
	}
	tg, err := Resolve(sh.SSH, sh.Options)
	if err != nil {
		t.Fatal(err)
	}
	// The destination's own user and port win over the options.
	if tg.User != "admin" || tg.Port != 2222 || tg.Host != "10.0.0.1" {
		t.Fatalf("target %+v", tg)
	}
}

// TestUntracedAndBTF: an untraced receiver VM needs no ssh and is never
// contacted; an untraced sender VM is never asked for root; btf reaches the
// node it is set on.
func TestUntracedAndBTF(t *testing.T) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Replace(string(good), "    ssh: receiver-vm\n    ip: 198.18.2.1\n", "    ip: 198.18.2.1\n    untraced: true\n", 1)
	g = strings.Replace(g, "    interface: eth0\n", "    interface: eth0\n    untraced: true\n", 1)
	g = strings.Replace(g, "    vnet_interface: vnet0\n    phy_interface: eth0\nmeasurement", "    vnet_interface: vnet0\n    phy_interface: eth0\n    btf: /var/lib/btf/vmlinux\nmeasurement", 1)
	p := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(p, []byte(g), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	nodes := env.Nodes()
	rv, rh, sv := nodes[0], nodes[1], nodes[3]
	if !rv.Untraced || rv.Contacted() || !sv.Untraced || !sv.Contacted() {
		t.Fatalf("untraced: receiver %+v, sender %+v", rv, sv)
	}
	if sv.Options.Sudo != SudoNone {
		t.Errorf("untraced sender VM sudo = %q, want none (global is passwordless)", sv.Options.Sudo)
	}
	if rh.BTF != "/var/lib/btf/vmlinux" || nodes[2].BTF != "" {
		t.Errorf("btf: receiver host %q, sender host %q", rh.BTF, nodes[2].BTF)
	}
}

// errCase is one bad file and the "line: field" its error must name.
type errCase struct {
	name, yaml, want string
}

func TestLoadErrorsNameFileLineField(t *testing.T) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	cases := []errCase{
		{"malformed", "environment: x\nsender:\n  vm: x\n bad\n", ":3: malformed YAML"},
		{"tab indent", "sender:\n\tvm: x\n", ":2: malformed YAML"},
		{"bad ip", strings.Replace(g, "198.18.2.1", "198.18.2.300", 1), `:21: receiver.vm.ip: "198.18.2.300" is not an IPv4 address`},
		{"unknown field", strings.Replace(g, "    interface: eth0\n", "    interfce: eth0\n", 1), `:10: sender.vm.interfce: unknown field "interfce"`},
		{"wrong type", strings.Replace(g, "ping_count: 50", "ping_count: many", 1), `:27: measurement.ping_count: wrong type`},
		{"missing vnet", strings.Replace(g, "    vnet_interface: vnet0\n    phy_interface: eth0\nmeasurement", "    phy_interface: eth0\nmeasurement", 1), ":22: receiver.host.vnet_interface: missing"},
		{"bad sudo", strings.Replace(g, "sudo: none", "sudo: always", 1), `:16: sender.host.ssh_options.sudo: "always"`},
		{"bad interval", strings.Replace(g, "interval: 100ms", "interval: fast", 1), `:28: measurement.interval: "fast" is not a duration`},
		{"injection in ssh", strings.Replace(g, "ssh: receiver-vm", "ssh: 'x;reboot'", 1), `:20: receiver.vm.ssh:`},
		{"bad ifname", strings.Replace(g, "phy_interface: eth0\n", "phy_interface: \"eth0 ; reboot\"\n", 1), `:25: receiver.host.phy_interface:`},
		{"same ip", strings.Replace(g, "198.18.2.1", "198.18.1.1", 1), `:21: receiver.vm.ip: same address`},
		{"duplicate node", strings.Replace(g, "ssh: receiver-vm", "ssh: sender-vm", 1), `:20: receiver.vm.ssh: "sender-vm" is the same node as sender.vm.ssh`},
		{"empty bond member", strings.Replace(g, "phy_interface: eth0,eth1", `phy_interface: "eth0,,eth1"`, 1), `:14: sender.host.phy_interface: "eth0,,eth1" has an empty interface name`},
		{"two @ in ssh", strings.Replace(g, "ssh: receiver-vm", "ssh: a@b@c", 1), `:20: receiver.vm.ssh: "a@b@c": more than one @`},
		{"markup in the name", strings.Replace(g, "environment: lab", `environment: "<script>alert(1)</script>"`, 1), `:1: environment: "<script>alert(1)</script>": only letters, digits`},
		{"interval too long", strings.Replace(g, "interval: 100ms", "interval: 2m", 1), `:28: measurement.interval: 2m0s is out of range 1ms..1m0s`},
		{"run too long", strings.Replace(g, "ping_count: 50", "ping_count: 1000000", 1), `:27: measurement.ping_count: 1000000 pings every 100ms take 27h46m40s, more than 24h0m0s`},
		{"no sender", "environment: x\nreceiver:\n  vm: {ssh: a, ip: 1.2.3.4}\n  host: {ssh: b, vnet_interface: v, phy_interface: p}\n", ":1: sender.vm.ssh: missing"},
		{"empty", "", ":1: empty environment file"},
		{"untraced sender vm without ssh", strings.Replace(strings.Replace(g, "    ssh: sender-vm\n", "", 1), "    interface: eth0\n", "    interface: eth0\n    untraced: true\n", 1), ":7: sender.vm.ssh: missing"},
		{"relative btf", strings.Replace(g, "    phy_interface: eth0\nmeasurement", "    phy_interface: eth0\n    btf: vmlinux.btf\nmeasurement", 1), `:26: receiver.host.btf: "vmlinux.btf" must be an absolute path on the node`},
		{"btf on an untraced vm", strings.Replace(g, "    ip: 198.18.2.1\n", "    ip: 198.18.2.1\n    untraced: true\n    btf: /boot/btf\n", 1), `:23: receiver.vm.btf: set on an untraced VM`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "env.yaml")
			if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), p+c.want) {
				t.Fatalf("error\n%v\ndoes not contain\n%s%s", err, p, c.want)
			}
		})
	}
}

func TestSSHConfigAliases(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	idf := filepath.Join(dir, "id")
	os.WriteFile(idf, []byte("x"), 0o600)
	os.WriteFile(cfg, []byte(`# lab
Host sender-vm receiver-*
    HostName 10.9.0.%h
    User labuser
    Port 2022
    IdentityFile `+idf+`
    UserKnownHostsFile `+dir+`/known_hosts
Host receiver-vm
    HostName 10.9.0.4
    ProxyJump bastion
Host bastion
    HostName 10.9.0.100
    Port=2200
Host *
    User fallback
    StrictHostKeyChecking no
`), 0o600)
	tg, err := Resolve("receiver-vm", SSHOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// First value wins: "receiver-*" comes before "receiver-vm".
	if tg.Host != "10.9.0.receiver-vm" || tg.User != "labuser" || tg.Port != 2022 {
		t.Fatalf("target %+v", tg)
	}
	if len(tg.IdentityFiles) != 1 || tg.IdentityFiles[0] != idf || tg.KnownHosts[0] != dir+"/known_hosts" {
		t.Fatalf("files %+v", tg)
	}
	if tg.Jump == nil || tg.Jump.Host != "10.9.0.100" || tg.Jump.Port != 2200 || tg.Jump.User != "fallback" {
		t.Fatalf("jump %+v", tg.Jump)
	}
	if !tg.InsecureIgnoreHostKey {
		t.Fatal("StrictHostKeyChecking no from the user's config not honoured")
	}
	// Options override the config; a destination user overrides both.
	tg, err = Resolve("me@sender-vm", SSHOptions{Config: cfg, Port: 22, KnownHosts: "/k"})
	if err != nil {
		t.Fatal(err)
	}
	if tg.User != "me" || tg.Port != 22 || tg.KnownHosts[0] != "/k" {
		t.Fatalf("override %+v", tg)
	}
}

func TestParseDestination(t *testing.T) {
	for in, want := range map[string]Destination{
		"h":            {Host: "h"},
		"u@h":          {User: "u", Host: "h"},
		"u@h:2":        {User: "u", Host: "h", Port: 2},
		"[fe80::1]:22": {Host: "fe80::1", Port: 22},
		"u@[fe80::1]":  {User: "u", Host: "fe80::1"},
	} {
		got, err := ParseDestination(in)
		if err != nil || got != want {
			t.Errorf("%s: got %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-oProxyCommand=x", "h:99999", "@h", "a b", "h;id"} {
		if _, err := ParseDestination(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestLoadListsAllErrors: every problem of a file at once, in line order,
// the unknown field among them (it used to be reported alone).
func TestLoadListsAllErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("    interface: eth0\n", "    interfce: eth0\n", "198.18.2.1", "198.18.2.300", "interval: 100ms", "interval: fast")
	p := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(p, []byte(r.Replace(string(good))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	want := []string{
		p + `:10: sender.vm.interfce: unknown field "interfce"`,
		p + `:21: receiver.vm.ip: "198.18.2.300" is not an IPv4 address`,
		p + `:28: measurement.interval: "fast" is not a duration (examples: 200ms, 1s, 2m)`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

// TestLoadRefusesNonRegularFiles: -c pointing at a device, a FIFO or a huge
// file fails at once, naming the file, and reads nothing unbounded.
func TestLoadRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := badfile.FIFO(t, filepath.Join(dir, "fifo.yaml"))
	link := badfile.DeviceLink(t, filepath.Join(dir, "random.yaml"))
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, []byte("environment: x\n# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"/dev/zero": "not a regular file (a character device)",
		fifo:        "not a regular file (a named pipe)",
		link:        "not a regular file (a character device)",
		huge:        "larger than 1 MiB",
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(file)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), file+": "+want) {
				t.Errorf("%s: got %v, want %q", file, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Load still reading after 5s", file)
		}
	}
}

// A file of several pairs sharing machines splits into one environment per
// pair (named, or "pair-N"); a file without pairs is its own only pair.
func TestPairs(t *testing.T) {
	env, err := Load("testdata/pairs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ps := env.SplitPairs()
	if len(ps) != 2 || ps[0].Name != "forward" || ps[1].Name != "pair-2" {
		t.Fatalf("pairs %+v", ps)
	}
	if ps[1].Env.Sender.VM.IP != "198.18.2.1" || ps[1].Env.Receiver.Host.SSH != "sender-host" || ps[1].Env.SSH.User != "root" ||
		ps[1].Env.Measurement.Interval != "100ms" || len(ps[1].Env.Pairs) != 0 {
		t.Errorf("pair-2 as an environment: %+v", ps[1].Env)
	}
	if n := ps[0].Env.Nodes(); n[3].SSH != "sender-vm" || n[3].Options.User != "root" {
		t.Errorf("pair forward's nodes: %+v", n)
	}
	one, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ps := one.SplitPairs(); len(ps) != 1 || ps[0].Name != "pair-1" || ps[0].Env != one {
		t.Errorf("a file without pairs: %+v", ps)
	}

	good, err := os.ReadFile("testdata/pairs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	for _, c := range []errCase{
		{"bad ip in a pair", strings.Replace(g, "ip: 198.18.2.1}\n      host: {ssh: receiver-host", "ip: 198.18.2.300}\n      host: {ssh: receiver-host", 1),
			`:11: pairs[0].receiver.vm.ip: "198.18.2.300" is not an IPv4 address`},
		{"same name", strings.Replace(g, "  - sender:", "  - name: forward\n    sender:", 1), `:13: pairs[1].name: "forward" is also the name of pairs[0]`},
		{"bad name", strings.Replace(g, "name: forward", "name: a/b", 1), `:6: pairs[0].name: "a/b": only letters`},
		{"a VM with two addresses", lastVM(g, "vm: {ssh: sender-vm, ip: 198.18.1.9}"),
			`:17: pairs[1].receiver.vm.ssh: "sender-vm" is the same VM as pairs[0].sender.vm.ssh, with another ip (198.18.1.9, there 198.18.1.1)`},
		{"a host as a VM", lastVM(g, "vm: {ssh: sender-host, ip: 198.18.1.1}"),
			`pairs[1].receiver.vm.ssh: "sender-host" is a VM here and a host in pairs[0].sender.host.ssh`},
		{"pairs and sender", strings.Replace(g, "pairs:", "sender:\n  vm: {ssh: x, ip: 1.2.3.4}\npairs:", 1), `pairs: give either sender and receiver (one pair) or pairs, not both`},
		{"four machines per pair", strings.Replace(g, "host: {ssh: receiver-host, vnet_interface: vnet0, phy_interface: eth0}\n  - sender", "host: {ssh: sender-host, vnet_interface: vnet0, phy_interface: eth0}\n  - sender", 1),
			`:12: pairs[0].receiver.host.ssh: "sender-host" is the same node as pairs[0].sender.host.ssh`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "env.yaml")
			if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, c.want)
			}
		})
	}
}

// lastVM replaces the last VM of testdata/pairs.yaml (pairs[1].receiver.vm).
func lastVM(g, with string) string {
	i := strings.LastIndex(g, "vm: {ssh: sender-vm")
	j := i + strings.IndexByte(g[i:], '\n')
	return g[:i] + with + g[j:]
}
