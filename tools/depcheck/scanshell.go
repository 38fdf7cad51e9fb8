package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// wrappers run the program named by their first argument that is not an
// option (timeout: the one after the duration); the value lists the options
// that take the next word as their value.
var wrappers = map[string]map[string]bool{
	"exec": nil, "command": nil, "nohup": nil, "setsid": nil,
	"env":     {"-u": true, "-C": true},
	"timeout": {"-k": true, "-s": true},
	"xargs":   {"-a": true, "-d": true, "-E": true, "-I": true, "-L": true, "-n": true, "-P": true, "-s": true},
}

// phony finds the targets a Makefile declares .PHONY.
var phony = regexp.MustCompile(`(?m)^\.PHONY:(.*)$`)

// skipMark opts a script out: one that runs somewhere else (inside the KVM
// lab's image) or only by hand (refreshing vendored files).
const skipMark = "# depcheck: skip"

// scanShell returns the programs run by every .PHONY target of dir's
// Makefile (as `make -n` expands it) and by every shell script git tracks
// in dir, but those marked with skipMark.
func scanShell(dir string) ([]use, error) {
	builtins, err := bashBuiltins()
	if err != nil {
		return nil, err
	}
	s := &shellScanner{root: dir, builtins: builtins}
	if mk, err := os.ReadFile(filepath.Join(dir, "Makefile")); err == nil {
		var targets []string
		for _, m := range phony.FindAllStringSubmatch(string(mk), -1) {
			targets = append(targets, strings.Fields(m[1])...)
		}
		sort.Strings(targets)
		for _, t := range targets {
			if err := s.makeTarget(t); err != nil {
				return nil, err
			}
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	files, err := exec.Command("git", "-C", dir, "ls-files", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the repository's files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		if err := s.script(rel); err != nil {
			return nil, err
		}
	}
	return s.uses, nil
}

// bashBuiltins lists what bash runs without looking up a program.
func bashBuiltins() (map[string]bool, error) {
	out, err := exec.Command("bash", "-c", "compgen -b; compgen -k").Output()
	if err != nil {
		return nil, fmt.Errorf("listing bash builtins: %w", err)
	}
	m := map[string]bool{}
	for _, w := range strings.Fields(string(out)) {
		m[w] = true
	}
	return m, nil
}

type shellScanner struct {
	root     string
	builtins map[string]bool
	uses     []use
}

// makeTarget reads the commands `make -n` prints for target: make expands
// its variables, and runs recursive $(MAKE) lines with -n too.
func (s *shellScanner) makeTarget(target string) error {
	cmd := exec.Command("make", "-n", "-B", "--no-print-directory", target)
	cmd.Dir = s.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("make -n %s: %w: %s", target, err, strings.TrimSpace(stderr.String()))
	}
	return s.parse(out, "make "+target, false)
}

// script reads the file at rel (relative to the root) when it is a shell
// script that is not marked with skipMark.
func (s *shellScanner) script(rel string) error {
	b, err := os.ReadFile(filepath.Join(s.root, rel))
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if !shebangShell.MatchString(first) || bytes.Contains(b, []byte("\n"+skipMark)) {
		return nil
	}
	return s.parse(b, filepath.ToSlash(rel), true)
}

// shebangShell matches the #! line of a bash or sh script.
var shebangShell = regexp.MustCompile(`^#!.*\b(ba)?sh\b`)

func (s *shellScanner) parse(src []byte, name string, withLines bool) error {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(bytes.NewReader(src), name)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", name, err)
	}
	funcs := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok {
			funcs[fd.Name.Value] = true
		}
		return true
	})
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		for _, w := range s.commandWords(call.Args) {
			name := w.Lit()
			if name == "" || funcs[name] || s.builtins[name] || !programName(name) ||
				filepath.IsAbs(name) && !binPath.MatchString(name) {
				continue
			}
			where := f.Name
			if withLines {
				where = fmt.Sprintf("%s:%d", f.Name, w.Pos().Line())
			}
			s.uses = append(s.uses, use{program: name, where: where})
		}
		return true
	})
	return nil
}

// commandWords returns the word naming the command of args and, through
// wrappers, the words naming the commands they run.
func (s *shellScanner) commandWords(args []*syntax.Word) []*syntax.Word {
	var out []*syntax.Word
	for len(args) > 0 {
		w := args[0]
		out = append(out, w)
		name := w.Lit()
		valued, ok := wrappers[name]
		if !ok {
			break
		}
		args = args[1:]
		for len(args) > 0 && (strings.HasPrefix(args[0].Lit(), "-") || name == "env" && strings.Contains(args[0].Lit(), "=")) {
			opt := args[0].Lit()
			if name == "command" && (opt == "-v" || opt == "-V") {
				return out
			}
			args = args[1:]
			if valued[opt] && len(args) > 0 {
				args = args[1:]
			}
		}
		if name == "timeout" && len(args) > 0 {
			args = args[1:]
		}
	}
	return out
}
