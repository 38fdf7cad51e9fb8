/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pingpath.h - what every pingpath BPF tracer shares.
 *
 * - filter configuration as `const volatile` globals, set by the Go loader
 *   (internal/tracer.Filter) before the collection is loaded, so the
 *   verifier sees constants and dead branches disappear;
 * - pp_parse_skb(): finds the IPv4 + ICMP echo header of an skb with CO-RE
 *   reads, whether or not network_header is set yet, skipping 802.1Q/802.1ad
 *   tags that are still in the packet data;
 * - pp_netns_ok() / pp_dev_ok(): the early exits for packets of other
 *   network namespaces and interfaces, pointer compares once the tracer's
 *   struct net and devices are learned;
 * - the common event (struct pp_event) sent through the ring buffer
 *   `pp_events` (or the perf event array `pp_perf` on kernels without ring
 *   buffers), and the per-CPU counter `pp_lost` incremented whenever the
 *   buffer is full. PP_RESERVE()/pp_submit() are the only places that touch
 *   either;
 * - the cost accounting (pp_cost, PP_COSTED): every program counts its runs
 *   and times a sample of them, so the tracer knows what it costs the host;
 * - typed reads (PP_RD): programs whose arguments the kernel types through
 *   BTF (fentry, tp_btf) read kernel structs with plain loads, the others
 *   (kprobe, raw_tracepoint) with bpf_probe_read_kernel. Every shared
 *   function that reads a kernel struct takes `typed`, a constant in each
 *   program, so the compiler keeps one of the two reads.
 *
 * A tracer's C file includes this header once, defines its programs (one per
 * hook and attach method, each body wrapped in PP_COSTED), and emits with
 * pp_on_skb()/pp_emit(), or with PP_RESERVE(), pp_fill_event() and
 * pp_submit() for an event struct of its own.
 */
#ifndef PINGPATH_H
#define PINGPATH_H

#include "vmlinux.h"
#if defined(__TARGET_ARCH_arm64)
/*
 * vmlinux.h is dumped from an x86_64 kernel: CO-RE relocates every kernel
 * type by name at load time, whatever the architecture, but arm64's kprobe
 * context is its register file, which x86 has no type for. bpf_tracing.h
 * reads the arguments of an arm64 kprobe as struct user_pt_regs (the first
 * member of arm64's struct pt_regs, and uapi: its layout is fixed).
 */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

/*
 * PP_RD(typed, src, field) reads src->field (field may be a member path such
 * as nd_net.net). typed (a compile-time constant after inlining) says that
 * src is a BTF-typed pointer of an fentry or tp_btf program: the verifier
 * then allows a plain load, which it guards against faults itself, at the
 * cost of a load (~1 ns) instead of a helper call (~30-40 ns on the
 * machines measured, docs/observer-effect.md). Both are CO-RE relocated.
 * Pointers read typed stay typed, so a chain of PP_RD stays plain loads.
 */
#define PP_RD(typed, src, field) ((typed) ? (src)->field : BPF_CORE_READ(src, field))

#define PP_MAX_IFACES 8
#define PP_MAX_PAIRS 8 /* pp_src_ip/pp_dst_ip plus PP_MAX_PAIRS - 1 more */
#define PP_ETH_HLEN 14
#define PP_VLAN_HLEN 4
#define PP_ETH_P_IP 0x0800
#define PP_ETH_P_8021Q 0x8100
#define PP_ETH_P_8021AD 0x88A8
#define PP_IPPROTO_ICMP 1
#define PP_ICMP_ECHOREPLY 0
#define PP_ICMP_ECHO 8
#define PP_HDR_UNSET ((__u16)~0U)

/* Kinds of ICMP echo packets (pp_pkt.kind, pp_event.kind, pp_echo_kinds bits). */
#define PP_KIND_REQUEST 1 /* type 8 from pp_src_ip to pp_dst_ip */
#define PP_KIND_REPLY 2   /* type 0 from pp_dst_ip to pp_src_ip */

/*
 * Filter configuration. Written by internal/tracer (Filter.apply) through
 * CollectionSpec.Variables; never written by the programs.
 *
 * pp_src_ip/pp_dst_ip: the ping's initiator and target, network byte order.
 *   A request must go src->dst, a reply dst->src. 0 means "any address".
 * pp_echo_kinds: PP_KIND_* bits of the packets to report.
 * pp_icmp_id/pp_icmp_id_set: only this ICMP echo identifier (host order).
 * pp_netns: inode of the tracer's network namespace; 0 = all namespaces.
 * pp_ifindex/pp_n_ifindex: interfaces (in pp_netns) where device-bound
 *   stages may see the packet; pp_n_ifindex == 0 means any interface.
 */
const volatile __u32 pp_src_ip = 0;
const volatile __u32 pp_dst_ip = 0;
const volatile __u8 pp_echo_kinds = PP_KIND_REQUEST | PP_KIND_REPLY;
const volatile __u16 pp_icmp_id = 0;
const volatile __u8 pp_icmp_id_set = 0;
const volatile __u64 pp_netns = 0;
const volatile __u32 pp_ifindex[PP_MAX_IFACES] = {};
const volatile __u32 pp_n_ifindex = 0;
/*
 * pp_more_src_ip/pp_more_dst_ip/pp_n_more_pairs: further (initiator, target)
 * pairs, for a tracer serving several VM pairs at once (a host tracer whose
 * host carries VMs of several pairs). A wanted packet's pair index (0 for
 * pp_src_ip/pp_dst_ip, i + 1 for pp_more_*[i]) goes into pp_pkt.pair and
 * pp_event.pair. With none set (every single-pair tracer) the verifier
 * prunes the loops: a const volatile is a known constant at load time.
 */
