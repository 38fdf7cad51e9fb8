package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestUsageErrorsExitTwo pins the documented exit code for command-line
// mistakes: bad flag values, missing required flags, wrong argument counts
// and unknown subcommands all exit 2, and a bare parent shows its help.
func TestUsageErrorsExitTwo(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"run", "--count", "abc"}, ExitUsage},
		{[]string{"analyze"}, ExitUsage},
		{[]string{"frobnicate"}, ExitUsage},
		{[]string{"lab", "frob"}, ExitUsage},
		{[]string{"version", "extra"}, ExitUsage},
		{[]string{"trace", "vm"}, ExitUsage},
		{[]string{"trace", "vm", "--src-ip", "198.18.0.1", "--dst-ip", "198.18.0.2", "--max-duration", "0"}, ExitUsage},
		{[]string{"trace", "vhost-rx", "--vm-interface", "vnet0", "--arm-window", "0s"}, ExitUsage},
		{[]string{"trace", "vhost-tx", "--vm-interface", "vnet0", "--arm-window", "1h"}, ExitUsage},
		{[]string{"watch"}, ExitUsage},
		{[]string{"watch", "-c", "../envfile/testdata/good.yaml", "--interval", "0s"}, ExitUsage},
		{[]string{"watch", "-c", "../envfile/testdata/good.yaml", "--settle", "10ms"}, ExitUsage},
		{[]string{"watch", "-c", "../envfile/testdata/good.yaml", "--tracers", "hots"}, ExitUsage},
		{[]string{"watch", "-c", "../envfile/testdata/good.yaml", "--listen", "127.0.0.1:notaport"}, ExitUsage},
		{[]string{"lab"}, ExitOK},
		{[]string{"version"}, ExitOK},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		got := Main(context.Background(), c.args, &out, &errOut)
		if got != c.want {
			t.Errorf("pingpath %s: exit %d, want %d (stderr %q)", strings.Join(c.args, " "), got, c.want, errOut.String())
		}
		if c.want == ExitUsage && !strings.Contains(errOut.String(), "pingpath: ") {
			t.Errorf("pingpath %s: no error message on stderr", strings.Join(c.args, " "))
		}
	}
}

// TestHelpHasExamples walks the command tree: every command a user can
// call shows an Examples section in its --help, and no help text shows a
// sentinel default such as "(default -1)".
func TestHelpHasExamples(t *testing.T) {
	var walk func(args []string, cmd *cobra.Command)
	walk = func(args []string, cmd *cobra.Command) {
		if cmd.Hidden || cmd.Name() == "help" || cmd.Name() == "completion" {
			return
		}
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), append(append([]string{}, args...), "--help"), &out, &errOut); code != ExitOK {
			t.Errorf("pingpath %s --help: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		help := out.String()
		if !strings.Contains(help, "\nExamples:\n  pingpath ") {
			t.Errorf("pingpath %s --help has no Examples section:\n%s", strings.Join(args, " "), help)
		}
		if strings.Contains(help, "(default -1)") || strings.Contains(help, "(default: any) (default") {
			t.Errorf("pingpath %s --help shows a sentinel default:\n%s", strings.Join(args, " "), help)
		}
		for _, sub := range cmd.Commands() {
			walk(append(append([]string{}, args...), sub.Name()), sub)
		}
	}
	walk(nil, newRootCommand(io.Discard, io.Discard))

	var out bytes.Buffer
	Main(context.Background(), []string{"trace", "vhost-tx", "--help"}, &out, io.Discard)
	if strings.Contains(out.String(), "vhost-rx:") {
		t.Errorf("trace vhost-tx --help mentions vhost-rx:\n%s", out.String())
	}
}

// TestVersionFlag: `pingpath --version` prints the same line as `pingpath version`.
func TestVersionFlag(t *testing.T) {
	var a, b bytes.Buffer
	if code := Main(context.Background(), []string{"--version"}, &a, io.Discard); code != ExitOK {
		t.Fatalf("--version: exit %d", code)
	}
	Main(context.Background(), []string{"version"}, &b, io.Discard)
	if a.String() != b.String() || !strings.HasPrefix(a.String(), "pingpath 0.") {
		t.Errorf("--version %q, version %q", a.String(), b.String())
	}
}

// TestICMPIDFlag: --icmp-id takes 0-65535 and nothing else.
func TestICMPIDFlag(t *testing.T) {
	for _, v := range []string{"-7", "65536", "x"} {
		if code := Main(context.Background(), []string{"trace", "vm", "--src-ip", "198.18.0.1", "--dst-ip", "198.18.0.2", "--icmp-id", v}, io.Discard, io.Discard); code != ExitUsage {
			t.Errorf("--icmp-id %s: exit %d, want %d", v, code, ExitUsage)
		}
	}
	var id optionalID
	if err := id.Set("65535"); err != nil || id.String() != "65535" {
		t.Errorf("--icmp-id 65535: %v %q", err, id.String())
	}
}
