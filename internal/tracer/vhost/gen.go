package vhost

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type vh_event -type pp_event vhost vhost.bpf.c -- -I../../../bpf/include -Wall -Werror