const volatile __u32 pp_more_src_ip[PP_MAX_PAIRS - 1] = {};
const volatile __u32 pp_more_dst_ip[PP_MAX_PAIRS - 1] = {};
const volatile __u32 pp_n_more_pairs = 0;

/* A parsed ICMP echo packet. id and seq are in host byte order. */
struct pp_pkt {
	__u32 saddr; /* network byte order */
	__u32 daddr; /* network byte order */
	__u16 id;
	__u16 seq;
	__u8 icmp_type;
	__u8 kind; /* PP_KIND_* */
	__u8 pair; /* index of the matching address pair (pp_more_*) */
};

/*
 * The common event. A tracer either sends it as is or embeds it as the first
 * member of its own event struct (and then passes its own -type to bpf2go).
 * hook is the tracer's own number for the program that fired (the Go side
 * maps hook + kind to a stage); ts is bpf_ktime_get_ns() (CLOCK_MONOTONIC).
 */
struct pp_event {
	__u64 ts;
	__u32 ifindex; /* 0 when the skb had no device yet */
	__u32 pid;     /* tgid */
	__u32 cpu;
	__u16 id;
	__u16 seq;
	__u8 hook;
	__u8 kind;
	__u8 icmp_type;
	__u8 pair; /* pp_pkt.pair */
	__u32 netns;
	char comm[16];
	char ifname[16]; /* "" when the tracer names the device from ifindex */
};

/* Keep struct pp_event in BTF so that bpf2go -type pp_event finds it. */
const struct pp_event *pp_unused_event __attribute__((unused));

/*
 * The events' way to user space: a BPF ring buffer (5.8+), or on kernels
 * without one a perf event array (per-CPU buffers, 4.x). pp_perf_events is
 * set by the Go loader (internal/tracer, Options.EventBuffer) from a probe
 * of the kernel or the --event-buffer flag; the verifier sees it as a
 * constant and drops the other transport's code. The unused map is replaced
 * by the loader with a one-entry placeholder, so a kernel without ring
 * buffers never creates one.
 */
const volatile __u8 pp_perf_events = 0;

/*
 * Ring buffer to user space. Its size is set by the Go loader
 * (tracer.Options.RingBytes) before load; the value here is the default.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} pp_events SEC(".maps");

/* Perf event array to user space (one buffer per CPU, opened by the reader). */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} pp_perf SEC(".maps");

/*
 * Events lost, per CPU. Slot PP_LOST_ALL: every event a program could not
 * send (ring buffer full, perf buffer full or missing), reported as the
 * trailer's ringbuf_lost. Slot PP_LOST_PERF_FULL: those of them that a full
 * perf buffer refused (-ENOSPC), which the kernel also reports to the reader
 * as lost-sample records; kernels before 5.4 return 0 from
 * bpf_perf_event_output even then, and only those records tell (the Go side
 * adds the records not already counted here).
 */
#define PP_LOST_ALL 0
#define PP_LOST_PERF_FULL 1
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} pp_lost SEC(".maps");

static __always_inline void pp_count_lost_in(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&pp_lost, &slot);
	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline void pp_count_lost(void)
{
	pp_count_lost_in(PP_LOST_ALL);
}

/*
 * Cost accounting. Every program runs its body inside PP_COSTED(slot, ...):
 * it counts the run in its per-CPU slot and times a random sample of runs
 * with two clock reads, so user space (internal/tracer, cost.go) estimates
 * the programs' run time as runs x (timed ns / timed runs) without the
 * kernel's global bpf_stats switch, which would tax every BPF program on the
 * host. The slot is the tracer's hook number (< PP_COST_SLOTS), so each hook
 * is sampled on its own: a hook that always fires right after another one
 * cannot alias with a fixed sampling period.
 *
 * The pings' own runs are accounted exactly, not sampled: a run that
 * reserves an event (PP_RESERVE: a packet of the traced pings) notes the
 * time of its first reservation in its CPU's pp_cpu.match_ts, and its end
 * counts it in matched/matched_ns with the time from there. A sample would
 * see the few hundred runs of a ping series among a busy host's millions
 * only by luck (one run in 75 timed under a flood: no timed ping run at all
 * one time in fifteen). The part of a matched run before its reservation
 * (telling the packet is ours) is what every run pays; user space prices
 * it at the unrelated runs' sampled mean. A timed run that matched is also
 * counted in timed_matched, so that mean is of unrelated runs only.
 *
 * pp_cost_mask sets the sample rate: after each timed run the slot skips a
 * random number of runs in [0, mask], so about one run in mask/2 + 1 is
 * timed. User space sets it from the run rate every 500 ms (every run is
 * timed on a quiet host, a few thousand runs a second on a busy one); until
 * its first look one run in 32 is, so that a tracer started into a flood
 * does not time a million runs a second meanwhile.
 *
 * One per-CPU entry holds every slot and the CPU's event counters, so a
 * run looks up one map value for all of it: the end of an unrelated run
 * pays a load and a branch for the match check, no second lookup.
 */
