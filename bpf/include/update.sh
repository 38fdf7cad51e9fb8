#!/usr/bin/env bash
# depcheck: skip (run by hand to refresh the vendored headers; installs its own tools)
# Refreshes the vendored BPF headers: the libbpf headers from Debian's
# libbpf-dev into bpf/ (they include each other as <bpf/...>, so they must sit
# where that path resolves against -I bpf/include, never against /usr/include)
# and vmlinux.h dumped from the running kernel's BTF. The BPF
# programs are CO-RE, so vmlinux.h only needs to declare the types they use;
# field offsets are relocated against each target kernel's BTF at load time.
# After running it: make generate, check the kernel matrix, commit.
set -euo pipefail
cd "$(dirname "$0")"
apt-get install -y -qq --no-install-recommends libbpf-dev bpftool >/dev/null
for h in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h bpf_endian.h; do
  cp "/usr/include/bpf/$h" bpf/
done
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h
