//go:build ignore

// Host path tracer: sees one ping's echo request and echo reply enter and
// leave this hypervisor host, and the kernel freeing them when they die here.
//
// Three hooks (the Go loader picks a rung of each with the core's ladder):
//   ingress  a traced device received the packet:
//            raw_tp netif_receive_skb (inside __netif_receive_skb_core)
//   egress   the packet is handed to a traced device's driver:
//            fentry/kprobe dev_hard_start_xmit | raw_tp net_dev_start_xmit
//   drop     the skb is freed with a drop reason: raw_tp kfree_skb
//
// Filtering order is cheapest first: a traced device of our namespace
// (pp_dev_ok: a pointer compare once each device is learned) → one read of
// the skb's header fields → one 64-byte read of the headers, parsed on the
// stack: Ethernet, up to two VLAN tags, IPv4, then ICMP echo between the two
// configured addresses (pp_classify), or VXLAN/Geneve in UDP (one more read
// for the inner headers). The drop hook does nothing while no echo packet is
// between ingress and egress (host_n_inflight). Which device is the VM side
// and which the physical side is decided in Go from the ifindex. Every
// program's run is accounted in the cost slot of its hook (PP_COSTED).

#include "pingpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define HOST_ETH_P_TEB 0x6558
#define HOST_IPPROTO_UDP 17
#define HOST_VXLAN_PORT 4789
#define HOST_GENEVE_PORT 6081

/* Hooks (pp_event.hook). */
#define HOOK_INGRESS 1
#define HOOK_EGRESS 2
#define HOOK_DROP 3
#define HOOK_UPCALL 4

/* Encapsulation flags (host_event.encap). */
#define ENCAP_VLAN 1
#define ENCAP_VXLAN 2
#define ENCAP_GENEVE 4

/* Set by the loader from the kernel's BTF. */
const volatile __u8 host_kfree_reason = 1; /* the kfree_skb tracepoint has a reason argument */

struct host_event {
	struct pp_event pp;
	__u64 location; /* drop: kernel text address that freed the skb */
	__u32 reason;   /* drop: enum skb_drop_reason */
	__u8 encap;
	__u8 pad[3];
};

/* Keeps struct host_event in BTF for bpf2go -type host_event. */
const struct host_event *host_unused_event __attribute__((unused));

/*
 * Headers are read once into a stack buffer: Ethernet (14) + two tags (8) +
 * IPv4 without options (20) + ICMP echo header (8) or UDP (8) + the first
 * Geneve word (4) all fit. Reading past a short frame's end stays inside
 * the skb's head buffer (tailroom, skb_shared_info), so it does not fail.
 * FRAME_NEED and IP_NEED are how many of those bytes a parse from the
 * Ethernet or the IPv4 header looks at.
 */
#define HDR_BUF 64
#define FRAME_NEED 54
#define IP_NEED 32

/*
 * Headers in page fragments. A large frame's headers need not be in the
 * skb's linear part: virtio-net copies only the Ethernet header of a frame
 * that does not fit a small buffer (GRO then pulls the headers it parsed,
 * for a tunnel packet up to the inner IPv4 header, not the ICMP one), and
 * drivers that pull eth_get_headlen() bytes stop at a tunnel's UDP header.
 * The rest of the frame is in the first page fragment, whose struct page
 * becomes an address through the direct map: PAGE_OFFSET + (page −
 * vmemmap) / sizeof(struct page) × 4096 (x86-64). User space (tool.go)
 * writes host_page_offset and host_vmemmap once host_paged_unread shows
 * that this host has such frames: the constants, or with
 * host_layout_vars the addresses of the kernel's page_offset_base and
 * vmemmap_base (randomized layout), read at each use. Until then (and on
 * other architectures) such a packet is not matched, and counted.
 */
volatile __u64 host_page_offset = 0;
volatile __u64 host_vmemmap = 0;
volatile __u8 host_layout_vars = 0;
__u64 host_paged_unread = 0;

/* Where the linear bytes and the fragment's are joined: a map value takes
 * a variable offset on every kernel (a stack buffer does not on 5.10). */