#define PP_COST_SLOTS 32

struct pp_cost {
	__u64 runs;     /* program runs */
	__u64 timed;    /* runs that were timed */
	__u64 timed_ns; /* their run time (bpf_ktime_get_ns, body only) */
	__u64 skip;     /* runs left before the next timed one */
	/* Timed runs that reserved an event, and their run time. */
	__u64 timed_matched;
	__u64 timed_matched_ns;
	/* Every run that reserved an event, and its time from the first
	 * reservation to its end (runs interrupted for longer than
	 * PP_COST_MAX_RUN_NS are counted without their time). */
	__u64 matched;
	__u64 matched_ns;
};

struct pp_cpu {
	struct pp_cost slot[PP_COST_SLOTS];
	__u64 unwoken;  /* events since the CPU last woke the reader (pp_submit_flags) */
	__u64 match_ts; /* first reservation of the running program; 0: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pp_cpu);
} pp_cost SEC(".maps");

/* Written by user space while the programs run (not const). */
volatile __u32 pp_cost_mask = 63;

static __always_inline struct pp_cpu *pp_this_cpu(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pp_cost, &zero);
}

struct pp_cost_timer {
	struct pp_cpu *cpu;
	struct pp_cost *c; /* NULL: not accounted */
	__u64 t0;          /* 0: this run is not timed */
};

static __always_inline void pp_cost_begin(struct pp_cost_timer *t, __u32 slot)
{
	/* Every field set on every path: clang may spill the whole timer, and
	 * the verifier refuses to copy a register never written. */
	t->t0 = 0;
	t->c = NULL;
	t->cpu = pp_this_cpu();
	if (!t->cpu || slot >= PP_COST_SLOTS)
		return;
	struct pp_cost *c = &t->cpu->slot[slot];
	t->c = c;
	c->runs++; /* per-CPU: no atomics needed */
	if (c->skip) {
		c->skip--;
		return;
	}
	__u32 mask = pp_cost_mask;
	c->skip = mask ? bpf_get_prandom_u32() & mask : 0;
	t->t0 = bpf_ktime_get_ns();
}

/*
 * A timed run longer than this was not working all that time: programs run
 * with migration disabled but preemptibly on preemptible kernels (syscall
 * tracepoints always), and a VM's vCPU can be descheduled in the middle of
 * one. No pingpath program does a millisecond of work (a few µs at most,
 * tens under TCG), so such a run is left out of the sample (it still counts
 * as a run, priced at the sample's mean): one 200 ms stall among the few
 * runs of a quiet start made a tracer detach itself over --max-cpu.
 */
#define PP_COST_MAX_RUN_NS 1000000

static __always_inline void pp_cost_end(struct pp_cost_timer *t)
{
	struct pp_cost *c = t->c;
	if (!c || !t->cpu)
		return;
	__u64 match = t->cpu->match_ts;
	if (!match && !t->t0)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (match) {
		t->cpu->match_ts = 0;
		c->matched++;
		if (now - match <= PP_COST_MAX_RUN_NS)
			c->matched_ns += now - match;
	}
	if (!t->t0)
		return;
	__u64 ns = now - t->t0;
	if (ns > PP_COST_MAX_RUN_NS)
		return;
	c->timed++;
	c->timed_ns += ns;
	if (match) {
		c->timed_matched++;
		c->timed_matched_ns += ns;
	}
}

/* PP_COSTED(slot, expr): evaluates the int expression expr (a program's
 * whole body) as one accounted run of slot. */
#define PP_COSTED(slot, expr)                                                                    \
	({                                                                                       \
		struct pp_cost_timer __pp_t;                                                     \
		pp_cost_begin(&__pp_t, (slot));                                                  \
		int __pp_r = (expr);                                                             \
		pp_cost_end(&__pp_t);                                                            \
		__pp_r;                                                                          \
	})

/*
 * The struct net of the tracer's namespace, learned from the first packet
 * whose namespace inode matches pp_netns. Afterwards the namespace check is
 * a pointer compare (one probe read less per packet). The namespace cannot
 * go away while the tracer, which lives in it, runs.
 */
struct net *pp_own_net = NULL;

/* pp_net_ok: net is the tracer's namespace (or no namespace filter is set). */
static __always_inline int pp_net_ok(struct net *net, int typed)
{
	if (!pp_netns)
		return 1;
	if (!net)
		return 0;
	struct net *own = pp_own_net;
	if (own)
		return net == own;
	if (PP_RD(typed, net, ns.inum) != (__u32)pp_netns)
		return 0;
	pp_own_net = net;
	return 1;
}

/* How a device check passed (pp_netns_ok, pp_dev_ok); 0: it did not. */
#define PP_DEV_NO 0
#define PP_DEV_READ 1       /* checked by reading the device */
#define PP_DEV_LEARNED_NET 2 /* in pp_net_devs: pp_dev_recheck on a match */
#define PP_DEV_LEARNED_IF 3  /* in pp_dev_seen: pp_dev_recheck on a match */

/*
 * Devices found in the tracer's namespace, so that the namespace check of
 * their packets is a pointer compare instead of a read of dev->nd_net. A
 * matched packet's device is checked again by reading it (pp_dev_recheck):
 * a freed device whose memory went to another device cannot produce events.
 */
