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
# (bookworm-backports); with the suffix -arm64 (6.1-arm64, 6.12-arm64) the
# same suites' arm64 kernel (linux-image-cloud-arm64, an uncompressed
# Image that qemu-system-aarch64 boots directly).
# The package name is resolved from the metapackage linux-image-cloud-<arch>
# each time the cache is filled, because the ABI number changes with every
# point/security release and the archive keeps only the newest one.
#
# apt runs with its own source list and list/cache directories under $CACHE,
# so the host's apt configuration is neither needed nor changed.
#
# With --headers it also fetches the kernel's headers from the same suites
# (linux-headers-<release> and its -common package, what BCC compiles
# against) and unpacks them as a root tree of their own:
#
#   $CACHE/<series>/headers/root/usr/src/linux-headers-<release>{,-common}
#   $CACHE/<series>/headers/root/lib/modules/<release>/{build,source} (links)
#   $CACHE/<series>/headers/version           the packages' Debian version
#
# Usage: scripts/kernels.sh [--refresh] [--headers] [SERIES...]   (default: 5.10 6.1 6.12 6.12-arm64)
# Prints one line per series: "<series> <release> <root dir>", and with
# --headers a second one: "<series> headers <headers root dir>".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${PINGPATH_KERNEL_CACHE:-$repo/.cache/kernels}
refresh=0
headers=0
series=()
for a in "$@"; do
  case $a in
    --refresh) refresh=1 ;;
    --headers) headers=1 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) series+=("$a") ;;
  esac
done
((${#series[@]})) || series=(5.10 6.1 6.12 6.12-arm64)

for tool in apt-get apt-cache dpkg-deb busybox; do
  command -v "$tool" >/dev/null || { echo "kernels.sh: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

# suites_for SERIES: the Debian suites whose linux-image-cloud-<arch> is that
# series (the -arm64 suffix removed).
suites_for() {
  case ${1%-arm64} in
    5.10) echo "bullseye bullseye-updates|bullseye-security" ;;
    6.1) echo "bookworm bookworm-updates|bookworm-security" ;;
    6.12) echo "bookworm-backports|" ;;
    *) echo "kernels.sh: unknown kernel series $1 (known: 5.10 6.1 6.12, each also as <series>-arm64)" >&2; return 1 ;;
  esac
}

# arch_of SERIES: the Debian architecture of the series' kernel.
arch_of() {
  if [[ $1 == *-arm64 ]]; then echo arm64; else echo amd64; fi
}

# apt_setup SERIES: sets opts to apt options of an apt configuration of its
# own for the series' suites and architecture, with fresh package lists.
apt_setup() {
  local s=$1 spec main sec arch
  arch=$(arch_of "$s")
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
  opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Get::List-Cleanup=0"
    -o "APT::Architecture=$arch" -o "APT::Architectures=$arch")
  echo "kernels.sh: $s: apt-get update ($main ${sec})" >&2
  apt-get "${opts[@]}" -qq update >&2
}

# download DIR PKG...: apt-get download into DIR (which must exist).
download() {
  local dir=$1; shift
  # "Download is performed unsandboxed as root" is expected and harmless.
  (cd "$dir" && apt-get "${opts[@]}" -qq download "$@" 2>&1 | grep -v 'unsandboxed as root' >&2 || true)
}

fetch() {
  local s=$1 dir=$cache/$1
  if ((!refresh)) && [[ -s $dir/release ]]; then
    local rel; rel=$(<"$dir/release")
    if [[ -f $dir/root/boot/vmlinuz-$rel && -s $dir/root/lib/modules/$rel/modules.dep ]]; then
      echo "$s $rel $dir/root"; return 0
    fi
  fi
  local opts pkg arch
  arch=$(arch_of "$s")
  apt_setup "$s"
  pkg=$(apt-cache "${opts[@]}" depends "linux-image-cloud-$arch" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $pkg ]] || { echo "kernels.sh: $s: cannot resolve linux-image-cloud-$arch in its suites" >&2; return 1; }
  local rel=${pkg#linux-image-}
  [[ $rel == "${s%-arm64}".* && $rel == *-$arch ]] || { echo "kernels.sh: $s: metapackage points at $pkg, not a $s kernel" >&2; return 1; }
  echo "kernels.sh: $s: downloading $pkg" >&2
  local tmp; tmp=$(mktemp -d "$cache/.fetch-$s.XXXXXX")
  tmps+=("$tmp")
  download "$tmp" "$pkg"
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

# fetch_headers SERIES: the cached kernel's headers (see the top). The archive
# keeps only the newest ABI: when it has moved on, the cached kernel must be
# refreshed first (--refresh), since headers of another release are useless.
fetch_headers() {
  local s=$1 dir=$cache/$1 rel
  rel=$(<"$dir/release")
  if ((!refresh)) && [[ -s $dir/headers/version && -L $dir/headers/root/lib/modules/$rel/build ]]; then
    echo "$s headers $dir/headers/root"; return 0
  fi
  local opts arch=linux-headers-$rel common
  apt_setup "$s"
  common=$(apt-cache "${opts[@]}" depends "$arch" | awk '/Depends: linux-headers-.*-common/{print $2; exit}')
  [[ -n $common ]] || { echo "kernels.sh: $s: no $arch in the archive (the kernel moved on? run scripts/kernels.sh --refresh --headers $s)" >&2; return 1; }
  echo "kernels.sh: $s: downloading $arch $common" >&2
  local tmp; tmp=$(mktemp -d "$cache/.headers-$s.XXXXXX")
  tmps+=("$tmp")
  download "$tmp" "$arch" "$common"
  local n=0 deb
  for deb in "$tmp"/*.deb; do
    [[ -f $deb ]] || continue
    dpkg-deb -x "$deb" "$tmp/root"
    n=$((n + 1))
  done
  ((n == 2)) || { echo "kernels.sh: $s: apt-get download $arch $common produced $n .debs, want 2" >&2; return 1; }
  dpkg-deb -f "$(ls "$tmp"/linux-headers-"$rel"_*.deb)" Version >"$tmp/version"
  rm -f "$tmp"/*.deb
  rm -rf "$dir/headers"
  mkdir -p "$dir/headers"
  mv "$tmp/root" "$dir/headers/root"
  mv "$tmp/version" "$dir/headers/version"
  rm -rf "$tmp"
  echo "$s headers $dir/headers/root"
}

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
mkdir -p "$cache"
for s in "${series[@]}"; do
  fetch "$s"
  if ((headers)); then fetch_headers "$s"; fi
done
