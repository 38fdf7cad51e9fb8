package main

import (
	"strings"
	"testing"
)

// A fabricated graph: each rule catches its violation, through a chain
// too, and names the chain; allowed imports pass.
func TestCheckFindsForbiddenImports(t *testing.T) {
	graph := map[string][]string{
		"internal/analyze":            {"internal/parse", "fmt"},
		"internal/parse":              {"internal/record", "internal/kernel"},
		"internal/kernel":             {"github.com/cilium/ebpf/btf"},
		"internal/record":             {},
		"internal/envfile":            {"internal/role", "internal/manifest"},
		"internal/cli":                {"github.com/spf13/cobra", "internal/analyze"},
		"internal/orchestrate":        {"github.com/spf13/cobra", "internal/remote/remotetest"},
		"internal/remote/remotetest":  {"internal/testkit/testenv"},
		"internal/tracer/tracertest":  {"internal/testkit/testenv"},
		"internal/testkit/testenv":    {},
		"internal/remote":             {},
		"github.com/cilium/ebpf/btf":  {},
		"github.com/spf13/cobra":      {},
		"internal/role":               {},
		"internal/tracer/vm":          {"internal/record"},
		"internal/tracer":             {"internal/remote"},
		"internal/manifest":           {"internal/role"},
		"internal/lab/labtest":        {"internal/tracer/tracertest"},
		"internal/vhostdiscover/test": {},
	}
	got := strings.Join(check(graph, rules), "\n")
	for _, want := range []string{
		"internal/analyze imports github.com/cilium/ebpf/btf (internal/analyze → internal/parse → internal/kernel → github.com/cilium/ebpf/btf)",
		"internal/parse imports github.com/cilium/ebpf/btf",
		"internal/tracer imports internal/remote",
		"internal/orchestrate imports github.com/spf13/cobra",
		"internal/orchestrate imports internal/remote/remotetest",
		"internal/envfile imports internal/manifest",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, allowed := range []string{"internal/cli imports", "internal/envfile imports internal/role", "internal/lab/labtest imports",
		"internal/remote/remotetest imports", "internal/tracer/vm imports"} {
		if strings.Contains(got, allowed) {
			t.Errorf("reported an allowed import %q:\n%s", allowed, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 6 {
		t.Errorf("%d reports, want 6:\n%s", n, got)
	}
}

// The module as it is obeys every rule (make lint runs the command; this
// keeps go test honest too).
func TestModuleObeysRules(t *testing.T) {
	graph, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if len(graph) < 20 {
		t.Fatalf("go list found %d packages", len(graph))
	}
	for _, v := range check(graph, rules) {
		t.Error(v)
	}
}
