package host

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type host_event host host.bpf.c -- -I../../../bpf/include -Wall -Werror