struct hdr_scratch {
	__u8 b[2 * HDR_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hdr_scratch);
} host_scratch SEC(".maps");

/* The first entry of skb_shared_info.frags: struct bio_vec before 6.7,
 * struct skb_frag (netmem) since; the same layout. */
struct frag0 {
	__u64 page; /* struct page *, or a netmem_ref (bit 0: not a page) */
	__u32 len;
	__u32 off;
};

/*
 * frag_hdrs completes b, read at head+off, when fewer than the bytes a
 * parse needs are in the skb's linear part: from the first page fragment,
 * which continues the linear data. Returns 1 when b holds the packet's
 * bytes (also for a short linear packet: no fragment), 0 when they cannot
 * be read.
 */
static __always_inline int frag_hdrs(__u8 *b, struct pp_skb_hdrs *h, __u32 off)
{
	void *sh = h->head + h->end;
	__u8 nr = 0;
	if (bpf_probe_read_kernel(&nr, 1, sh + bpf_core_field_offset(struct skb_shared_info, nr_frags)) || !nr)
		return 1;
	__u64 po = host_page_offset, vm = host_vmemmap;
	if (!po) {
		__sync_fetch_and_add(&host_paged_unread, 1);
		return 0;
	}
	struct frag0 f;
	if (bpf_probe_read_kernel(&f, sizeof(f), sh + bpf_core_field_offset(struct skb_shared_info, frags)) ||
	    (f.page & 1))
		return 0;
	if (host_layout_vars &&
	    (bpf_probe_read_kernel(&po, sizeof(po), (void *)po) || bpf_probe_read_kernel(&vm, sizeof(vm), (void *)vm)))
		return 0;
	__u64 va = po + (f.page - vm) / bpf_core_type_size(struct page) * 4096 + f.off;
	if (h->tail <= off) {
		/* Nothing of it linear: all in the fragment. */
		__u32 skip = off - h->tail;
		if (skip >= f.len)
			return 0;
		return !bpf_probe_read_kernel(b, HDR_BUF, (void *)(va + skip));
	}
	__u32 zero = 0;
	struct hdr_scratch *s = bpf_map_lookup_elem(&host_scratch, &zero);
	if (!s)
		return 0;
	__builtin_memcpy(s->b, b, HDR_BUF);
	__u32 lin = (h->tail - off) & (HDR_BUF - 1); /* < FRAME_NEED here */
	if (bpf_probe_read_kernel(s->b + lin, HDR_BUF, (void *)va))
		return 0;
	__builtin_memcpy(b, s->b, HDR_BUF);
	return 1;
}

/*
 * read_hdrs reads HDR_BUF bytes of the packet at head+off into b, of which
 * a parse looks at need. Returns 0 when they cannot be read.
 */
static __always_inline int read_hdrs(__u8 *b, struct pp_skb_hdrs *h, __u32 off, __u32 need)
{
	if (bpf_probe_read_kernel(b, HDR_BUF, h->head + off))
		return 0;
	/* The common case: what the parse looks at is linear. */
	if (off + need <= h->tail)
		return 1;
	return frag_hdrs(b, h, off);
}

/* What a header parse found. */
#define HDR_NONE 0  /* not interesting */
#define HDR_ECHO 1  /* ICMP echo of the configured pair: pkt is filled */
#define HDR_UDP 2   /* UDP: see udp */
#define HDR_SLOW 3  /* IPv4 with options: parse again with pp_parse_ip */

struct udp_info {
	__u32 off;     /* offset of the UDP header from the buffer start */
	__u16 dport;   /* host order */
	__u16 gproto;  /* Geneve protocol type, host order */
	__u8 gopt;     /* Geneve option length in 4-byte words */
};

