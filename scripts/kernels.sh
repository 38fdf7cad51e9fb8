#!/usr/bin/env bash
# Fetches the Debian cloud kernels the kernel matrix (make test-kernels) boots
# under QEMU/TCG, and caches them unpacked:
#
#   $CACHE/<series>/release                   e.g. 6.12.95+deb12-cloud-amd64
#   $CACHE/<series>/root/boot/vmlinuz-<release>
#   $CACHE/<series>/root/lib/modules/<release>/  plain .ko files + modules.dep
#
# CACHE is $PINGPATH_KERNEL_CACHE or .cache/kernels in the repository.
# Series: 5.10 (bullseye + bullseye-updates + bullseye-security), 6.1
# (bookworm + bookworm-updates + bookworm-security) and 6.12
# (bookworm-backports).
# The package name is resolved from the metapackage linux-image-cloud-amd64
# each time the cache is filled, because the ABI number changes with every
# point/security release and the archive keeps only the newest one.
#
# apt runs with its own source list and list/cache directories under $CACHE,
# so the host's apt configuration is neither needed nor changed.
#
# Usage: scripts/kernels.sh [--refresh] [SERIES...]   (default: 6.1 6.12)
# Prints one line per series: "<series> <release> <root dir>".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${PINGPATH_KERNEL_CACHE:-$repo/.cache/kernels}
refresh=0
series=()
for a in "$@"; do
  case $a in
    --refresh) refresh=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) series+=("$a") ;;
  esac
done
((${#series[@]})) || series=(6.1 6.12)

for tool in apt-get apt-cache dpkg-deb busybox; do
  command -v "$tool" >/dev/null || { echo "kernels.sh: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

# suites_for SERIES: the Debian suites whose linux-image-cloud-amd64 is that series.
suites_for() {
  case $1 in
    5.10) echo "bullseye bullseye-updates|bullseye-security" ;;
    6.1) echo "bookworm bookworm-updates|bookworm-security" ;;
    6.12) echo "bookworm-backports|" ;;
    *) echo "kernels.sh: unknown kernel series $1 (known: 5.10 6.1 6.12)" >&2; return 1 ;;
  esac
}

fetch() {
  local s=$1 dir=$cache/$1
  if ((!refresh)) && [[ -s $dir/release ]]; then
    local rel; rel=$(<"$dir/release")
    if [[ -f $dir/root/boot/vmlinuz-$rel && -s $dir/root/lib/modules/$rel/modules.dep ]]; then
      echo "$s $rel $dir/root"; return 0
    fi
  fi
  local spec main sec
  spec=$(suites_for "$s")
  main=${spec%%|*} sec=${spec#*|}
  local apt=$cache/apt-$s
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
  {
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$main"
    if [[ -n $sec ]]; then
      printf '\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$sec"
    fi
  } >"$apt/sources.list.d/kernels.sources"
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Get::List-Cleanup=0")
  echo "kernels.sh: $s: apt-get update ($main ${sec})" >&2
  apt-get "${opts[@]}" -qq update >&2
  local pkg
  pkg=$(apt-cache "${opts[@]}" depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $pkg ]] || { echo "kernels.sh: $s: cannot resolve linux-image-cloud-amd64 in $main $sec" >&2; return 1; }
  local rel=${pkg#linux-image-}
  [[ $rel == "$s".* ]] || { echo "kernels.sh: $s: metapackage points at $pkg, not a $s kernel" >&2; return 1; }
  echo "kernels.sh: $s: downloading $pkg" >&2
  local tmp; tmp=$(mktemp -d "$cache/.fetch-$s.XXXXXX")
  tmps+=("$tmp")
  # "Download is performed unsandboxed as root" is expected and harmless.
  (cd "$tmp" && apt-get "${opts[@]}" -qq download "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2 || true)
  local deb; deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
  [[ -n $deb ]] || { echo "kernels.sh: $s: apt-get download $pkg produced no .deb" >&2; return 1; }
  dpkg-deb -x "$deb" "$tmp/root"
  rm -f "$deb"
  # 6.12 ships xz-compressed modules; busybox insmod and the guest's
  # finit_module path both take plain .ko, so decompress them once here.
  find "$tmp/root/lib/modules/$rel" -name '*.ko.xz' -print0 | xargs -0 -r -P2 -n200 busybox unxz
  # The package has no modules.dep (depmod runs in postinst).
  busybox depmod -b "$tmp/root" "$rel"
  rm -rf "$dir"
  mkdir -p "$dir"
  mv "$tmp/root" "$dir/root"
  echo "$rel" >"$dir/release"
  rm -rf "$tmp"
  echo "$s $rel $dir/root"
}

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
mkdir -p "$cache"
for s in "${series[@]}"; do fetch "$s"; done
