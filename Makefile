# pingpath — see README.md. The two commands a newcomer needs:
#   make demo   # the whole workflow on the built-in lab (root)
#   make test   # every test, including root/BPF/lab ones (root)
SHELL := /bin/bash
# scripts/install-deps.sh puts Go in /usr/local/go on machines that lack it.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CLANG ?= clang-19
STRIP ?= llvm-strip-19
BIN := bin/pingpath
STATICCHECK_VERSION := v0.8.2
export CGO_ENABLED := 0
# bpf2go compiles through bpf/cc.sh: clang at one fixed path, so the objects
# are the same in every checkout (see the script for why).
export BPF2GO_CC := $(CURDIR)/bpf/cc.sh
export PINGPATH_BPF_CLANG := $(CLANG)
export BPF2GO_STRIP := $(STRIP)

.PHONY: all build deps generate generate-check lint test test-quick test-kvm-e2e test-kvm-bcc bench-kvm-observer test-kernels test-kernels-all-rungs test-kernels-arm64 freshroot demo demo-kvm bench fuzz clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/pingpath

deps:
	./scripts/install-deps.sh

# Regenerate the committed BPF objects (needs clang-19).
generate:
	$(GO) generate ./...

# Fails when the committed BPF objects differ from what generate produces.
generate-check: generate
	@if ! git diff --quiet --exit-code -- '*.o' '*_bpfel.go'; then \
		git --no-pager diff --stat -- '*.o' '*_bpfel.go'; \
		echo "generated BPF objects are stale: run 'make generate' and commit" >&2; exit 1; fi
	@if [ -n "$$(git status --porcelain --untracked-files=all -- '*_bpfel.o' '*_bpfel.go')" ]; then \
		git status --porcelain -- '*_bpfel.o' '*_bpfel.go'; \
		echo "generated BPF objects are not committed" >&2; exit 1; fi

lint:
	cd internal/report/vendor && sha256sum --quiet -c echarts.min.js.sha256 || { echo "internal/report/vendor/echarts.min.js differs from its pin: run scripts/vendor-echarts.sh" >&2; exit 1; }
	$(GO) mod tidy -diff
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "not gofmt-clean (run gofmt -w):" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) run ./tools/layers
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

test-quick: build
	$(GO) test -count=1 -timeout 30m ./...

test: deps generate-check lint build freshroot
	$(GO) test -count=1 -timeout 45m ./...
	$(MAKE) test-kernels

# The whole path on the KVM lab (test/e2e TestKVMWholePath): one KVM lab, two
# `pingpath run`s with every tracer, delay/loss/drop placed. 4 (quiet) to 25 minutes on a
# 2-CPU machine, so not part of `make test`. Then the data paths, one lab each:
# OVS + Geneve + bond (20-38 min) and Linux bridge + VXLAN (30-35 min at load
# 25-39), so 65-100 minutes in all at that load. Last, the program runs one
# host's tracers make per bridged frame (TestKVMRunsPerFrame, 3-4 minutes quiet).
test-kvm-e2e: build
	PINGPATH_KVM_E2E=1 $(GO) test -count=1 -timeout 160m -run '^(TestKVMWholePath|TestKVMDatapathOVSGeneveBond|TestKVMDatapathBridgeVXLAN|TestKVMRunsPerFrame)$$' -v ./test/e2e/

# The observer effect on the KVM lab (test/e2e BenchmarkKVMObserverEffect):
# traced vs untraced RTT with each node's tracers alone, then all four, each
# traced run between two untraced ones; 30-60 minutes on a 2-CPU machine.
# PINGPATH_KVM_LAB=DIR (a lab up with --hypervisor kvm --wire relay) reuses a
# lab, for this and test-kvm-e2e's TestKVMWholePath.
bench-kvm-observer: build
	PINGPATH_KVM_E2E=1 $(GO) test -count=1 -timeout 150m -run '^$$' -bench '^BenchmarkKVMObserverEffect$$' -benchtime 1x -v ./test/e2e/

# The origin tools' path on the KVM lab (test/e2e TestKVMOriginBCC): a lab with
# --with-bcc, BCC programs driven through the env file's tools: on the hosts
# (pingpath's vm tracer in the VMs), then pingpath's own tracers for the cost
# comparison. BCC compiles under TCG at each start: 13 minutes on a 2-CPU
# machine at load 4-17, about 65 at load 30-40, so not part of `make test`
# nor of test-kvm-e2e.
# PINGPATH_KVM_BCC_LAB=DIR runs it on a lab already up; PINGPATH_KVM_BCC_VMS=1
# runs the origin tool in the VMs too (45+ min more per VM compile).
test-kvm-bcc: build
	PINGPATH_KVM_BCC_E2E=1 $(GO) test -count=1 -timeout 150m -run '^TestKVMOriginBCC$$' -v ./test/e2e/