#define PP_NET_DEVS 4
struct net_device *pp_net_devs[PP_NET_DEVS] = {};

/* pp_dev_in_net: dev (not NULL) is in the tracer's namespace. Returns PP_DEV_*. */
static __always_inline int pp_dev_in_net(struct net_device *dev, int typed)
{
#pragma unroll
	for (int i = 0; i < PP_NET_DEVS; i++)
		if (pp_net_devs[i] == dev)
			return PP_DEV_LEARNED_NET;
	if (!pp_net_ok(PP_RD(typed, dev, nd_net.net), typed))
		return PP_DEV_NO;
#pragma unroll
	for (int i = 0; i < PP_NET_DEVS; i++) {
		if (!pp_net_devs[i]) {
			pp_net_devs[i] = dev; /* a race loses a slot at worst */
			break;
		}
	}
	return PP_DEV_READ;
}

/*
 * pp_netns_ok: the skb belongs to the tracer's namespace (or no filter set).
 * Returns PP_DEV_* (PP_DEV_READ when there is no filter).
 */
static __always_inline int pp_netns_ok(struct sk_buff *skb, struct net_device *dev, int typed)
{
	if (!pp_netns)
		return PP_DEV_READ;
	if (dev)
		return pp_dev_in_net(dev, typed);
	struct sock *sk = PP_RD(typed, skb, sk);
	if (!sk)
		return PP_DEV_NO;
	return pp_net_ok(PP_RD(typed, sk, __sk_common.skc_net.net), typed) ? PP_DEV_READ : PP_DEV_NO;
}

/* pp_ifindex_ok: ifindex is one of the configured interfaces (or no filter set). */
static __always_inline int pp_ifindex_ok(__u32 ifindex)
{
	if (!pp_n_ifindex)
		return 1;
#pragma unroll
	for (int i = 0; i < PP_MAX_IFACES; i++) {
		if (i >= pp_n_ifindex)
			break;
		if (pp_ifindex[i] == ifindex)
			return 1;
	}
	return 0;
}

/*
 * The configured devices (pp_ifindex), learned from the first packet seen on
 * each after checking its index and namespace. Afterwards a configured
 * device is recognised by a pointer compare, and once all are known any
 * other device is turned away without reading it: no probe read for the
 * device check of most packets. Only with a namespace filter (indexes are
 * per namespace). A matched packet's device index is read again
 * (pp_dev_recheck), so a freed device whose memory went to another cannot
 * produce events; a configured device deleted and re-created with the same
 * index needs a tracer restart (as would one with a new index).
 */
struct net_device *pp_dev_seen[PP_MAX_IFACES] = {};

/*
 * pp_dev_ok: dev is a configured device (pp_n_ifindex > 0) of the tracer's
 * namespace. Returns PP_DEV_*.
 */
static __always_inline int pp_dev_ok(struct net_device *dev, int typed)
{
	if (!dev)
		return PP_DEV_NO;
	if (!pp_netns)
		return pp_ifindex_ok(PP_RD(typed, dev, ifindex)) ? PP_DEV_READ : PP_DEV_NO;
	__u32 known = 0;
#pragma unroll
	for (int i = 0; i < PP_MAX_IFACES; i++) {
		if (i >= pp_n_ifindex)
			break;
		struct net_device *d = pp_dev_seen[i];
		if (d == dev)
			return PP_DEV_LEARNED_IF;
		known += d != NULL;
	}
	if (known >= pp_n_ifindex)
		return PP_DEV_NO; /* every configured device is known: not one of them */
	__u32 ifindex = PP_RD(typed, dev, ifindex);
#pragma unroll
	for (int i = 0; i < PP_MAX_IFACES; i++) {
		if (i >= pp_n_ifindex)
			break;
		if (pp_ifindex[i] != ifindex)
			continue;
		if (!pp_net_ok(PP_RD(typed, dev, nd_net.net), typed))
			return PP_DEV_NO;
		pp_dev_seen[i] = dev;
		return PP_DEV_READ;
	}
	return PP_DEV_NO;
}

/*
 * pp_dev_recheck: a device recognised by its pointer (how, from pp_dev_ok
 * or pp_netns_ok) still is what it was learned as: for matched packets only.
 */
static __always_inline int pp_dev_recheck(struct net_device *dev, int how, int typed)
{
	if (how == PP_DEV_LEARNED_IF)
		return pp_ifindex_ok(PP_RD(typed, dev, ifindex));
	if (how == PP_DEV_LEARNED_NET)
		return pp_net_ok(PP_RD(typed, dev, nd_net.net), typed);
	return how != PP_DEV_NO;
}

/* pp_pair_ok: pkt goes from src to dst (a request) or back (a reply); a zero
 * address matches any. */
static __always_inline int pp_pair_ok(struct pp_pkt *pkt, __u32 src, __u32 dst)
{
	__u32 from = pkt->kind == PP_KIND_REQUEST ? src : dst;
	__u32 to = pkt->kind == PP_KIND_REQUEST ? dst : src;
	return (!from || pkt->saddr == from) && (!to || pkt->daddr == to);
}

/* pp_more_pair: pkt belongs to one of the further pairs; sets pkt->pair.
 * A bounded loop, not unrolled: seven copies of it at every parse site
 * would double the objects for what only a multi-pair host tracer runs. */
