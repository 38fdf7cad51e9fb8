#!/usr/bin/env bash
# The pingpath demo on the built-in lab (run as root, from a checkout):
# installs what it needs, builds bin/pingpath, brings up the four-node lab
# (two VMs on two hosts, each a network namespace with its own sshd) in a
# temporary directory, SSHes to every node, pings VM to VM, and tears the
# lab down again, also when a step fails or on Ctrl-C.
#
# Extra `pingpath lab up` flags can be passed in LAB_FLAGS, for example
#   LAB_FLAGS="--wire-delay 2ms --wire-loss 10" make demo
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "demo: the lab needs root (network namespaces, sshd)" >&2
  exit 1
fi

step() { printf '\n== %s\n' "$*"; }

step "installing dependencies"
./scripts/install-deps.sh

step "building"
make --no-print-directory build
BIN="$PWD/bin/pingpath"
"$BIN" version

DIR="$(mktemp -d /tmp/pingpath-demo.XXXXXX)"
NAME="demo$$"
ok=0
cleanup() {
  step "lab down"
  "$BIN" lab down --dir "$DIR" || true
  if ((ok)) || [[ ! -d "$DIR/logs" ]]; then
    rm -rf "$DIR"
  fi
  if ((!ok)); then
    if [[ -d "$DIR" ]]; then
      echo "demo failed; the lab's logs are in $DIR/logs" >&2
    else
      echo "demo failed" >&2
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "lab up (${LAB_FLAGS:-default: tap VM links, veth wire})"
# shellcheck disable=SC2086 # LAB_FLAGS is a list of flags
"$BIN" lab up --dir "$DIR" --name "$NAME" ${LAB_FLAGS:-} | tee "$DIR/up.out"
ENV="$(tail -n 1 "$DIR/up.out")"
echo "environment file: $ENV"

SSH=(ssh -F "$DIR/ssh_config")
step "ssh to every node (host keys checked against $DIR/known_hosts)"
for node in sender-vm sender-host receiver-host receiver-vm; do
  printf '%-14s ' "$node:"
  "${SSH[@]}" "$node" 'echo "$(hostname)  $(uname -srm)  $(ip -4 -o addr show scope global | awk "{printf \"%s %s  \", \$2, \$4}")"'
done

# The receiver VM's address on the measured path, from env.yaml.
RECV_IP="$(awk '/^receiver:/ {r=1} r && $1 == "ip:" {print $2; exit}' "$ENV")"
step "ping from sender-vm to receiver-vm ($RECV_IP) through both bridges and the wire"
"${SSH[@]}" sender-vm ping -c 10 -i 0.2 "$RECV_IP"

step "lab status"
"$BIN" lab status --dir "$DIR"
ok=1
