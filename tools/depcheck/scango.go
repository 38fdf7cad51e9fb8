package main

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/tools/go/packages"
	"golang.org/x/tools/go/types/typeutil"
)

// execArg is the index of the program argument of os/exec's functions.
var execArg = map[string]int{"Command": 0, "CommandContext": 1, "LookPath": 0}

// binPath matches an absolute path into a directory of executables.
var binPath = regexp.MustCompile(`^/(usr/(local/)?)?s?bin/[^/]+$`)

// scanGo type-checks every package of the module at dir, tests included, and
// returns the programs its code runs (see the package comment for the rules).
func scanGo(dir string) ([]use, error) {
	cfg := &packages.Config{
		Mode:  packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		Dir:   dir,
		Tests: true,
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		return nil, fmt.Errorf("loading packages: %w", err)
	}
	var errs []string
	packages.Visit(pkgs, nil, func(p *packages.Package) {
		for _, e := range p.Errors {
			errs = append(errs, e.Error())
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("loading packages: %s", strings.Join(errs, "; "))
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The module's own commands (cmd/pingpath) are built, not installed.
	own := map[string]bool{}
	for _, p := range pkgs {
		if p.Name == "main" && strings.Contains(p.PkgPath, "/cmd/") && !strings.HasSuffix(p.PkgPath, ".test") {
			own[path.Base(p.PkgPath)] = true
		}
	}
	// With Tests set, a file shows up in the package and in its test
	// variant: count each position once.
	seen := map[string]bool{}
	var uses []use
	for _, p := range pkgs {
		s := goScanner{info: p.TypesInfo, fset: p.Fset, root: root, own: own}
		for _, f := range p.Syntax {
			ast.Inspect(f, s.visit)
		}
		for _, u := range s.uses {
			if key := u.program + "@" + u.where; !seen[key] {
				seen[key] = true
				uses = append(uses, u)
			}
		}
	}
	return uses, nil
}

type goScanner struct {
	info *types.Info
	fset *token.FileSet
	root string
	own  map[string]bool // names of the module's own commands
	uses []use
}

func (s *goScanner) visit(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.CallExpr:
		s.call(n)
	case *ast.CompositeLit:
		s.fields(n)
	case *ast.BasicLit:
		if v := s.str(n); binPath.MatchString(v) {
			s.add(v, n)
		}
	}
	return true
}

// call records the program argument of a call (see the package comment).
func (s *goScanner) call(c *ast.CallExpr) {
	fn, ok := typeutil.Callee(s.info, c).(*types.Func)
	if !ok {
		return
	}
	if fn.Pkg() != nil && fn.Pkg().Path() == "os/exec" {
		if i, ok := execArg[fn.Name()]; ok && i < len(c.Args) {
			s.program(c.Args[i])
		}
		return
	}
	sig, ok := fn.Type().(*types.Signature)
	if !ok {
		return
	}
	params := sig.Params()
	for i := 0; i < params.Len() && i < len(c.Args); i++ {
		switch params.At(i).Name() {
		case "program":
			s.program(c.Args[i])
		case "argv":
			if sig.Variadic() && i == params.Len()-1 && !c.Ellipsis.IsValid() {
				s.program(c.Args[i])
			} else {
				s.first(c.Args[i])
			}
		}
	}
}

// fields records the first element of an Args or argv field set by a
// []string literal in a struct literal.
func (s *goScanner) fields(cl *ast.CompositeLit) {
	tv, ok := s.info.Types[cl]
	if !ok {
		return
	}
	if _, ok := tv.Type.Underlying().(*types.Struct); !ok {
		return
	}
	for _, e := range cl.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && (k.Name == "Args" || k.Name == "argv") {
			s.first(kv.Value)
		}
	}
}

// first records the first element of a []string literal.
func (s *goScanner) first(e ast.Expr) {
	if cl, ok := ast.Unparen(e).(*ast.CompositeLit); ok && len(cl.Elts) > 0 {
		s.program(cl.Elts[0])
	}
}

// program records e when it is a string constant naming a program.
func (s *goScanner) program(e ast.Expr) {
	if v := s.str(e); programName(v) && !s.own[v] {
		s.add(v, e)
	}
}

// str is e's value when e is a string constant, "" otherwise.
func (s *goScanner) str(e ast.Expr) string {
	tv, ok := s.info.Types[e]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		return ""
	}
	return constant.StringVal(tv.Value)
}

func (s *goScanner) add(program string, at ast.Node) {
	pos := s.fset.Position(at.Pos())
	file := pos.Filename
	if rel, err := filepath.Rel(s.root, file); err == nil {
		file = rel
	}
	s.uses = append(s.uses, use{program: program, where: fmt.Sprintf("%s:%d", file, pos.Line)})
}