static __always_inline int pp_more_pair(struct pp_pkt *pkt)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < PP_MAX_PAIRS - 1; i++) {
		if (i >= pp_n_more_pairs)
			break;
		if (pp_pair_ok(pkt, pp_more_src_ip[i], pp_more_dst_ip[i])) {
			pkt->pair = i + 1;
			return 1;
		}
	}
	return 0;
}

/* pp_more_addr: addr is an end of one of the further pairs. */
static __always_inline int pp_more_addr(__u32 addr)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < PP_MAX_PAIRS - 1; i++) {
		if (i >= pp_n_more_pairs)
			break;
		if (addr == pp_more_src_ip[i] || addr == pp_more_dst_ip[i])
			return 1;
	}
	return 0;
}

/*
 * pp_classify fills kind from the addresses and ICMP type and applies the
 * address, kind and id filters. Returns 1 when the packet is wanted.
 */
static __always_inline int pp_classify(struct pp_pkt *pkt)
{
	if (pkt->icmp_type == PP_ICMP_ECHO)
		pkt->kind = PP_KIND_REQUEST;
	else if (pkt->icmp_type == PP_ICMP_ECHOREPLY)
		pkt->kind = PP_KIND_REPLY;
	else
		return 0;
	if (!(pp_echo_kinds & pkt->kind))
		return 0;
	pkt->pair = 0;
	if (!pp_pair_ok(pkt, pp_src_ip, pp_dst_ip) && !pp_more_pair(pkt))
		return 0;
	if (pp_icmp_id_set && pkt->id != pp_icmp_id)
		return 0;
	return 1;
}

/*
 * pp_parse_ip_hdr reads the IPv4 header at head+off and the ICMP echo header
 * behind it. Returns 1 for a wanted ICMP echo packet, 0 for another IPv4
 * packet, -1 when head+off does not hold an IPv4 header at all.
 */
static __always_inline int pp_parse_ip_hdr(unsigned char *head, __u32 off, struct pp_pkt *pkt)
{
	/* One read for the IPv4 header without options and the ICMP header
	 * behind it (past a short packet's end it reads the skb's own
	 * tailroom or shared info, which is harmless). */
	struct {
		struct iphdr ip;
		struct icmphdr icmp;
	} h;
	if (bpf_probe_read_kernel(&h, sizeof(h), head + off))
		return 0;
	if (h.ip.version != 4 || h.ip.ihl < 5)
		return -1;
	if (h.ip.protocol != PP_IPPROTO_ICMP)
		return 0;
	if (h.ip.frag_off & bpf_htons(0x1fff)) /* not the first fragment: no ICMP header */
		return 0;
	pkt->saddr = h.ip.saddr;
	pkt->daddr = h.ip.daddr;
	if (pp_src_ip && pkt->saddr != pp_src_ip && pkt->saddr != pp_dst_ip && !pp_more_addr(pkt->saddr))
		return 0;
	if (h.ip.ihl != 5 && bpf_probe_read_kernel(&h.icmp, sizeof(h.icmp), head + off + h.ip.ihl * 4))
		return 0;
	pkt->icmp_type = h.icmp.type;
	pkt->id = bpf_ntohs(h.icmp.un.echo.id);
	pkt->seq = bpf_ntohs(h.icmp.un.echo.sequence);
	return pp_classify(pkt);
}

/*
 * pp_parse_ip reads the IPv4 header at head+off and the ICMP echo header
 * behind it. Returns 1 for a wanted ICMP echo packet, else 0.
 */
static __always_inline int pp_parse_ip(unsigned char *head, __u32 off, struct pp_pkt *pkt)
{
	return pp_parse_ip_hdr(head, off, pkt) > 0;
}

#define PP_ARPHRD_ETHER 1

/* pp_skb_ether: the skb's device has Ethernet headers. */
static __always_inline int pp_skb_ether(struct sk_buff *skb, int typed)
{
	struct net_device *dev = PP_RD(typed, skb, dev);
	return dev && PP_RD(typed, dev, type) == PP_ARPHRD_ETHER;
}

/* The skb fields a parse needs. */
struct pp_skb_hdrs {
	unsigned char *head;
	unsigned char *data;
	__u32 tail; /* end of the linear data, from head (64-bit kernels) */
	__u32 end;  /* skb_shared_info, from head */
	__u16 nh;   /* network_header */
	__u16 mh;   /* mac_header */
	__be16 proto;
};

/*
 * pp_skb_hdrs reads protocol, network_header, mac_header, tail, end, head
 * and data: typed, with plain loads. Otherwise, since they lie within a few
 * dozen bytes of each other (protocol .. data: 32 bytes on 5.x/6.x), they
 * are fetched with one probe read; the CO-RE offsets below are load-time
 * constants, and kernels where the window does not fit take the
 * field-by-field path instead (the verifier drops the other one). A tracer
 * that does not use tail and end pays nothing for them (dead stores).
 * Returns 0 when the skb cannot be read.
 */
