package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/envfile"
)

// TestREADMEEnvFile keeps README's example environment file valid: the first
// yaml block of its "Running against real hosts" section must pass the same
// parser and validation `pingpath run` uses (nothing is contacted).
func TestREADMEEnvFile(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Running against real hosts\n")
	if !ok {
		t.Fatal("README.md has no section \"Running against real hosts\"")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README.md: no yaml block in \"Running against real hosts\"")
	}
	block, _, _ = strings.Cut(block, "```")
	// The validator checks that the files it names exist: give them a home.
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id_ed25519", "known_hosts", "config"} {
		if err := os.WriteFile(filepath.Join(home, ".ssh", f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env, err := envfile.Parse("README.md example", []byte(block))
	if err != nil {
		t.Fatalf("README's env.yaml example is not valid:\n%v\n%s", err, block)
	}
	if len(env.Nodes()) != 4 {
		t.Errorf("README's example has %d nodes, want 4", len(env.Nodes()))
	}
}