/* ip_in_buf parses the IPv4 header at the constant offset l3 of b. */
static __always_inline int ip_in_buf(const __u8 *b, const __u32 l3, struct pp_pkt *pkt, struct udp_info *udp)
{
	if ((b[l3] >> 4) != 4)
		return HDR_NONE;
	if ((b[l3] & 0xf) != 5)
		return HDR_SLOW;
	if ((b[l3 + 6] & 0x1f) || b[l3 + 7]) /* not the first fragment */
		return HDR_NONE;
	__u8 proto = b[l3 + 9];
	if (proto == PP_IPPROTO_ICMP) {
		__builtin_memcpy(&pkt->saddr, b + l3 + 12, 4);
		__builtin_memcpy(&pkt->daddr, b + l3 + 16, 4);
		pkt->icmp_type = b[l3 + 20];
		pkt->id = (__u16)b[l3 + 24] << 8 | b[l3 + 25];
		pkt->seq = (__u16)b[l3 + 26] << 8 | b[l3 + 27];
		return pp_classify(pkt) ? HDR_ECHO : HDR_NONE;
	}
	if (proto != HOST_IPPROTO_UDP)
		return HDR_NONE;
	udp->off = l3 + 20;
	udp->dport = (__u16)b[l3 + 22] << 8 | b[l3 + 23];
	udp->gopt = b[l3 + 28] & 0x3f;
	udp->gproto = (__u16)b[l3 + 30] << 8 | b[l3 + 31];
	return HDR_UDP;
}

static __always_inline int is_vlan(__u16 p)
{
	return p == PP_ETH_P_8021Q || p == PP_ETH_P_8021AD;
}

/* eth_in_buf parses the Ethernet frame at the start of b. */
static __always_inline int eth_in_buf(const __u8 *b, struct pp_pkt *pkt, __u8 *encap, __u32 *l3,
				      struct udp_info *udp)
{
	__u16 p = (__u16)b[12] << 8 | b[13];
	if (p == PP_ETH_P_IP) {
		*l3 = 14;
		return ip_in_buf(b, 14, pkt, udp);
	}
	if (!is_vlan(p))
		return HDR_NONE;
	*encap |= ENCAP_VLAN;
	p = (__u16)b[16] << 8 | b[17];
	if (p == PP_ETH_P_IP) {
		*l3 = 18;
		return ip_in_buf(b, 18, pkt, udp);
	}
	if (!is_vlan(p))
		return HDR_NONE;
	p = (__u16)b[20] << 8 | b[21];
	if (p == PP_ETH_P_IP) {
		*l3 = 22;
		return ip_in_buf(b, 22, pkt, udp);
	}
	return HDR_NONE;
}

/*
 * overlay matches the ICMP echo inside VXLAN or Geneve (Ethernet payload)
 * whose UDP header is at head+udp_off.
 */
static __always_inline int overlay(struct pp_skb_hdrs *h, __u32 udp_off, struct udp_info *udp, __u8 *b,
				   struct pp_pkt *pkt, __u8 *encap)
{
	__u32 inner;
	__u8 flag;
	if (udp->dport == HOST_VXLAN_PORT) {
		inner = udp_off + 8 + 8;
		flag = ENCAP_VXLAN;
	} else if (udp->dport == HOST_GENEVE_PORT && udp->gproto == HOST_ETH_P_TEB) {
		inner = udp_off + 8 + 8 + udp->gopt * 4;
		flag = ENCAP_GENEVE;
	} else {
		return 0;
	}
	if (!read_hdrs(b, h, inner, FRAME_NEED))
		return 0;
	__u32 l3 = 0;
	struct udp_info inner_udp = {};
	int r = eth_in_buf(b, pkt, &flag, &l3, &inner_udp);
	if (r == HDR_SLOW)
		r = pp_parse_ip(h->head, inner + l3, pkt) ? HDR_ECHO : HDR_NONE;
	if (r != HDR_ECHO)
		return 0;
	*encap |= flag;
	return 1;
}

/* match_frame matches a frame whose Ethernet header is at head+off. */
static __always_inline int match_frame(struct pp_skb_hdrs *h, __u32 off, struct pp_pkt *pkt, __u8 *encap)
{
	__u8 b[HDR_BUF];
	if (!read_hdrs(b, h, off, FRAME_NEED))
		return 0;
	__u32 l3 = 0;
	struct udp_info udp = {};
	switch (eth_in_buf(b, pkt, encap, &l3, &udp)) {
	case HDR_ECHO:
		return 1;
	case HDR_SLOW:
		return pp_parse_ip(h->head, off + l3, pkt);
	case HDR_UDP:
		return overlay(h, off + udp.off, &udp, b, pkt, encap);
	}
	return 0;
}