static __always_inline int pp_skb_hdrs(struct sk_buff *skb, struct pp_skb_hdrs *h, int typed)
{
	if (typed) {
		h->proto = skb->protocol;
		h->nh = skb->network_header;
		h->mh = skb->mac_header;
		h->head = skb->head;
		h->data = skb->data;
		h->tail = skb->tail;
		h->end = skb->end;
		return 1;
	}
	__u32 base = bpf_core_field_offset(struct sk_buff, protocol);
	__u32 o_nh = bpf_core_field_offset(struct sk_buff, network_header) - base;
	__u32 o_mh = bpf_core_field_offset(struct sk_buff, mac_header) - base;
	__u32 o_head = bpf_core_field_offset(struct sk_buff, head) - base;
	__u32 o_data = bpf_core_field_offset(struct sk_buff, data) - base;
	__u32 o_tail = bpf_core_field_offset(struct sk_buff, tail) - base;
	__u32 o_end = bpf_core_field_offset(struct sk_buff, end) - base;
	if (o_nh + 2 <= 48 && o_mh + 2 <= 48 && o_head + 8 <= 48 && o_data + 8 <= 48 && o_tail + 4 <= 48 &&
	    o_end + 4 <= 48 && bpf_core_field_size(struct sk_buff, network_header) == 2 &&
	    bpf_core_field_size(struct sk_buff, mac_header) == 2 && bpf_core_field_size(struct sk_buff, tail) == 4) {
		__u8 win[48];
		if (bpf_probe_read_kernel(win, sizeof(win), (void *)skb + base))
			return 0;
		/* memcpy: the fields' offsets within win need not be aligned,
		 * and the verifier rejects misaligned stack loads (6.1). */
		__builtin_memcpy(&h->proto, win, sizeof(h->proto));
		__builtin_memcpy(&h->nh, win + o_nh, sizeof(h->nh));
		__builtin_memcpy(&h->mh, win + o_mh, sizeof(h->mh));
		__builtin_memcpy(&h->head, win + o_head, sizeof(h->head));
		__builtin_memcpy(&h->data, win + o_data, sizeof(h->data));
		__builtin_memcpy(&h->tail, win + o_tail, sizeof(h->tail));
		__builtin_memcpy(&h->end, win + o_end, sizeof(h->end));
	} else {
		h->proto = BPF_CORE_READ(skb, protocol);
		h->nh = BPF_CORE_READ(skb, network_header);
		h->mh = BPF_CORE_READ(skb, mac_header);
		h->head = BPF_CORE_READ(skb, head);
		h->data = BPF_CORE_READ(skb, data);
		h->tail = BPF_CORE_READ(skb, tail);
		h->end = BPF_CORE_READ(skb, end);
	}
	return 1;
}

static __always_inline int pp_is_vlan_proto(__be16 proto)
{
	return proto == bpf_htons(PP_ETH_P_8021Q) || proto == bpf_htons(PP_ETH_P_8021AD);
}

/*
 * pp_parse_skb finds the IPv4/ICMP echo header of skb.
 *
 * A set skb->protocol other than IPv4 or a VLAN type ends the parse without
 * reading the packet (0 is let through: __ip_local_out sets it late).
 * When network_header is set (IP output, xmit, and receive after
 * __netif_receive_skb_core) it is trusted: it points at the IP header even if
 * a software VLAN tag sits between the MAC and IP headers. When it is not set
 * yet (driver receive before __netif_receive_skb_core resets it; 0 after
 * allocation), or is stale and does not point past the MAC header at an IPv4
 * header (a frame built by an AF_PACKET sender and forwarded by veth), the
 * packet starts at skb->data, or at skb->data + ETH_HLEN when data still
 * points at the MAC header; up to two 802.1Q/802.1ad tags left in the data
 * (no hardware VLAN offload) are skipped using skb->protocol or the Ethernet
 * type. Returns 1 for a wanted ICMP echo packet.
 */
static __always_inline int pp_parse_skb(struct sk_buff *skb, struct pp_pkt *pkt, int typed)
{
	struct pp_skb_hdrs h;
	if (!pp_skb_hdrs(skb, &h, typed))
		return 0;
	unsigned char *head = h.head, *data = h.data;
	__u16 nh = h.nh, mh = h.mh;
	__be16 proto = h.proto;
	if (proto && proto != bpf_htons(PP_ETH_P_IP) && !pp_is_vlan_proto(proto))
		return 0;
	__u32 off;
	int trusted = 0;
	if (nh != 0 && nh != PP_HDR_UNSET) {
		/* nh == mh is right for L3 devices (tun, ipip) but stale on
		 * Ethernet (rare: costs one more read); nh < mh is always stale. */
		trusted = mh == PP_HDR_UNSET || nh > mh || (nh == mh && !pp_skb_ether(skb, typed));
	}
	if (trusted) {
		off = nh;
		int r = pp_parse_ip_hdr(head, off, pkt);
		/* Not IPv4 at nh: a TAP sets nh right after the Ethernet header,
		 * at the VLAN tags of a tagged frame. */
		if (r >= 0 || (proto != bpf_htons(PP_ETH_P_8021Q) && proto != bpf_htons(PP_ETH_P_8021AD)))
			return r > 0;
	} else {
		off = data - head;
		if (mh != PP_HDR_UNSET && off == mh) {
			struct ethhdr eth;
			if (bpf_probe_read_kernel(&eth, sizeof(eth), head + off))
				return 0;
			proto = eth.h_proto;
			off += PP_ETH_HLEN;
		}
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(PP_ETH_P_8021Q) && proto != bpf_htons(PP_ETH_P_8021AD))
			break;
		struct vlan_hdr vh;
		if (bpf_probe_read_kernel(&vh, sizeof(vh), head + off))
			return 0;
		proto = vh.h_vlan_encapsulated_proto;
		off += PP_VLAN_HLEN;
	}
	if (proto != bpf_htons(PP_ETH_P_IP))
		return 0;
	return pp_parse_ip(head, off, pkt);
}

