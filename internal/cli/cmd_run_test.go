package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunCheckBadConfig: malformed and invalid environment files exit with
// ExitUsage and name file:line: field, before anything is contacted.
func TestRunCheckBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ yaml, want string }{
		"malformed": {"sender:\n  vm: {ssh: a\n", ":1: malformed YAML: did not find expected"},
		"invalid": {`environment: x
sender:
  vm: {ssh: a, ip: 10.0.0.1}
  host: {ssh: b, vnet_interface: vnet0, phy_interface: eth0}
receiver:
  vm: {ssh: c, ip: 10.0.0.300}
  host: {ssh: d, vnet_interface: vnet0, phy_interface: eth0}
`, `:6: receiver.vm.ip: "10.0.0.300" is not an IPv4 address`},
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
