package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