/*
 * pp_filter_skb is the whole early filter for an skb hook: the device (when
 * check_dev is set and interfaces are configured: a pointer compare once
 * learned, which also vouches for the namespace) or else the namespace (a
 * pointer compare with pp_own_net), then the packet itself: skb->protocol,
 * then the IPv4 and ICMP headers in one read. Unrelated packets leave after
 * one to three probe reads (typed: plain loads and at most one probe read,
 * of the packet). On success *devp is the skb's device (may be NULL when
 * check_dev is 0).
 */
static __always_inline int pp_filter_skb(struct sk_buff *skb, struct pp_pkt *pkt, int check_dev,
					 struct net_device **devp, int typed)
{
	struct net_device *dev = PP_RD(typed, skb, dev);
	*devp = dev;
	if (check_dev && pp_n_ifindex) {
		/* A configured device is in our namespace (pp_dev_ok). */
		int how = pp_dev_ok(dev, typed);
		return how && pp_parse_skb(skb, pkt, typed) && pp_dev_recheck(dev, how, typed);
	}
	int how = pp_netns_ok(skb, dev, typed);
	return how && pp_parse_skb(skb, pkt, typed) && pp_dev_recheck(dev, how, typed);
}

/*
 * pp_submit_flags decides whether submitting an event wakes the tracer.
 * A wake-up is an interrupt plus a context switch, and where the hook runs
 * preemptibly (syscall tracepoints on the sender's send path) the woken
 * tracer can preempt the very ping being measured. The tracer polls the
 * ring every 100 ms anyway, so events are submitted silently, and every
 * PP_WAKE_EVERY-th event of a CPU wakes the reader so that a burst cannot
 * fill the ring meanwhile (512 events of at most 112 bytes: ~56 KiB per CPU
 * of the 4 MiB ring). Counted per CPU rather than asked of the ring
 * (bpf_ringbuf_query(BPF_RB_AVAIL_DATA), as before 2026-12-06): the query
 * reads the consumer position, a cache line the reader on another CPU
 * writes, and cost ~600 ns per event, more than the rest of a matched run
 * together (BenchmarkBPFRunTime in internal/tracer/vm).
 */
#define PP_WAKE_EVERY 512

static __always_inline __u64 pp_submit_flags(struct pp_cpu *n)
{
	if (!n || ++n->unwoken < PP_WAKE_EVERY)
		return BPF_RB_NO_WAKEUP;
	n->unwoken = 0;
	return BPF_RB_FORCE_WAKEUP;
}

/*
 * PP_RESERVE(type, e) declares `type *e`, an event to fill and send with
 * pp_submit(ctx, e), or NULL when the ring buffer is full (counted in
 * pp_lost). With the ring buffer, e is reserved in it; with the perf event
 * array, e is a zeroed buffer on the program's stack, copied out by
 * pp_submit (a per-CPU scratch map would be overwritten by a program that
 * preempts or interrupts this one before it submits). These two are the one
 * way events leave, so every event of every tracer goes through either
 * transport and its losses are counted the same way.
 */
#define PP_RESERVE(type, e)                                                                      \
	type __pp_stack_##e;                                                                     \
	type *e = pp_perf_events ? pp_stack_event(&__pp_stack_##e, sizeof(type)) : pp_ring_reserve(sizeof(type))

/* pp_match_begins notes that the running program began an event: its run
 * is one of the pings' (pp_cost_end accounts it from now). */
static __always_inline void pp_match_begins(void)
{
	struct pp_cpu *cpu = pp_this_cpu();
	if (cpu && !cpu->match_ts)
		cpu->match_ts = bpf_ktime_get_ns();
}

static __always_inline void *pp_ring_reserve(__u32 size)
{
	pp_match_begins();
	void *e = bpf_ringbuf_reserve(&pp_events, size, 0);
	if (!e)
		pp_count_lost();
	return e;
}

static __always_inline void *pp_stack_event(void *buf, __u32 size)
{
	pp_match_begins();
	__builtin_memset(buf, 0, size); /* the helper may read only written stack */
	return buf;
}

/*
 * pp_submit(ctx, e) sends an event from PP_RESERVE: ctx is the program's
 * context (bpf_perf_event_output needs it). A perf buffer that is full (or
 * a CPU without one open) loses the event, counted in pp_lost like a full
 * ring buffer. The perf reader wakes after PP_WAKE_EVERY events of a CPU
 * (its wakeup_events), as the ring buffer's pp_submit_flags.
 */
#define pp_submit(ctx, e) pp_submit_size((ctx), (e), sizeof(*(e)))

static __always_inline void pp_submit_size(void *ctx, void *e, __u64 size)
{
	if (pp_perf_events) {
		long err = bpf_perf_event_output(ctx, &pp_perf, BPF_F_CURRENT_CPU, e, size);
		if (err) {
			pp_count_lost();
			if (err == -28 /* -ENOSPC */)
				pp_count_lost_in(PP_LOST_PERF_FULL);
		}
		return;
	}
	bpf_ringbuf_submit(e, pp_submit_flags(pp_this_cpu()));
}

/*
 * pp_fill_event fills the common event e for pkt seen at hook at time ts.
 * dev may be NULL. A tracer with its own event struct reserves it
 * (PP_RESERVE), fills its pp_event member with this and its own fields, and
 * calls pp_submit.
 */
static __always_inline void pp_fill_event(struct pp_event *e, struct pp_pkt *pkt, __u8 hook,
					  struct net_device *dev, __u32 netns, __u64 ts, int typed)
{
	e->ts = ts;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->cpu = bpf_get_smp_processor_id();
	e->id = pkt->id;
	e->seq = pkt->seq;
	e->hook = hook;
	e->kind = pkt->kind;
	e->icmp_type = pkt->icmp_type;
	e->pair = pkt->pair;
	e->netns = netns;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* The device's name is left to user space (by index, in the tracer's
	 * namespace): one probe read less per event. */
	e->ifindex = dev ? PP_RD(typed, dev, ifindex) : 0;
	e->ifname[0] = 0;
}

