package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// MaxInterfaces is PP_MAX_IFACES in bpf/include/pingpath.h.
const MaxInterfaces = 8

// MaxPairs is PP_MAX_PAIRS in bpf/include/pingpath.h: how many address
// pairs one tracer can filter (SrcIP/DstIP and MorePairs together).
const MaxPairs = 8

// AddrPair is one (initiator, target) address pair.
type AddrPair struct{ Src, Dst netip.Addr }

// Echo kinds (PP_KIND_* in pingpath.h), also the "kind" of every event.
const (
	KindRequest uint8 = 1
	KindReply   uint8 = 2
)

// Filter is the in-kernel filter every pingpath program applies before it
// emits anything (the pp_* const volatile globals of pingpath.h).
type Filter struct {
	// SrcIP is the ping's initiator, DstIP its target: requests must go
	// Src→Dst and replies Dst→Src. Invalid (zero) addresses match any.
	SrcIP, DstIP netip.Addr
	// Kinds is a KindRequest|KindReply mask; 0 means both.
	Kinds uint8
	// ICMPID, when set, keeps only this echo identifier.
	ICMPID *uint16
	// Netns is the inode of the namespace whose packets are traced; 0 = all.
	Netns uint64
	// Ifindexes are the interfaces device-bound stages accept; empty = any.
	Ifindexes []uint32
	// MorePairs are further address pairs (a tracer serving several VM
	// pairs): a packet of MorePairs[i] carries pair index i+1 in its event.
	MorePairs []AddrPair
}

// be32 returns addr as the uint32 whose in-memory bytes are the address in
// network order, as BPF compares it against iphdr.saddr.
func be32(a netip.Addr) (uint32, error) {
	if !a.IsValid() {
		return 0, nil
	}
	if !a.Is4() {
		return 0, fmt.Errorf("address %s: only IPv4 is supported", a)
	}
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:]), nil
}

// Apply writes the filter into the collection spec's pp_* variables.
func (f Filter) Apply(spec *ebpf.CollectionSpec) error {
	src, err := be32(f.SrcIP)
	if err != nil {
		return err
	}
	dst, err := be32(f.DstIP)
	if err != nil {
		return err
	}
	if len(f.Ifindexes) > MaxInterfaces {
		return fmt.Errorf("%d interfaces given: at most %d can be filtered", len(f.Ifindexes), MaxInterfaces)
	}
	kinds := f.Kinds
	if kinds == 0 {
		kinds = KindRequest | KindReply
	}
	var ifs [MaxInterfaces]uint32
	copy(ifs[:], f.Ifindexes)
	var id uint16
	var idSet uint8
	if f.ICMPID != nil {
		id, idSet = *f.ICMPID, 1
	}
	vals := []struct {
		name string
		v    any
	}{
		{"pp_src_ip", src},
		{"pp_dst_ip", dst},
		{"pp_echo_kinds", kinds},
		{"pp_icmp_id", id},
		{"pp_icmp_id_set", idSet},
		{"pp_netns", f.Netns},
		{"pp_ifindex", ifs},
		{"pp_n_ifindex", uint32(len(f.Ifindexes))},
	}
	if len(f.MorePairs) > 0 {
		// Only then: single-pair objects need not have the variables.
		if len(f.MorePairs) > MaxPairs-1 {
			return fmt.Errorf("%d address pairs given: at most %d can be filtered", len(f.MorePairs)+1, MaxPairs)
		}
		var srcs, dsts [MaxPairs - 1]uint32
		for i, p := range f.MorePairs {
			if srcs[i], err = be32(p.Src); err != nil {
				return err
			}
			if dsts[i], err = be32(p.Dst); err != nil {
				return err
			}
		}
		vals = append(vals, []struct {
			name string
			v    any
		}{{"pp_more_src_ip", srcs}, {"pp_more_dst_ip", dsts}, {"pp_n_more_pairs", uint32(len(f.MorePairs))}}...)
	}
	for _, kv := range vals {
		v, ok := spec.Variables[kv.name]
		if !ok {
			return fmt.Errorf("setting filter: variable %s missing from the BPF object (does it include pingpath.h and use it?)", kv.name)
		}
		if err := v.Set(kv.v); err != nil {
			return fmt.Errorf("setting filter %s: %w", kv.name, err)
		}
	}
	return nil
}
