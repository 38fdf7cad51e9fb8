#!/usr/bin/env bash
# The fresh-machine check (make freshroot, part of make test): a clean clone of
# this repository's HEAD, in a Debian bookworm root that has nothing but what
# debootstrap's minbase and scripts/install-deps.sh put there, runs
#   ./scripts/install-deps.sh && make generate-check build && go run ./tools/depcheck
# so a package installed by hand on this machine can never hide a missing
# install step (issue 22). depcheck derives every program the build, the demo
# and the tests run from the code and checks that each resolves in the root.
#
#   scripts/freshroot.sh              the check
#   scripts/freshroot.sh -- CMD...    run CMD in the prepared root instead, in
#                                     the clone (/src/pingpath), after install-deps
#   scripts/freshroot.sh --refresh    debootstrap the base again first
#
# Environment: PINGPATH_FRESHROOT_CACHE (default .cache/freshroot) keeps the
# debootstrap base, the downloaded .debs and apt's lists between runs;
# PINGPATH_FRESHROOT_TIMEOUT (seconds, default 1200) bounds the whole run;
# PINGPATH_FRESHROOT_MIRROR (default http://deb.debian.org/debian).
#
# Go comes from this machine's GOROOT, bound read-only at /usr/local/go (the
# machines we target ship it there), with its module and build caches bound
# read-write, so the run stays fast. Everything happens in a mount and PID
# namespace of its own: the root is an overlay on a tmpfs, and when the run
# ends or is killed, its processes, mounts and files go with it; the host sees
# only the cache. No service starts in the root (policy-rc.d), /proc/sys and
# /sys are read-only there. Needs root.
set -euo pipefail

die() { echo "freshroot: $*" >&2; exit 1; }
suite=bookworm

if [[ ${1:-} != --inside ]]; then
  repo=$(cd "$(dirname "$0")/.." && pwd)
  refresh=0
  cmd=()
  while (($#)); do
    case $1 in
      --refresh) refresh=1; shift ;;
      --) shift; cmd=("$@"); break ;;
      -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
  done
  [[ $EUID -eq 0 ]] || die "needs root (namespaces, mounts, chroot)"
  for t in unshare setpriv debootstrap chroot mount flock timeout git go; do
    command -v "$t" >/dev/null || die "$t not found (run scripts/install-deps.sh)"
  done
  cache=${PINGPATH_FRESHROOT_CACHE:-$repo/.cache/freshroot}
  mkdir -p "$cache"
  cache=$(cd "$cache" && pwd)
  rev=$(git -C "$repo" rev-parse HEAD)
  if [[ -n $(git -C "$repo" status --porcelain --untracked-files=no) ]]; then
    echo "freshroot: note: uncommitted changes are not part of the check, it clones HEAD ($rev)" >&2
  fi
  export FR_REPO=$repo FR_CACHE=$cache FR_REV=$rev FR_REFRESH=$refresh
  export FR_GOROOT FR_GOMODCACHE FR_GOCACHE
  FR_GOROOT=$(go env GOROOT) FR_GOMODCACHE=$(go env GOMODCACHE) FR_GOCACHE=$(go env GOCACHE)
  # A chain of parent-death signals: when this script dies, however, timeout
  # is killed, then unshare, then the namespace's first process, and with it
  # every process in the namespace and every mount. (unshare itself ignores
  # SIGTERM and SIGINT, hence the traps here.)
  limit=${PINGPATH_FRESHROOT_TIMEOUT:-1200}
  setpriv --pdeathsig KILL timeout -s KILL "$limit" \
    setpriv --pdeathsig KILL unshare --mount --pid --fork --kill-child --propagation private \
    -- "$0" --inside "${cmd[@]}" &
  ns=$!
  trap 'kill -KILL "$ns" 2>/dev/null || true' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  rc=0
  wait "$ns" || rc=$?
  ((rc != 137)) || die "killed, or timed out after ${limit}s (PINGPATH_FRESHROOT_TIMEOUT)"
  exit "$rc"
fi

# --- inside the namespaces (PID 1) ---
shift
cmd=("$@")
start=$SECONDS
t0=$SECONDS
lap() { printf 'freshroot: %-28s %4ds\n' "$1" $((SECONDS - t0)); t0=$SECONDS; }

