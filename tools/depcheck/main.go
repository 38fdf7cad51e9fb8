// Command depcheck lists every external program that the build, `make demo`
// and `make test` run, derived from the code itself, and checks that each one
// resolves on this machine. scripts/freshroot.sh runs it in a fresh Debian
// root after scripts/install-deps.sh: a program the code starts that no
// package in install-deps.sh ships fails there, even when it is installed by
// hand on the machines we work on (issue 22).
//
// Where the names come from:
//   - Go (every package and its tests, type-checked, so named constants
//     count): the program argument of os/exec's Command, CommandContext and
//     LookPath; the argument of any function parameter named `program`
//     (testenv.RequireProgram); the first element of a parameter named `argv`
//     (lab.Exec, lab.Command) and of a struct field named Args or argv given
//     as a literal (remote.Command); and every string constant that is an
//     absolute path into a bin or sbin directory (/usr/sbin/sshd).
//   - Shell: the commands of every .PHONY Makefile target (as `make -n`
//     prints them) and of every shell script git tracks (.ci/run, scripts/,
//     test fakes, the KVM image builder), followed through exec, command,
//     env, timeout, xargs, nohup and setsid. Shell builtins, keywords and
//     the script's own functions are not programs. A script that runs
//     elsewhere (inside the KVM lab's image) or only by hand opts out with a
//     line "# depcheck: skip (why)".
//
// What it cannot see: a program whose name is computed at run time or sits
// inside a string handed to a shell or to ssh, and programs reached only
// through an environment variable (BPF2GO_CC: bpf/cc.sh, clang-19,
// llvm-strip-19; make freshroot runs make generate-check for those). Such a
// use needs a literal somewhere the rules above read (a RequireProgram in
// its test does).
//
//	go run ./tools/depcheck          check (exit 1 when one is missing)
//	go run ./tools/depcheck -list    only list the programs and their uses
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// A use is one place in the repository that runs a program.
type use struct {
	program string // a name looked up on PATH, or an absolute path
	where   string // file:line, or "make TARGET"
}

func main() {
	list := flag.Bool("list", false, "list the programs and where they are used, without checking")
	dir := flag.String("C", ".", "the repository's root")
	flag.Parse()
	uses, err := scan(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "depcheck:", err)
		os.Exit(2)
	}
	if missing := report(os.Stdout, uses, !*list); missing > 0 {
		fmt.Fprintf(os.Stderr, "depcheck: %d program(s) missing: add the Debian package that ships each to scripts/install-deps.sh "+
			"(or, for a script that does not run on this machine, mark it %q)\n", missing, skipMark+" (why)")
		os.Exit(1)
	}
}

// scan collects the uses of programs in the Go code and the shell the
// repository at dir runs.
func scan(dir string) ([]use, error) {
	goUses, err := scanGo(dir)
	if err != nil {
		return nil, fmt.Errorf("scanning the Go code: %w", err)
	}
	shUses, err := scanShell(dir)
	if err != nil {
		return nil, fmt.Errorf("scanning the Makefile and scripts: %w", err)
	}
	return append(goUses, shUses...), nil
}

// report prints one line per program with its uses, checking that each
// resolves when check is set, and returns how many did not.
func report(w *os.File, uses []use, check bool) (missing int) {
	byProgram := map[string][]string{}
	for _, u := range uses {
		byProgram[u.program] = append(byProgram[u.program], u.where)
	}
	programs := make([]string, 0, len(byProgram))
	for p := range byProgram {
		programs = append(programs, p)
	}
	sort.Strings(programs)
	for _, p := range programs {
		where := dedupe(byProgram[p])
		if len(where) > 3 {
			where = append(where[:3], fmt.Sprintf("+%d more", len(where)-3))
		}
		status, path := "", ""
		if check {
			status = "ok      "
			resolved, err := resolve(p)
			if err != nil {
				status = "MISSING "
				missing++
			}
			path = resolved
		}
		fmt.Fprintf(w, "%s%-22s %-30s %s\n", status, p, path, strings.Join(where, ", "))
	}
	fmt.Fprintf(w, "depcheck: %d programs used by the build, the demo and the tests\n", len(programs))
	return missing
}

// resolve finds a program as the shell would: an absolute path must be an
// executable file, a name must be on PATH.
func resolve(name string) (string, error) {
	if filepath.IsAbs(name) {
		st, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return name, nil
	}
	return exec.LookPath(name)
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// programName reports whether s can be a program the code runs: a plain
// name, or an absolute path. Relative paths are the repository's own files
// or build output (bin/pingpath), not something a package installs.
func programName(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\n=$") || strings.HasPrefix(s, "-") {
		return false
	}
	return filepath.IsAbs(s) || !strings.Contains(s, "/")
}
