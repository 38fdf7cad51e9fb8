#!/usr/bin/env bash
# Installs what building, the lab, the demo and the tests need on a fresh
# Debian machine (run as root). Idempotent: it skips packages that are there.
set -euo pipefail

PKGS=(
  # build: clang pinned for BPF object generation (make generate / generate-check)
  clang-19 llvm-19
  # the lab: namespaces, bridges, sshd in every node, ping
  iproute2 iputils-ping openssh-server openssh-client procps psmisc nftables
  # kernel matrix (make test-kernels): Debian kernels booted under QEMU/TCG
  qemu-system-x86 busybox-static cpio
  # report rendering check in headless Chromium
  chromium
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

if ! command -v go >/dev/null 2>&1; then
  echo "go is required (https://go.dev/dl); not found on PATH" >&2
  exit 1
fi
