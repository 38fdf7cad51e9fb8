// Command pingpath breaks the round trip of a ping between two KVM virtual
// machines into per-layer segments, using eBPF tracers on the VMs and their
// hypervisor hosts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pingpath/pingpath/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
