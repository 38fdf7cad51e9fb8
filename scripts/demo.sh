#!/usr/bin/env bash
# The pingpath demo on the built-in lab (run as root, from a checkout):
# installs what it needs, builds bin/pingpath, brings up the four-node lab
# (two VMs on two hosts, each a network namespace with its own sshd, TAP VM
# links) in a temporary directory, SSHes to every node, checks the nodes,
# runs the whole workflow (`pingpath run`: every tracer on all four nodes,
# ping, collect, analyse), prints the summary and the path of report.html,
# and tears the lab down again, also when a step fails or on Ctrl-C.
#
# The run directory stays in ./out/demo-<UTC timestamp> (OUT overrides it).
# Knobs, all optional:
#   HYPERVISOR=kvm                                the KVM lab: two QEMU TCG hosts, each
#                                                 running its VM under nested KVM with
#                                                 vhost-net, so E, L, B_1 and I_1 are
#                                                 measured too (about 10 minutes; docs/lab.md)
#   LAB_FLAGS="--wire-delay 2ms --wire-loss 10"   extra `pingpath lab up` flags
#   COUNT=20 INTERVAL=100ms                       the ping series
#   OUT=./out/mine                                the run directory
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "demo: the lab needs root (network namespaces, sshd, BPF)" >&2
  exit 1
fi

HYPERVISOR="${HYPERVISOR:-netns}"
case "$HYPERVISOR" in
  netns) COUNT="${COUNT:-20}" INTERVAL="${INTERVAL:-100ms}" ;;
  # Emulated machines: a ping takes 5-100 ms, so leave room between them.
  kvm) COUNT="${COUNT:-20}" INTERVAL="${INTERVAL:-200ms}" ;;
  *) echo "demo: HYPERVISOR=$HYPERVISOR: want netns or kvm" >&2; exit 2 ;;
esac
OUT="${OUT:-$PWD/out/demo-$(date -u +%Y%m%dT%H%M%SZ)}"

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
    if [[ -d "$OUT" ]]; then
      echo "what the run collected is in $OUT" >&2
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $HYPERVISOR == kvm ]]; then
  step "lab up --hypervisor kvm ${LAB_FLAGS:-} (QEMU TCG hosts with nested KVM VMs; minutes, and the first time it builds the machine image)"
else
  step "lab up (${LAB_FLAGS:-default: tap VM links, veth wire})"
fi
# shellcheck disable=SC2086 # LAB_FLAGS is a list of flags
"$BIN" lab up --dir "$DIR" --name "$NAME" --hypervisor "$HYPERVISOR" ${LAB_FLAGS:-} | tee "$DIR/up.out"
ENV="$(tail -n 1 "$DIR/up.out")"
echo "environment file: $ENV"

SSH=(ssh -F "$DIR/ssh_config")
step "ssh to every node (host keys checked against $DIR/known_hosts)"
for node in sender-vm sender-host receiver-host receiver-vm; do
  printf '%-14s ' "$node:"
  "${SSH[@]}" "$node" 'echo "$(hostname)  $(uname -srm)  $(ip -4 -o addr show scope global | awk "{printf \"%s %s  \", \$2, \$4}")"'
done

step "pingpath check: can every node do its part?"
"$BIN" check -c "$ENV"

step "pingpath run: all tracers on all four nodes, $COUNT pings at $INTERVAL"
mkdir -p "$(dirname "$OUT")"
rc=0
"$BIN" run -c "$ENV" -o "$OUT" --count "$COUNT" --interval "$INTERVAL" || rc=$?
# 3 = partial: a tracer or node was lost, the rest is kept and analysed.
if ((rc != 0 && rc != 3)); then
  exit "$rc"
fi

step "result ($(find "$OUT" -maxdepth 1 -name '*.jsonl' | wc -l) tracer streams, ping.log, manifest.json)"
echo "report:   $OUT/report.html"
echo "          $OUT/report.md, $OUT/report.json"
echo "manifest: $OUT/manifest.json"
echo "compare another run with: $BIN compare $OUT OTHER_RUN_DIR"
echo "every ping on a timeline:  $BIN export $OUT --format perfetto   (open $OUT/trace.json in ui.perfetto.dev)"
ok=1
exit "$rc"