/* match_ip matches a packet whose IPv4 header is at head+off. */
static __always_inline int match_ip(struct pp_skb_hdrs *h, __u32 off, struct pp_pkt *pkt, __u8 *encap)
{
	__u8 b[HDR_BUF];
	if (!read_hdrs(b, h, off, IP_NEED))
		return 0;
	struct udp_info udp = {};
	switch (ip_in_buf(b, 0, pkt, &udp)) {
	case HDR_ECHO:
		return 1;
	case HDR_SLOW:
		return pp_parse_ip(h->head, off, pkt);
	case HDR_UDP:
		return overlay(h, off + udp.off, &udp, b, pkt, encap);
	}
	return 0;
}

/*
 * Echo packets between ingress and egress (or their drop) on this host: a
 * direct-mapped table of inflight_key()s indexed by sequence number and kind
 * (plain loads and stores: a hash map insert and delete per packet cost more
 * than the rest of the matched path together). host_n_inflight counts the
 * occupied slots, or more: a packet that leaves through an untraced device
 * keeps its slot until a ping 32 sequence numbers later takes it over, and
 * two CPUs clearing the same slot at once (one packet sent out of two
 * ports) can miscount; either only keeps the gate open longer or, wrapping
 * below zero, open for good, which costs time and loses nothing. While it
 * is 0 no echo packet is inside this host, and the drop hook, which fires
 * for every skb the kernel frees with a reason, leaves after one load.
 */
#define HOST_INFLIGHT_SLOTS 64

__u64 host_inflight[HOST_INFLIGHT_SLOTS] = {};
__u64 host_n_inflight = 0;

/* inflight_key identifies an echo packet (never 0: kind is 1 or 2). */
static __always_inline __u64 inflight_key(struct pp_pkt *pkt)
{
	return (__u64)pkt->pair << 40 | (__u64)pkt->id << 24 | (__u64)pkt->seq << 8 | pkt->kind;
}

static __always_inline __u64 *inflight_slot(struct pp_pkt *pkt)
{
	return &host_inflight[((__u32)pkt->seq << 1 | (pkt->kind & 1)) % HOST_INFLIGHT_SLOTS];
}

static __always_inline void inflight_add(struct pp_pkt *pkt)
{
	__u64 key = inflight_key(pkt), *slot = inflight_slot(pkt);
	__u64 old = *slot;
	/* A second ingress of the same packet (after decapsulation) adds nothing. */
	if (old == key)
		return;
	*slot = key;
	if (!old)
		__sync_fetch_and_add(&host_n_inflight, 1);
}

static __always_inline void inflight_done(struct pp_pkt *pkt)
{
	__u64 *slot = inflight_slot(pkt);
	if (*slot != inflight_key(pkt))
		return;
	*slot = 0;
	__sync_fetch_and_add(&host_n_inflight, -1);
}

/* Kernels before 6.2 mark a tag in metadata with a vlan_present bit (no vlan_all). */
struct sk_buff___vlan_present {
	__u8 vlan_present : 1;
} __attribute__((preserve_access_index));

/* skb_vlan_flag notes a VLAN tag the driver or 8021q moved into metadata. */
static __always_inline __u8 skb_vlan_flag(struct sk_buff *skb, int typed)
{
	if (bpf_core_field_exists(skb->vlan_all))
		return PP_RD(typed, skb, vlan_all) ? ENCAP_VLAN : 0;
	struct sk_buff___vlan_present *old = (void *)skb;
	if (bpf_core_field_exists(old->vlan_present))
		return BPF_CORE_READ_BITFIELD_PROBED(old, vlan_present) ? ENCAP_VLAN : 0;
	return 0;
}

/*
 * emit sends a host event. ifindex is the device's index (read by the
 * caller); its name is read only for drops, which happen on any device: the
 * traced ones are named by the Go side. No comm or pid: they say nothing
 * about a packet in softirq context.
 */
