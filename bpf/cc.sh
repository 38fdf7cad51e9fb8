#!/usr/bin/env bash
# The C compiler bpf2go runs under `make generate` (BPF2GO_CC): clang
# ($PINGPATH_BPF_CLANG, clang-19 by default) on a copy of the sources at one
# fixed path, so that the objects do not depend on where the checkout is.
#
# Why: clang-19 emits the BTF of structs it reached only through pointers in
# the order of their addresses in its heap, and the heap layout shifts with
# the length of every path it is given (source, -o, -fdebug-prefix-map, the
# working directory). The same sources compiled in /work/main and in
# /src/pingpath gave different .BTF sections, so `make generate-check` failed
# in any clone whose path length differed from the one that generated the
# committed objects (CI clones into a folder of its own). Here every path clang
# sees is under $fixed, whatever the checkout, and the compiles are serialised
# on a lock because they share that path.
set -euo pipefail
cc=${PINGPATH_BPF_CLANG:-clang-19}
fixed=/tmp/pingpath-bpf-cc
repo_p=$(cd "$(dirname "$0")/.." && pwd -P)
here=$(pwd -P)
case $here/ in
  "$repo_p"/*) rel=${here#"$repo_p"} ;;
  *) echo "bpf/cc.sh: run from inside the repository ($repo_p), not $here" >&2; exit 2 ;;
esac
# bpf2go passes paths built from its working directory as the shell sees it,
# which may run through a symlink: rewrite that spelling of the checkout too.
repo_l=$repo_p
[[ $PWD == /*"$rel" ]] && repo_l=${PWD%"$rel"}

exec 9>"$fixed.lock"
flock 9
rm -rf "$fixed"
trap 'rm -rf "$fixed"' EXIT
# What the BPF C reads: the shared headers and its own package directory.
mkdir -p "$fixed/bpf" "$fixed$rel"
cp -R "$repo_p/bpf/include" "$fixed/bpf/"
find "$repo_p$rel" -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) -exec cp {} "$fixed$rel/" \;

args=() out=
prev=
for a in "$@"; do
  a=${a//"$repo_p"/"$fixed"}
  [[ $repo_l == "$repo_p" ]] || a=${a//"$repo_l"/"$fixed"}
  [[ $prev == -o ]] && out=$a
  args+=("$a")
  prev=$a
done
cd "$fixed$rel"
"$cc" "${args[@]}"
if [[ -n $out ]]; then
  dest=${out/#"$fixed"/"$repo_p"}
  cp "$out" "$dest"
fi
