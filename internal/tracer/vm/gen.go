package vm

// amd64 only for now; arm64 needs a second -target and its vmlinux.h.
//go:generate go tool bpf2go -tags linux -target amd64 -type pp_event vm vm.bpf.c -- -I../../../bpf/include -Wall -Werror