static __always_inline void emit(void *ctx, struct pp_pkt *pkt, __u8 hook, struct net_device *dev, __u32 ifindex,
				 __u8 encap, __u64 location, __u32 reason)
{
	__u64 ts = bpf_ktime_get_ns();
	PP_RESERVE(struct host_event, e);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->pp.ts = ts;
	e->pp.ifindex = ifindex;
	e->pp.cpu = bpf_get_smp_processor_id();
	e->pp.id = pkt->id;
	e->pp.seq = pkt->seq;
	e->pp.hook = hook;
	e->pp.kind = pkt->kind;
	e->pp.icmp_type = pkt->icmp_type;
	e->pp.pair = pkt->pair;
	e->pp.netns = pp_netns;
	if (hook == HOOK_DROP || hook == HOOK_UPCALL)
		BPF_CORE_READ_STR_INTO(&e->pp.ifname, dev, name);
	e->location = location;
	e->reason = reason;
	e->encap = encap;
	pp_submit(ctx, e);
}

/*
 * recheck_ifindex reads the index of dev, which pp_dev_ok passed (how), for
 * a matched packet: the event carries it, and a device recognised by its
 * learned pointer must still have a traced index (pp_dev_recheck's job: a
 * device freed and its memory reused cannot produce events).
 */
static __always_inline int recheck_ifindex(struct net_device *dev, int how, __u32 *ifindex, int typed)
{
	*ifindex = PP_RD(typed, dev, ifindex);
	return how == PP_DEV_READ || pp_ifindex_ok(*ifindex);
}

static __always_inline int on_ingress(void *ctx, struct sk_buff *skb, int typed)
{
	if (!skb)
		return 0;
	/* A traced device of our namespace (pp_dev_ok: a pointer compare once
	 * learned), then one read of the skb's header fields and one of the
	 * headers. */
	struct net_device *dev = PP_RD(typed, skb, dev);
	int how = pp_dev_ok(dev, typed);
	if (!how)
		return 0;
	struct pp_skb_hdrs h;
	/* eth_type_trans pulled the Ethernet header; mac_header points at it. */
	if (!pp_skb_hdrs(skb, &h, typed) || h.mh == PP_HDR_UNSET)
		return 0;
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	__u32 ifindex;
	if (!match_frame(&h, h.mh, &pkt, &encap) || !recheck_ifindex(dev, how, &ifindex, typed))
		return 0;
	inflight_add(&pkt);
	emit(ctx, &pkt, HOOK_INGRESS, dev, ifindex, encap | skb_vlan_flag(skb, typed), 0, 0);
	return 0;
}

SEC("raw_tracepoint")
int host_ingress_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(HOOK_INGRESS, on_ingress(ctx, (struct sk_buff *)ctx->args[0], 0));
}

/* The same tracepoint with typed arguments (tp_btf): plain loads. */
SEC("tp_btf")
int BPF_PROG(host_ingress_btf, struct sk_buff *skb)
{
	return PP_COSTED(HOOK_INGRESS, on_ingress(ctx, skb, 1));
}

static __always_inline int on_egress(void *ctx, struct sk_buff *skb, struct net_device *dev, int typed)
{
	int how = skb ? pp_dev_ok(dev, typed) : PP_DEV_NO;
	if (!how)
		return 0;
	/* At the driver boundary skb->data is the Ethernet header. */
	struct pp_skb_hdrs h;
	if (!pp_skb_hdrs(skb, &h, typed))
		return 0;
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	__u32 ifindex;
	if (!match_frame(&h, h.data - h.head, &pkt, &encap) || !recheck_ifindex(dev, how, &ifindex, typed))
		return 0;
	inflight_done(&pkt);
	emit(ctx, &pkt, HOOK_EGRESS, dev, ifindex, encap | skb_vlan_flag(skb, typed), 0, 0);
	return 0;
}

SEC("raw_tracepoint")
int host_egress_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(HOOK_EGRESS, on_egress(ctx, (struct sk_buff *)ctx->args[0], (struct net_device *)ctx->args[1], 0));
}

SEC("tp_btf")
int BPF_PROG(host_egress_btf, struct sk_buff *skb, struct net_device *dev)
{
	return PP_COSTED(HOOK_EGRESS, on_egress(ctx, skb, dev, 1));
}

