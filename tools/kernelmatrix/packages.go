package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
)

// testPackage is a package with guest tests.
type testPackage struct {
	ImportPath string
	Dir        string
	Tests      []string // matching top-level tests, sorted
	RungAware  bool     // its tests call testenv.Probe()
	// Binaries are the built test binaries by architecture (GOARCH).
	Binaries map[string]string
}

// Short is the import path without the module prefix.
func (p testPackage) Short(module string) string {
	return strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
}

var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(\w+ \*testing\.T\)`)

// findPackages lists the packages matching patterns whose test files define
// tests matching run.
func findPackages(patterns []string, run *regexp.Regexp) (module string, pkgs []testPackage, err error) {
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return "", nil, fmt.Errorf("go list -m: %w", err)
	}
	module = strings.TrimSpace(string(out))
	args := append([]string{"list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .TestGoFiles \",\"}},{{join .XTestGoFiles \",\"}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err = cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("go list %s: %w", strings.Join(patterns, " "), err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			continue
		}
		p := testPackage{ImportPath: f[0], Dir: f[1]}
		for _, name := range strings.Split(f[2], ",") {
			if name == "" {
				continue
			}
			src, err := os.ReadFile(filepath.Join(p.Dir, name))
			if err != nil {
				return "", nil, err
			}
			for _, m := range testFunc.FindAllSubmatch(src, -1) {
				if run.Match(m[1]) {
					p.Tests = append(p.Tests, string(m[1]))
				}
			}
			if bytes.Contains(src, []byte("testenv.Probe()")) {
				p.RungAware = true
			}
		}
		if len(p.Tests) > 0 {
			sort.Strings(p.Tests)
			pkgs = append(pkgs, p)
		}
	}
	return module, pkgs, sc.Err()
}

// build compiles each package's test binary once per architecture, static
// (the guest has no libc), into dir. For a kernel of another architecture
// than this program's, it also builds that guest's /init (tools/vmexec) and
// returns it by architecture.
func build(pkgs []testPackage, module, dir string, arches []string) (inits map[string]string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	goBuild := func(arch string, args ...string) error {
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+arch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	inits = map[string]string{}
	for _, arch := range arches {
		suffix := ""
		if arch != runtime.GOARCH {
			suffix = "-" + arch
			inits[arch] = filepath.Join(abs, "vmexec"+suffix)
			if err := goBuild(arch, "build", "-o", inits[arch], module+"/tools/vmexec"); err != nil {
				return nil, fmt.Errorf("building the %s guest's /init (tools/vmexec): %w", arch, err)
			}
		}
		for i := range pkgs {
			p := &pkgs[i]
			if p.Binaries == nil {
				p.Binaries = map[string]string{}
			}
			bin := filepath.Join(abs, strings.ReplaceAll(p.Short(module), "/", "_")+suffix+".test")
			if err := goBuild(arch, "test", "-c", "-o", bin, p.ImportPath); err != nil {
				return nil, fmt.Errorf("building the tests of %s for %s: %w", p.ImportPath, arch, err)
			}
			p.Binaries[arch] = bin
		}
	}
	return inits, nil
}
