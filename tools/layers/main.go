// Command layers checks the import rules between pingpath's packages
// (docs/architecture.md): the analysis side never reaches the tracers, the
// transports or the command line; only the command line uses cobra; the
// environment file does not depend on the run manifest; product code never
// imports a test helper. It reads every package's imports with go list and
// fails naming the package, the forbidden import and the chain that leads
// there. make lint runs it.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

func main() {
	graph, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layers:", err)
		os.Exit(1)
	}
	bad := check(graph, rules)
	for _, v := range bad {
		fmt.Fprintln(os.Stderr, v)
	}
	if len(bad) > 0 {
		fmt.Fprintf(os.Stderr, "layers: %d forbidden import(s); see docs/architecture.md\n", len(bad))
		os.Exit(1)
	}
}

// load lists the module's packages (not their tests) and their direct
// imports, with the module path stripped: "internal/parse" → ["internal/record", ...].
func load() (map[string][]string, error) {
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", err)
	}
	module := strings.TrimSpace(string(out)) + "/"
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", module+"...")
	cmd.Stderr = os.Stderr
	out, err = cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s...: %w", module, err)
	}
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		graph[pkg] = []string{}
		for _, imp := range f[1:] {
			graph[pkg] = append(graph[pkg], strings.TrimPrefix(imp, module))
		}
	}
	return graph, sc.Err()
}