SEC("kprobe")
int host_egress_kprobe(struct pt_regs *ctx)
{
	return PP_COSTED(HOOK_EGRESS,
			 on_egress(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx), (struct net_device *)PT_REGS_PARM2(ctx), 0));
}

SEC("fentry")
int BPF_PROG(host_egress_fentry, struct sk_buff *first, struct net_device *dev)
{
	return PP_COSTED(HOOK_EGRESS, on_egress(ctx, first, dev, 1));
}

/*
 * match_in_netns matches a packet in flight on any device of our namespace,
 * from its network header: the packet may die, or leave for ovs-vswitchd,
 * on its way between the traced devices (pp_netns_ok: a pointer compare for
 * devices seen before). Only while a ping's packet is in flight.
 */
static __always_inline int match_in_netns(struct sk_buff *skb, int typed, struct pp_pkt *pkt, __u8 *encap,
					  struct net_device **devp)
{
	if (!skb || !host_n_inflight)
		return 0;
	struct net_device *dev = PP_RD(typed, skb, dev);
	int how = dev ? pp_netns_ok(skb, dev, typed) : PP_DEV_NO;
	if (!how)
		return 0;
	struct pp_skb_hdrs h;
	if (!pp_skb_hdrs(skb, &h, typed) || h.nh == PP_HDR_UNSET || h.nh == 0)
		return 0;
	*devp = dev;
	return match_ip(&h, h.nh, pkt, encap) && pp_dev_recheck(dev, how, typed);
}

/* on_drop: kfree_skb(skb, location[, reason]); args are the tracepoint's. */
static __always_inline int on_drop(void *ctx, __u64 *args, int typed)
{
	struct sk_buff *skb = (struct sk_buff *)args[0];
	__u32 reason = host_kfree_reason ? (__u32)args[2] : 0;
	/* SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops. */
	if (host_kfree_reason && reason <= 1)
		return 0;
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	struct net_device *dev;
	if (!match_in_netns(skb, typed, &pkt, &encap, &dev))
		return 0;
	inflight_done(&pkt);
	emit(ctx, &pkt, HOOK_DROP, dev, PP_RD(typed, dev, ifindex), encap, args[1], reason);
	return 0;
}

SEC("raw_tracepoint")
int host_drop(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(HOOK_DROP, on_drop(ctx, ctx->args, 0));
}

/* tp_btf: the tracepoint's arguments are ctx itself (a reason the kernel
 * does not pass is never read: host_kfree_reason is a load-time constant). */
SEC("tp_btf")
int BPF_PROG(host_drop_btf, struct sk_buff *skb)
{
	return PP_COSTED(HOOK_DROP, on_drop(ctx, ctx, 1));
}

/*
 * on_upcall: openvswitch:ovs_dp_upcall(dp, skb, key, upcall_info), a packet
 * that missed the OVS datapath's flow table going up to ovs-vswitchd.
 * vswitchd sends it back to be executed, or, when its flow drops it, never:
 * the kernel then consumes it (consume_skb, no drop reason), so this is
 * where such a loss is placed. Any device of our namespace (after a tunnel
 * port decapsulated it, genev_sys_6081 or vxlan_sys_4789). The tracepoint
 * fires only on upcalls (6.1+; 5.10's module has none).
 */
static __always_inline int on_upcall(void *ctx, struct sk_buff *skb, int typed)
{
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	struct net_device *dev;
	if (!match_in_netns(skb, typed, &pkt, &encap, &dev))
		return 0;
	emit(ctx, &pkt, HOOK_UPCALL, dev, PP_RD(typed, dev, ifindex), encap, 0, 0);
	return 0;
}

SEC("raw_tracepoint")
int host_upcall_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(HOOK_UPCALL, on_upcall(ctx, (struct sk_buff *)ctx->args[1], 0));
}

SEC("tp_btf")
int BPF_PROG(host_upcall_btf, void *dp, struct sk_buff *skb)
{
	return PP_COSTED(HOOK_UPCALL, on_upcall(ctx, skb, 1));
}
