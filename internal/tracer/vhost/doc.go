// Package vhost implements the two virtualization tracers, `pingpath trace
// vhost-rx` (a packet the vnet device sends into a guest: tun transmit →
// vhost takes it → vhost signals → irqfd → KVM interrupt injection; segments
// E and L) and `pingpath trace vhost-tx` (a packet a guest sends: kick →
// vhost handle_tx → tun_sendmsg → netif_receive_skb on the vnet; segments
// B_1 and I_1).
//
// The BPF programs (vhost.bpf.c) only emit filtered events; the correlation
// of events into per-packet records is pure Go (RXCorrelator, TXCorrelator)
// so that it can be tested by replaying recorded event sequences on machines
// without vhost-net or KVM.
package vhost
