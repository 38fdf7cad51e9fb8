package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalEnv is a valid environment file (nothing is contacted before the
// command line is checked).
const minimalEnv = `environment: x
sender:
  vm: {ssh: a, ip: 10.0.0.1}
  host: {ssh: b, vnet_interface: vnet0, phy_interface: eth0}
receiver:
  vm: {ssh: c, ip: 10.0.0.2}
  host: {ssh: d, vnet_interface: vnet0, phy_interface: eth0}
`

// TestRunCheckBadConfig: malformed and invalid environment files exit with
// ExitUsage and name file:line: field, before anything is contacted.
func TestRunCheckBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ yaml, want string }{
		"malformed": {"sender:\n  vm: {ssh: a\n", ":1: malformed YAML: did not find expected"},
		"invalid":   {strings.Replace(minimalEnv, "10.0.0.2", "10.0.0.300", 1), `:6: receiver.vm.ip: "10.0.0.300" is not an IPv4 address`},
	}
	for name, c := range cases {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"run", "-c", p, "-o", filepath.Join(dir, "out-"+name)}, {"check", "-c", p}} {
			var out, errb bytes.Buffer
			code := Main(context.Background(), args, &out, &errb)
			if code != ExitUsage || !strings.Contains(errb.String(), p+c.want) {
				t.Errorf("%s %v: exit %d, stderr %q; want %d and %q", name, args[0], code, errb.String(), ExitUsage, p+c.want)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "out-"+name)); err == nil {
			t.Errorf("%s: a run directory was created for a bad config", name)
		}
	}
}

// TestRunFlagBounds: the numbers and names on run's command line are
// checked against the same bounds as the environment file, before anything
// is contacted; a bad one is a usage error naming the flag.
func TestRunFlagBounds(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(env, []byte(minimalEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--count", "0"}, "--count: 0 is out of range 1..1000000"},
		{[]string{"--count", "-3"}, "--count: -3 is out of range"},
		{[]string{"--count", "99999999999"}, "--count: 99999999999 is out of range"},
		{[]string{"--interval", "1ns"}, "--interval: 1ns is out of range 1ms..1m0s"},
		{[]string{"--interval", "0s"}, "--interval: 0s is out of range"},
		{[]string{"--count", "1000000", "--interval", "1s"}, "--count: 1000000 pings every 1s take 277h46m40s, more than 24h0m0s"},
		{[]string{"--size", "0"}, "--size: 0 is out of range 1..65507"},
		{[]string{"--size", "65508"}, "--size: 65508 is out of range 1..65507"},
		{[]string{"--ready-timeout", "-1s"}, "--ready-timeout: -1s is out of range 1s..1h0m0s"},
		{[]string{"--ready-timeout", "1ms"}, "--ready-timeout: 1ms is out of range"},
		{[]string{"--tracers", "bogus"}, `--tracers: unknown tracer "bogus" (this build has `},
		{[]string{"--tracers", "vm,hots"}, `--tracers: unknown tracer "hots"`},
		{[]string{"--tracers", ""}, "--tracers: no tracer named"},
		{[]string{"--traced-nodes", "sender-host,recever-vm"}, `--traced-nodes: unknown node "recever-vm" (want some of sender-vm, sender-host, receiver-host, receiver-vm, or none)`},
		{[]string{"--traced-nodes", "none,sender-vm"}, `--traced-nodes: unknown node "none"`},
		{[]string{"--traced-nodes", ""}, "--traced-nodes: no node named"},
	} {
		out := filepath.Join(dir, "out")
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append([]string{"run", "-c", env, "-o", out}, c.flags...), &stdout, &stderr)
		if code != ExitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.flags, code, stderr.String(), ExitUsage, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: a run directory was created", c.flags)
		}
	}
}

// TestRunRuntimeFailureExitsOne: a valid environment whose run fails on
// this machine (the output directory cannot be created) exits ExitFailure,
// not the usage code; so does a tracer whose machine fails it, while a
// wrong device is a usage error.
func TestRunRuntimeFailureExitsOne(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(env, []byte(minimalEnv), 0o644); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"run", "-c", env, "-o", filepath.Join(blocker, "run")}, &out, &errb)
	if code != ExitFailure || !strings.Contains(errb.String(), "creating output directory") {
		t.Errorf("run into a file: exit %d, stderr %q; want %d", code, errb.String(), ExitFailure)
	}
	errb.Reset()
	code = Main(context.Background(), []string{"trace", "host", "--src-ip", "10.0.0.1", "--dst-ip", "10.0.0.2",
		"--vm-interface", "nosuchvnet0", "--phy-interface", "lo"}, &out, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "--vm-interface nosuchvnet0") {
		t.Errorf("trace host on a missing device: exit %d, stderr %q; want %d", code, errb.String(), ExitUsage)
	}
	if err := tracerError(errors.New("listing local addresses: netlink failed")); err.(*ExitError).Code != ExitFailure {
		t.Errorf("a machine failure maps to %v", err)
	}
}
