//go:build ignore

// Host path tracer: sees one ping's echo request and echo reply enter and
// leave this hypervisor host, and the kernel freeing them when they die here.
//
// Three hooks, each offered on several attach rungs (the Go loader picks one
// per kernel with the tracer core's ladder):
//   ingress  a traced device received the packet:
//            fentry/kprobe __netif_receive_skb_core | raw_tp netif_receive_skb
//   egress   the packet is handed to a traced device's driver:
//            fentry/kprobe dev_hard_start_xmit | raw_tp net_dev_start_xmit
//   drop     the skb is freed with a drop reason: raw_tp kfree_skb
//
// Filtering order is cheapest first, so that unrelated traffic costs little:
// ifindex in the traced set (pp_ifindex) → device in our network namespace →
// headers: Ethernet, up to two VLAN tags, IPv4, ICMP echo between the two
// configured addresses (pingpath.h), or VXLAN/Geneve in UDP with the same
// inside. Which device is the VM side and which the physical side is decided
// in Go from the ifindex.

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

/* Encapsulation flags (host_event.encap). */
#define ENCAP_VLAN 1
#define ENCAP_VXLAN 2
#define ENCAP_GENEVE 4

/* Set by the loader from the kernel's BTF. */
const volatile __u8 host_rcv_pskb = 0;      /* __netif_receive_skb_core takes struct sk_buff ** */
const volatile __u8 host_kfree_reason = 1;  /* the kfree_skb tracepoint has a reason argument */

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
 * l3_after_eth returns the offset (from head) of the IPv4 header of the
 * Ethernet frame at head+off, skipping up to two VLAN tags, or 0 when the
 * frame does not carry IPv4.
 */
static __always_inline __u32 l3_after_eth(unsigned char *head, __u32 off, __u8 *encap)
{
	__be16 proto;
	off += 12;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (bpf_probe_read_kernel(&proto, sizeof(proto), head + off))
			return 0;
		off += 2;
		if (proto == bpf_htons(PP_ETH_P_IP))
			return off;
		if (i == 2 || (proto != bpf_htons(PP_ETH_P_8021Q) && proto != bpf_htons(PP_ETH_P_8021AD)))
			return 0;
		*encap |= ENCAP_VLAN;
		off += 2; /* skip the TCI; the next two bytes are the inner type */
	}
	return 0;
}

/*
 * overlay_at matches the ICMP echo inside a VXLAN or Geneve packet whose
 * outer IPv4 header is at head+off.
 */
static __always_inline int overlay_at(unsigned char *head, __u32 off, struct pp_pkt *pkt, __u8 *encap)
{
	struct iphdr ip;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + off))
		return 0;
	if (ip.version != 4 || ip.protocol != HOST_IPPROTO_UDP || (ip.frag_off & bpf_htons(0x1fff)))
		return 0;
	__u32 udp = off + ip.ihl * 4;
	__be16 dport;
	if (bpf_probe_read_kernel(&dport, sizeof(dport), head + udp + 2))
		return 0;
	__u32 inner;
	__u8 flag;
	if (dport == bpf_htons(HOST_VXLAN_PORT)) {
		inner = udp + 8 + 8; /* UDP header, VXLAN header */
		flag = ENCAP_VXLAN;
	} else if (dport == bpf_htons(HOST_GENEVE_PORT)) {
		__u8 gh[4];
		if (bpf_probe_read_kernel(gh, sizeof(gh), head + udp + 8))
			return 0;
		if (gh[2] != (HOST_ETH_P_TEB >> 8) || gh[3] != (HOST_ETH_P_TEB & 0xff))
			return 0;
		inner = udp + 8 + 8 + (gh[0] & 0x3f) * 4; /* options: opt_len 4-byte words */
		flag = ENCAP_GENEVE;
	} else {
		return 0;
	}
	__u8 inner_encap = flag;
	__u32 l3 = l3_after_eth(head, inner, &inner_encap);
	if (!l3 || !pp_parse_ip(head, l3, pkt))
		return 0;
	*encap |= inner_encap;
	return 1;
}

/* match_l3 matches an ICMP echo, plain or in an overlay, at head+off. */
static __always_inline int match_l3(unsigned char *head, __u32 off, struct pp_pkt *pkt, __u8 *encap)
{
	if (pp_parse_ip(head, off, pkt))
		return 1;
	return overlay_at(head, off, pkt, encap);
}

/* match_frame matches a frame whose Ethernet header is at head+off. */
static __always_inline int match_frame(struct sk_buff *skb, unsigned char *head, __u32 off,
				       struct pp_pkt *pkt, __u8 *encap)
{
	/* A VLAN tag moved into skb metadata is no longer in the bytes. */
	if (bpf_core_field_exists(skb->vlan_all) && BPF_CORE_READ(skb, vlan_all))
		*encap |= ENCAP_VLAN;
	__u32 l3 = l3_after_eth(head, off, encap);
	if (!l3)
		return 0;
	return match_l3(head, l3, pkt, encap);
}

