#!/usr/bin/env bash
# Installs what building, the lab, the demo and the tests need on a fresh
# Debian machine (run as root). Idempotent: it skips packages that are there.
set -euo pipefail

PKGS=(
  # build: clang pinned for BPF object generation (make generate / generate-check)
  clang-19 llvm-19
  # the lab: namespaces, bridges, sshd in every node, ping
  iproute2 iputils-ping openssh-server openssh-client procps psmisc nftables
  # the lab's optional non-root login user (lab up --sudo-user): real sudo, both modes
  sudo
  # kernel matrix (make test-kernels): Debian kernels booted under QEMU/TCG,
  # x86_64 and arm64 (qemu-system-aarch64 is in qemu-system-arm)
  qemu-system-x86 qemu-system-arm busybox-static cpio
  # the KVM lab's machine image (lab up --hypervisor kvm): a Debian root made
  # with debootstrap, packed into ext4 with mke2fs -d; debootstrap also makes
  # make freshroot's root (part of make test)
  debootstrap e2fsprogs
  # ...and the uncompressed kernel it boots through PVH (6.12 is zstd, 6.1
  # and 5.10 lz4)
  zstd lz4
  # the live progress test runs pingpath under a real terminal (tmux)
  tmux
  # bpftool: per-program instruction counts and run-time statistics (docs/observer-effect.md)
  bpftool
  # report rendering check in headless Chromium
  chromium
  # pingpath watch's tests: a real Prometheus scrapes it; promtool checks
  # and unit-tests the example alert rules (monitoring/); the soak benchmark
  # (scripts/soak-watch.sh) reads /metrics with curl
  prometheus curl
  # the orchestrate tests run fake origin BCC tools (python3 scripts)
  python3
  make git ca-certificates
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Go: the machines we target ship Go in /usr/local/go. On a Debian machine
# without it, bootstrap from Debian's own packages: golang-1.23 from
# bookworm-backports, which then fetches the exact toolchain go.mod names
# (golang.org/toolchain, through the Go module proxy) and installs that as
# /usr/local/go.
ensure_go() {
  export PATH=/usr/local/go/bin:$PATH
  if command -v go >/dev/null 2>&1; then
    return 0
  fi
  local want
  want=$(awk '$1 == "go" {print "go" $2; exit}' "$(dirname "$0")/../go.mod")
  echo "go not found: bootstrapping $want from Debian's golang-1.23 (bookworm-backports)"
  if ! apt-cache policy golang-1.23-go 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/pingpath-backports.list
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-1.23-go
  local root
  root=$(GOTOOLCHAIN=$want /usr/lib/go-1.23/bin/go env GOROOT)
  cp -a "$root" /usr/local/go
  /usr/local/go/bin/go version
}
ensure_go
