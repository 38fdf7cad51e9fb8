package main

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// A rule forbids packages matched by From to import, directly or through
// other packages, anything matched by Deny. Patterns are import paths
// (module path stripped); "x/..." matches x and everything below it.
type rule struct {
	Why    string
	From   []string
	Except []string // packages of From the rule does not apply to
	Deny   []string
}

// analysisSide reads what runs left behind: it must build and run anywhere,
// without BPF, SSH or the command line.
var analysisSide = []string{"internal/record/...", "internal/parse/...", "internal/analyze/...",
	"internal/timeline/...", "internal/report/...", "internal/export/...", "internal/manifest/..."}

var rules = []rule{
	{Why: "the analysis side does not depend on tracers, transports, the orchestrator or the command line",
		From: analysisSide,
		Deny: []string{"internal/tracer/...", "internal/remote/...", "internal/orchestrate/...", "internal/lab/...",
			"internal/cli/...", "github.com/spf13/cobra/...", "github.com/cilium/ebpf/..."}},
	{Why: "tracers run on the target: no transports, orchestration, analysis or command line",
		From: []string{"internal/tracer/..."},
		Deny: []string{"internal/remote/...", "internal/orchestrate/...", "internal/cli/...", "internal/analyze/...",
			"internal/report/...", "github.com/spf13/cobra/..."}},
	{Why: "only the command line uses cobra",
		From: []string{"..."}, Except: []string{"internal/cli/...", "cmd/..."},
		Deny: []string{"github.com/spf13/cobra/..."}},
	{Why: "the environment file is configuration, not the run's output",
		From: []string{"internal/envfile/..."},
		Deny: []string{"internal/manifest/..."}},
	{Why: "product code never imports a test helper",
		From: []string{"..."}, Except: testHelpers,
		Deny: testHelpers},
}

// testHelpers are the packages only tests (and other helpers) import:
// internal/testkit and the *test packages beside the package they help.
var testHelpers = []string{"internal/testkit/...", "*test"}

// match reports whether pkg matches pattern: "x/..." is x and below, "..."
// everything, "*test" a package whose last element ends in "test".
func match(pattern, pkg string) bool {
	switch {
	case pattern == "...":
		return true
	case strings.HasSuffix(pattern, "/..."):
		base := strings.TrimSuffix(pattern, "/...")
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(path.Base(pkg), pattern[1:]) && !strings.Contains(pkg, ".")
	}
	return pkg == pattern
}

func matchAny(patterns []string, pkg string) bool {
	for _, p := range patterns {
		if match(p, pkg) {
			return true
		}
	}
	return false
}

// check returns one line per package and forbidden import it reaches, with
// the chain of imports that leads there.
func check(graph map[string][]string, rules []rule) []string {
	var out []string
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, r := range rules {
		for _, pkg := range pkgs {
			if !matchAny(r.From, pkg) || matchAny(r.Except, pkg) {
				continue
			}
			for _, chain := range reach(graph, pkg, r.Deny) {
				out = append(out, fmt.Sprintf("%s imports %s (%s): %s", pkg, chain[len(chain)-1], strings.Join(chain, " → "), r.Why))
			}
		}
	}
	return out
}

// reach walks pkg's imports breadth first and returns, for every package
// matching deny that it reaches, the shortest chain from pkg to it.
func reach(graph map[string][]string, pkg string, deny []string) [][]string {
	prev := map[string]string{pkg: ""}
	queue := []string{pkg}
	var found [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, imp := range graph[p] {
			if _, seen := prev[imp]; seen {
				continue
			}
			prev[imp] = p
			if matchAny(deny, imp) {
				var chain []string
				for q := imp; q != ""; q = prev[q] {
					chain = append([]string{q}, chain...)
				}
				found = append(found, chain)
				continue // one report per forbidden package; not below it
			}
			queue = append(queue, imp)
		}
	}
	return found
}