# One run at a time per cache: they share the base and apt's directories
# (whose locks apt does not wait for). The lock goes with this process.
exec 9>"$FR_CACHE/run.lock"
if ! flock -n 9; then
  echo "freshroot: waiting for another run on $FR_CACHE"
  flock 9
  lap "waiting"
fi

base=$FR_CACHE/base-$suite
mirror=${PINGPATH_FRESHROOT_MIRROR:-http://deb.debian.org/debian}
if ((FR_REFRESH)) || [[ ! -e $base/.complete ]]; then
  echo "freshroot: debootstrap --variant=minbase $suite into $base"
  rm -rf "$base" "$base.new"
  debootstrap --variant=minbase "$suite" "$base.new" "$mirror" >"$FR_CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$FR_CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $FR_CACHE/debootstrap.log)"; }
  rm -rf "$base.new"/var/cache/apt/archives/*.deb "$base.new"/var/lib/apt/lists/*_*
  touch "$base.new/.complete"
  mv "$base.new" "$base"
  lap "debootstrap (cold)"
fi

# The root: the cached base read-only under a tmpfs overlay that lives as long
# as this mount namespace.
mnt=$FR_CACHE/mnt
mkdir -p "$mnt" "$FR_CACHE/apt-archives/partial" "$FR_CACHE/apt-lists/partial"
mount -t tmpfs -o mode=0755,size=12g freshroot "$mnt"
mkdir -p "$mnt/upper" "$mnt/work" "$mnt/root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$mnt/upper,workdir=$mnt/work" "$mnt/root"
root=$mnt/root
bind() { mkdir -p "$root$2"; mount --bind "$1" "$root$2"; }
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount --bind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmp "$root/tmp"
bind "$FR_CACHE/apt-archives" /var/cache/apt/archives
bind "$FR_CACHE/apt-lists" /var/lib/apt/lists
bind "$FR_GOROOT" /usr/local/go
mount -o remount,bind,ro "$root/usr/local/go"
bind "$FR_GOMODCACHE" "$FR_GOMODCACHE"
bind "$FR_GOCACHE" "$FR_GOCACHE"
cat /etc/resolv.conf >"$root/etc/resolv.conf"
# The machine's own trust anchors (machines of this kind reach the Go proxy
# through a TLS-inspecting egress): part of the machine, like Go, not of the
# project; ca-certificates, which install-deps.sh installs, takes them in.
if [[ -d /usr/local/share/ca-certificates ]]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
printf '#!/bin/sh\n# freshroot: no service starts in this root\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# The suites a machine of this kind has.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
git clone -q --no-hardlinks "$FR_REPO" "$root/src/pingpath"
git -C "$root/src/pingpath" checkout -q --detach "$FR_REV"
lap "root and clone ready"

# What runs inside: a login-like environment, the Go settings of this machine.
envv=(PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/root LANG=C.UTF-8 TERM=dumb CI=true)
while IFS='=' read -r k v; do envv+=("$k=$v"); done < <(env | grep -E '^GO[A-Z0-9_]*=' || true)
inroot() { chroot "$root" /usr/bin/env -i "${envv[@]}" /bin/bash -euo pipefail -c "cd /src/pingpath; $1"; }

inroot ./scripts/install-deps.sh >"$mnt/install-deps.log" 2>&1 ||
  { tail -n 30 "$mnt/install-deps.log" >&2; die "install-deps.sh failed in the fresh root"; }
lap "install-deps.sh"
if ((${#cmd[@]})); then
  chroot "$root" /usr/bin/env -i "${envv[@]}" /bin/bash -c 'cd /src/pingpath && exec "$@"' - "${cmd[@]}"
  exit
fi
inroot 'make --no-print-directory generate-check'
lap "make generate-check"
inroot 'make --no-print-directory build && bin/pingpath version'
lap "make build"
inroot 'go run ./tools/depcheck'
lap "depcheck"
echo "freshroot: ok: HEAD ${FR_REV:0:12} builds in a fresh $suite root with nothing but install-deps.sh (root $(du -sh "$mnt/upper" | cut -f1), $((SECONDS - start))s)"
