package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/testkit/testenv"
)

// programs maps each program to its sorted, deduplicated uses.
func programs(uses []use) map[string][]string {
	m := map[string][]string{}
	for _, u := range uses {
		m[u.program] = append(m[u.program], u.where)
	}
	for p := range m {
		m[p] = dedupe(m[p])
	}
	return m
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// Every rule of the Go scanner, on a module of its own: what counts and
// what must not.
func TestScanGoRules(t *testing.T) {
	testenv.RequireProgram(t, "go")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.22\n",
		"cmd/mytool/main.go": `package main

func main() {}
`,
		"run/run.go": `package run

import (
	"context"
	"os/exec"
)

const qemu = "qemu-system-x86_64"

type Command struct{ Args []string }

func Need(program string) {}
func Exec(ctx context.Context, node string, argv ...string) {}
func Start(argv []string) {}

func Uses(ctx context.Context, dyn string, rest []string) {
	exec.Command("ip", "link")
	exec.CommandContext(ctx, qemu, "-m", "64")
	exec.LookPath("busybox")
	exec.Command(dyn)                       // not a constant: not counted
	Need("nft")
	Exec(ctx, "node", "ping", "-c", "1")
	Exec(ctx, "node", rest...)             // spread slice: not counted
	Start([]string{"tc", "qdisc"})
	_ = Command{Args: []string{"ethtool", "-k"}}
	_ = Command{Args: []string{"mytool", "trace"}} // the module's own command
	_ = "/usr/sbin/sshd"
	_ = "/usr/lib/x/not-a-bin-dir"
	_ = "just words"
}
`,
		"run/run_test.go": `package run

import "testing"

func TestX(t *testing.T) { Need("python3") }
`,
	})
	uses, err := scanGo(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := programs(uses)
	want := map[string][]string{
		"ip": {"run/run.go:17"}, "qemu-system-x86_64": {"run/run.go:18"}, "busybox": {"run/run.go:19"},
		"nft": {"run/run.go:21"}, "ping": {"run/run.go:22"}, "tc": {"run/run.go:24"},
		"ethtool": {"run/run.go:25"}, "/usr/sbin/sshd": {"run/run.go:27"}, "python3": {"run/run_test.go:5"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scanGo:\n got %v\nwant %v", got, want)
	}
}

// The shell scanner reads the Makefile (through make -n) and every tracked
// shell script, through wrappers, past builtins, functions, untracked,
// non-shell and opted-out files.
func TestScanShell(t *testing.T) {
	testenv.RequireProgram(t, "make")
	testenv.RequireProgram(t, "bash")
	git := testenv.RequireProgram(t, "git")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Makefile": "CLANG ?= clang-19\n.PHONY: build demo\nbuild:\n\t$(CLANG) -c x.c\n\t$(MAKE) demo\ndemo:\n\t./scripts/demo.sh\n",
		".ci/run":  "#!/usr/bin/env bash\ncd \"$(dirname \"$0\")/..\"\nexec make build\n",
		"scripts/demo.sh": `#!/usr/bin/env bash
set -euo pipefail
step() { printf '%s\n' "$*"; }
step hello
timeout -k 5 10 unshare -m true
find . -print0 | xargs -0 -r -n20 busybox unxz
env -i A=b nft list ruleset
command -v missing-but-only-probed >/dev/null || true
"$BIN" version
/usr/sbin/sshd -t
/opt/go/bin/go version
./scripts/helper.sh
./bin/built
`,
		"scripts/helper.sh":  "#!/bin/sh\nip link\n./scripts/demo.sh\n",
		"scripts/guest-init": "#!/bin/bash\n# depcheck: skip (runs in the guest)\ninsmod x.ko\n",
		"scripts/tool.py":    "#!/usr/bin/python3\nimport os\n",
		"bin/built":          "\x7fELF not a script",
	})
	add := exec.Command(git, "-C", dir, "init", "-q")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	add = exec.Command(git, "-C", dir, "add", "Makefile", ".ci/run", "scripts")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("git add: %v\n%s", err, out)
	}
	writeFiles(t, dir, map[string]string{"scripts/untracked.sh": "#!/bin/sh\nuntracked-program\n"})
	uses, err := scanShell(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := programs(uses)
	want := map[string][]string{
		"clang-19": {"make build"},
		"make":     {".ci/run:3", "make build"},
		"dirname":  {".ci/run:2"},
		"timeout":  {"scripts/demo.sh:5"}, "unshare": {"scripts/demo.sh:5"},
		"find": {"scripts/demo.sh:6"}, "xargs": {"scripts/demo.sh:6"}, "busybox": {"scripts/demo.sh:6"},
		"env": {"scripts/demo.sh:7"}, "nft": {"scripts/demo.sh:7"},
		"/usr/sbin/sshd": {"scripts/demo.sh:10"},
		"ip":             {"scripts/helper.sh:2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scanShell:\n got %v\nwant %v", got, want)
	}
}

// The repository itself: one program of each kind of use the rules cover is
// found where it is used today. If one of these moves, update the line, not
// the rule.
func TestScanRepository(t *testing.T) {
	testenv.RequireProgram(t, "make")
	uses, err := scan("../..")
	if err != nil {
		t.Fatal(err)
	}
	got := programs(uses)
	for program, file := range map[string]string{
		"ip":                 "internal/orchestrate/check_test.go", // testenv.RequireProgram
		"ping":               "internal/lab/lab_test.go",           // lab.Exec argv
		"qemu-system-x86_64": "tools/vmexec/vm/vm_test.go",         // testenv.RequireProgram on a constant
		"/usr/sbin/sshd":     "internal/lab/up.go",                 // absolute path
		"apt-get":            "scripts/kernels.sh",                 // a tracked script
		"debootstrap":        "scripts/freshroot.sh",               // a tracked script
		"mke2fs":             "internal/lab/kvm/image/build.sh",    // a script the Go code runs
		"go":                 "make build",                         // Makefile recipe
	} {
		found := false
		for _, w := range got[program] {
			found = found || strings.HasPrefix(w, file)
		}
		if !found {
			t.Errorf("%s: not found in %s (found in %v)", program, file, got[program])
		}
	}
	if _, ok := got["pingpath"]; ok {
		t.Errorf("pingpath is the module's own command, listed as a program: %v", got["pingpath"])
	}
	for p, where := range got {
		for _, w := range where {
			if f, _, ok := strings.Cut(w, ":"); ok && !strings.HasPrefix(w, "make ") {
				if _, err := os.Stat(filepath.Join("../..", f)); err != nil {
					t.Errorf("%s: use at %s: %v", p, w, err)
				}
			}
		}
	}
	names := make([]string, 0, len(got))
	for p := range got {
		names = append(names, p)
	}
	sort.Strings(names)
	t.Logf("%d programs: %s", len(names), strings.Join(names, " "))
}

func TestResolve(t *testing.T) {
	if _, err := resolve("depcheck-no-such-program"); err == nil {
		t.Error("a program not on PATH resolved")
	}
	if _, err := resolve("/etc/hostname-no-such"); err == nil {
		t.Error("a missing absolute path resolved")
	}
	f := filepath.Join(t.TempDir(), "notexec")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(f); err == nil {
		t.Error("a file without exec bits resolved")
	}
	if p, err := resolve("sh"); err != nil || !filepath.IsAbs(p) {
		t.Errorf("resolve(sh) = %q, %v", p, err)
	}
}