/*
 * pp_emit sends one event for pkt seen at hook from the program whose
 * context is ctx. dev may be NULL. Returns 0; a full buffer is counted in
 * pp_lost.
 */
static __always_inline int pp_emit(void *ctx, struct pp_pkt *pkt, __u8 hook, struct net_device *dev, __u32 netns,
				   int typed)
{
	PP_RESERVE(struct pp_event, e);
	if (!e)
		return 0;
	pp_fill_event(e, pkt, hook, dev, netns, bpf_ktime_get_ns(), typed);
	pp_submit(ctx, e);
	return 0;
}

/*
 * pp_on_skb is the body of a typical skb hook: filter, then emit. Tracers
 * call it from their per-method wrappers (fentry/kprobe/raw_tracepoint).
 */
static __always_inline int pp_on_skb(void *ctx, struct sk_buff *skb, __u8 hook, int check_dev, int typed)
{
	struct pp_pkt pkt = {};
	struct net_device *dev;
	if (!skb || !pp_filter_skb(skb, &pkt, check_dev, &dev, typed))
		return 0;
	return pp_emit(ctx, &pkt, hook, dev, pp_netns, typed);
}

/*
 * Wrappers for the attach methods of a hook whose skb is argument N
 * (1-based) of the kernel function / tracepoint. The Go side attaches
 * fentry and tp_btf programs by setting AttachTo, kprobes by symbol, raw
 * tracepoints by name, so one wrapper serves every target with the same
 * argument layout. fentry and tp_btf read typed (PP_RD). Each run is
 * accounted in the cost slot of its hook. The _FN forms run body instead of
 * pp_on_skb: a function with pp_on_skb's parameters, for a hook that does
 * more than filter and emit.
 */
#define PP_FENTRY_SKB1_FN(name, hook, check_dev, body)                                           \
	SEC("fentry") int BPF_PROG(name, struct sk_buff *skb)                                    \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, skb, hook, check_dev, 1));                           \
	}
#define PP_FENTRY_SKB3_FN(name, hook, check_dev, body)                                           \
	SEC("fentry") int BPF_PROG(name, void *a1, void *a2, struct sk_buff *skb)                \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, skb, hook, check_dev, 1));                           \
	}
#define PP_KPROBE_SKB1_FN(name, hook, check_dev, body)                                           \
	SEC("kprobe") int name(struct pt_regs *ctx)                                              \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx), hook, check_dev, 0)); \
	}
#define PP_KPROBE_SKB3_FN(name, hook, check_dev, body)                                           \
	SEC("kprobe") int name(struct pt_regs *ctx)                                              \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, (struct sk_buff *)PT_REGS_PARM3(ctx), hook, check_dev, 0)); \
	}
#define PP_RAW_TP_SKB1_FN(name, hook, check_dev, body)                                           \
	SEC("raw_tracepoint") int name(struct bpf_raw_tracepoint_args *ctx)                      \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, (struct sk_buff *)ctx->args[0], hook, check_dev, 0)); \
	}
/* The same tracepoints through BTF (tp_btf, 5.5+ with kernel BTF): typed. */
#define PP_TP_BTF_SKB1_FN(name, hook, check_dev, body)                                           \
	SEC("tp_btf") int BPF_PROG(name, struct sk_buff *skb)                                    \
	{                                                                                        \
		return PP_COSTED(hook, body(ctx, skb, hook, check_dev, 1));                           \
	}
#define PP_FENTRY_SKB1(name, hook, check_dev) PP_FENTRY_SKB1_FN(name, hook, check_dev, pp_on_skb)
#define PP_FENTRY_SKB3(name, hook, check_dev) PP_FENTRY_SKB3_FN(name, hook, check_dev, pp_on_skb)
#define PP_KPROBE_SKB1(name, hook, check_dev) PP_KPROBE_SKB1_FN(name, hook, check_dev, pp_on_skb)
#define PP_KPROBE_SKB3(name, hook, check_dev) PP_KPROBE_SKB3_FN(name, hook, check_dev, pp_on_skb)
#define PP_RAW_TP_SKB1(name, hook, check_dev) PP_RAW_TP_SKB1_FN(name, hook, check_dev, pp_on_skb)
#define PP_TP_BTF_SKB1(name, hook, check_dev) PP_TP_BTF_SKB1_FN(name, hook, check_dev, pp_on_skb)

#endif /* PINGPATH_H */
