package vm

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type vm_event -type pp_event vm vm.bpf.c -- -I../../../bpf/include -Wall -Werror