/* traced: dev is one of the configured devices, in our namespace. */
static __always_inline int traced(struct net_device *dev)
{
	if (!dev || !pp_ifindex_ok(BPF_CORE_READ(dev, ifindex)))
		return 0;
	return !pp_netns || pp_dev_netns(dev) == (__u32)pp_netns;
}

static __always_inline void emit(struct pp_pkt *pkt, __u8 hook, struct net_device *dev, __u8 encap,
				 __u64 location, __u32 reason)
{
	__u64 ts = bpf_ktime_get_ns();
	struct host_event *e = bpf_ringbuf_reserve(&pp_events, sizeof(*e), 0);
	if (!e) {
		pp_count_lost();
		return;
	}
	e->pp.ts = ts;
	e->pp.pid = bpf_get_current_pid_tgid() >> 32;
	e->pp.cpu = bpf_get_smp_processor_id();
	e->pp.id = pkt->id;
	e->pp.seq = pkt->seq;
	e->pp.hook = hook;
	e->pp.kind = pkt->kind;
	e->pp.icmp_type = pkt->icmp_type;
	e->pp.pad = 0;
	e->pp.netns = pp_netns;
	bpf_get_current_comm(e->pp.comm, sizeof(e->pp.comm));
	e->pp.ifindex = BPF_CORE_READ(dev, ifindex);
	BPF_CORE_READ_STR_INTO(&e->pp.ifname, dev, name);
	e->location = location;
	e->reason = reason;
	e->encap = encap;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int on_ingress(struct sk_buff *skb)
{
	if (!skb)
		return 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!traced(dev))
		return 0;
	/* eth_type_trans pulled the Ethernet header; mac_header points at it. */
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	if (mac == PP_HDR_UNSET)
		return 0;
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	if (!match_frame(skb, BPF_CORE_READ(skb, head), mac, &pkt, &encap))
		return 0;
	emit(&pkt, HOOK_INGRESS, dev, encap, 0, 0);
	return 0;
}

static __always_inline int on_egress(struct sk_buff *skb, struct net_device *dev)
{
	if (!skb || !traced(dev))
		return 0;
	/* At the driver boundary skb->data is the Ethernet header. */
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	if (!match_frame(skb, head, data - head, &pkt, &encap))
		return 0;
	emit(&pkt, HOOK_EGRESS, dev, encap, 0, 0);
	return 0;
}

SEC("raw_tracepoint")
int host_drop(struct bpf_raw_tracepoint_args *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->args[0];
	__u32 reason = host_kfree_reason ? (__u32)ctx->args[2] : 0;
	/* SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops. */
	if (host_kfree_reason && reason <= 1)
		return 0;
	if (!skb)
		return 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!dev || (pp_netns && pp_dev_netns(dev) != (__u32)pp_netns))
		return 0;
	/* Any device: the packet may die on its way between the traced ones. */
	__u16 nh = BPF_CORE_READ(skb, network_header);
	if (nh == PP_HDR_UNSET || nh == 0)
		return 0;
	struct pp_pkt pkt = {};
	__u8 encap = 0;
	if (!match_l3(BPF_CORE_READ(skb, head), nh, &pkt, &encap))
		return 0;
	emit(&pkt, HOOK_DROP, dev, encap, ctx->args[1], reason);
	return 0;
}

/* Tracepoint rung. */

SEC("raw_tracepoint")
int host_ingress_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return on_ingress((struct sk_buff *)ctx->args[0]);
}

SEC("raw_tracepoint")
int host_egress_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return on_egress((struct sk_buff *)ctx->args[0], (struct net_device *)ctx->args[1]);
}

/* Kprobe and fentry rungs: the same kernel functions. */

static __always_inline struct sk_buff *rcv_core_skb(__u64 arg0)
{
	if (!host_rcv_pskb)
		return (struct sk_buff *)arg0;
	struct sk_buff *skb = NULL;
	bpf_probe_read_kernel(&skb, sizeof(skb), (void *)arg0);
	return skb;
}

SEC("kprobe")
int host_ingress_kprobe(struct pt_regs *ctx)
{
	return on_ingress(rcv_core_skb(PT_REGS_PARM1(ctx)));
}

SEC("kprobe")
int host_egress_kprobe(struct pt_regs *ctx)
{
	return on_egress((struct sk_buff *)PT_REGS_PARM1(ctx), (struct net_device *)PT_REGS_PARM2(ctx));
}

SEC("fentry")
int BPF_PROG(host_ingress_fentry, __u64 arg0)
{
	return on_ingress(rcv_core_skb(arg0));
}

SEC("fentry")
int BPF_PROG(host_egress_fentry, struct sk_buff *first, struct net_device *dev)
{
	return on_egress(first, dev);
}