# The kernel matrix: every package's guest tests (TestTraceRealPackets,
# TestGuest*) in QEMU/TCG guests booting Debian's 5.10, 6.1 and 6.12 cloud kernels,
# per probe rung: on 5.10 (the oldest) every rung — auto, fentry, kprobe,
# tracepoint, perf (the perf event array forced: the fallback for kernels
# without ring buffers, older than any of these, so which ring-buffer kernel
# forces it changes nothing else) and btf-file (the kernel's BTF hidden and
# given as --btf, with bpf_probe_read forced); on 6.12 auto, kprobe and
# tracepoint; on 6.1 auto and kprobe. Where fentry works (6.1, 6.12) auto
# takes it for every stage that has one, so a forced fentry cell there runs
# the same programs again. Fetches and caches the kernels in .cache/kernels,
# rewrites docs/kernel-matrix.md from the run. arm64 is in
# test-kernels-arm64, every rung on every x86 kernel in
# test-kernels-all-rungs: with those cells make test sat at 28.5-32 minutes
# here (2026-12-06/07, 2-CPU machine; the matrix 21-26 of it), over the 30 it
# must stay under.
test-kernels:
	./scripts/kernels.sh 5.10 6.1 6.12
	$(GO) run ./tools/kernelmatrix -kernels 5.10,6.1,6.12 -kernel-rungs 5.10=auto+fentry+kprobe+tracepoint+perf+btf-file,6.12=auto+kprobe+tracepoint,6.1=auto+kprobe

# test-kernels with every rung on every x86 kernel (fentry, tracepoint and
# perf on 6.1 and 6.12 too: 15 VMs more): before a change to a tracer's BPF
# side or the event buffer code.
test-kernels-all-rungs:
	./scripts/kernels.sh 5.10 6.1 6.12
	$(GO) run ./tools/kernelmatrix -kernels 5.10,6.1,6.12 -kernel-rungs 5.10=auto+fentry+kprobe+tracepoint+perf+btf-file

# Every rung on the arm64 kernels (6.1 and 6.12), into
# docs/kernel-matrix-arm64.md: about 20-40 minutes on 2 CPUs, so not part of
# make test. 6.1 arm64 has no BPF trampolines (ftrace direct calls came to
# arm64 in 6.4): a forced fentry rung can only fail there, auto takes kprobes.
test-kernels-arm64:
	./scripts/kernels.sh 6.1-arm64 6.12-arm64
	$(GO) run ./tools/kernelmatrix -kernels 6.1-arm64,6.12-arm64 -kernel-rungs 6.1-arm64=auto+kprobe+tracepoint+perf -doc docs/kernel-matrix-arm64.md -work .cache/kernel-matrix-arm64

# A clean clone of HEAD in a fresh Debian root, with nothing but what
# scripts/install-deps.sh installs, runs make generate-check build, and every
# program the code runs resolves there (tools/depcheck). Caches the debootstrap
# base and the .debs in .cache/freshroot (PINGPATH_FRESHROOT_CACHE).
freshroot:
	./scripts/freshroot.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

# Every parser's fuzz target (internal/parse, internal/parse/origin) for FUZZTIME each; not part of `make test`.
FUZZTIME ?= 20s
FUZZPKGS = ./internal/parse ./internal/parse/origin
fuzz:
	@for p in $(FUZZPKGS); do for t in $$($(GO) test $$p -list '^Fuzz' | grep '^Fuzz'); do \
		echo "== $$p $$t"; $(GO) test $$p -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s || exit 1; done; done

# The whole workflow on the built-in lab (root): deps, build, lab up, check, run with
# every tracer on all four nodes, summary + report.html in ./out/demo-<time>, lab down.
# COUNT, INTERVAL, OUT, LAB_FLAGS and HYPERVISOR are passed through (see scripts/demo.sh).
# HYPERVISOR=kvm (or make demo-kvm) runs it on the KVM lab: QEMU TCG hosts whose VMs
# run under nested KVM with vhost-net, so the virtualization segments are measured too.
demo:
	./scripts/demo.sh

demo-kvm:
	HYPERVISOR=kvm ./scripts/demo.sh

clean:
	rm -rf bin
