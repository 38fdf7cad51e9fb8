//go:build ignore

// VM tracer: the kernel_icmp_rtt replacement. Each program below observes one
// hook on one attach method and emits a struct pp_event tagged with its hook
// number; the Go side (vm.go) maps hook + echo kind to a stage
// (p1_start, p1_end, p2_start, p2_end) according to the direction, and the
// ladder there decides which programs are loaded at all.
//
// Hooks:
//   VM_HOOK_IP_OUT     ip_local_out / __ip_local_out        fentry, kprobe
//   VM_HOOK_DEV_QUEUE  dev_queue_xmit                       fentry, kprobe (__dev_queue_xmit), raw_tp net_dev_queue
//   VM_HOOK_NETIF_RX   netif_receive_skb                    raw_tp netif_receive_skb
//   VM_HOOK_ICMP_RCV   icmp_rcv                             fentry, kprobe
//   VM_HOOK_SENDTO     sendto(2)/sendmsg(2) entry of an echo request, sent in dev_queue_xmit's event
//                                                           tracepoint syscalls/sys_enter_sendto, sys_enter_sendmsg
//   VM_HOOK_CONSUME    skb freed at the end of icmp_rcv     raw_tp consume_skb, kfree_skb (location inside icmp_rcv)
//   VM_HOOK_FIB_IN     request's input route lookup         raw_tp fib_table_lookup
//   VM_HOOK_FIB_OUT    reply's output route lookup          raw_tp fib_table_lookup
// The last two carry no skb: they take the id/seq of the echo request this
// CPU is processing (recorded at netif_receive_skb), which is sound because
// netif_receive_skb → ip_rcv → icmp_rcv → icmp_reply → dev_queue_xmit runs
// in one softirq pass on one CPU.

#include "pingpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define VM_HOOK_IP_OUT 1
#define VM_HOOK_DEV_QUEUE 2
#define VM_HOOK_NETIF_RX 3
#define VM_HOOK_ICMP_RCV 4
#define VM_HOOK_SENDTO 5
#define VM_HOOK_CONSUME 6
#define VM_HOOK_FIB_IN 7
#define VM_HOOK_FIB_OUT 8

#define VM_LOOPBACK_IFINDEX 1
/* How long the request a CPU is processing stays its "current" one. */
#define VM_CUR_MAX_AGE_NS 10000000ULL

/*
 * Text ranges [start, end) of the functions that free an echo reply at the
 * end of ICMP processing (icmp_rcv, ping_rcv), from kallsyms. No range set =
 * no location check.
 */
#define VM_FREE_FUNCS 2
/* consume_skb passes its location only since 6.3; older: owner check instead. */
const volatile __u8 vm_consume_has_loc = 1;
const volatile __u64 vm_free_start[VM_FREE_FUNCS] = {};
const volatile __u64 vm_free_end[VM_FREE_FUNCS] = {};

/* The echo request this CPU last saw at netif_receive_skb (rx stages FIB_*). */
struct vm_cur {
	__u64 ts;
	__u16 id;
	__u16 seq;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vm_cur);
} vm_cur_req SEC(".maps");

/* ---- ip_local_out / __ip_local_out (struct net *, struct sock *, struct sk_buff *) ---- */
PP_FENTRY_SKB3(vm_fentry_ip_local_out, VM_HOOK_IP_OUT, 0)
PP_FENTRY_SKB3(vm_fentry_ip_local_out_inner, VM_HOOK_IP_OUT, 0)
PP_KPROBE_SKB3(vm_kprobe_ip_local_out, VM_HOOK_IP_OUT, 0)

/*
 * The sender's sendto(2)/sendmsg(2) entry, where neither fentry nor kprobe
 * reaches ip_local_out: the syscall tracepoint notes only when a send began,
 * in a slot of the sending thread's own, and dev_queue_xmit, which sees the
 * echo request that send built (in the same thread: the syscall builds and
 * queues the packet itself), hands that time to user space with the
 * packet's own addresses, id and seq in its event (struct vm_event).
 * Resolving the packet at the syscall instead (destination and ICMP header
 * from user memory, a ping socket's id from the socket behind the fd: seven
 * dependent reads from the task) cost 8.3-9.6 µs a run with pings 10 ms
 * apart, in the ping's own send; noting costs a slot write. A send whose
 * packet another task queues (the first ping to a neighbour not yet
 * resolved, when the ARP reply is processed elsewhere) or whose slot another
 * thread took meanwhile (thread ids equal modulo VM_SEND_SLOTS, sending at
 * the same time) has no start stamp: missing, never wrong.
 *
 * Slots are per thread, not per CPU: a ping preempted inside its send (at
 * the user copy's resched point) by a task that sends too, or moved to
 * another CPU, keeps its slot. 64 bytes each, so that two CPUs' sends share
 * no cache line. The writer clears the owner before it writes the time and
 * the reader reads the owner on both sides of the time, so a slot another
 * thread is rewriting is never taken for this one's.
 */
#define VM_SEND_MAX_AGE_NS 50000000ULL
#define VM_SEND_SLOTS 256
/* Set by the loader when the send's start is this tracer's p1_start (no
 * ip_local_out rung): otherwise dev_queue_xmit looks for none. */
const volatile __u8 vm_send_noted = 0;
struct vm_send {
	__u64 pid_tgid;
	__u64 ts;
	__u64 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VM_SEND_SLOTS);
	__type(key, __u32);
	__type(value, struct vm_send);
} vm_send_start SEC(".maps");

#define VM_ONCE(x) (*(volatile __u64 *)&(x))

static __always_inline struct vm_send *vm_send_slot(__u64 pid_tgid)
{
	__u32 i = (__u32)pid_tgid % VM_SEND_SLOTS; /* the thread id */
	return bpf_map_lookup_elem(&vm_send_start, &i);
}

static __always_inline int vm_note_send(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vm_send *s = vm_send_slot(id);
	if (s) {
		VM_ONCE(s->pid_tgid) = 0;
		VM_ONCE(s->ts) = bpf_ktime_get_ns();
		VM_ONCE(s->pid_tgid) = id;
	}
	return 0;
}

/* sendto(fd, buf, len, flags, addr, addrlen) */
SEC("tracepoint/syscalls/sys_enter_sendto")
int vm_tp_sys_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return PP_COSTED(VM_HOOK_SENDTO, vm_note_send());
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int vm_tp_sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return PP_COSTED(VM_HOOK_SENDTO, vm_note_send());
}

/*
 * The event of dev_queue_xmit: the common one and, for an echo request, the
 * start of the send that built it (0: none noted), which user space turns
 * into the VM_HOOK_SENDTO stamp. One event, not two: an event is the
 * costliest part of a matched run.
 */
struct vm_event {
	struct pp_event e;
	__u64 send_ts;
};

/* Keep struct vm_event in BTF: bpf2go -type vm_event gives the Go side its
 * layout, which a test holds sendStart to. */
const struct vm_event *vm_unused_event __attribute__((unused));

/* vm_take_send_start returns, once, the send start this thread noted, or 0. */
static __always_inline __u64 vm_take_send_start(__u64 now)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vm_send *s = vm_send_slot(id);
	if (!s || VM_ONCE(s->pid_tgid) != id)
		return 0;
	__u64 ts = VM_ONCE(s->ts);
	if (!ts || VM_ONCE(s->pid_tgid) != id)
		return 0;
	VM_ONCE(s->ts) = 0; /* one packet per send */
	return now - ts <= VM_SEND_MAX_AGE_NS ? ts : 0;
}

static __always_inline int vm_on_dev_queue(void *ctx, struct sk_buff *skb, __u8 hook, int check_dev, int typed)
{
	struct pp_pkt pkt = {};
	struct net_device *dev;
	if (!skb || !pp_filter_skb(skb, &pkt, check_dev, &dev, typed))
		return 0;
	PP_RESERVE(struct vm_event, e);
	if (!e)
		return 0;
	/* Stamped after the reserve, where pp_emit stamps every other hook. */
	__u64 now = bpf_ktime_get_ns();
	pp_fill_event(&e->e, &pkt, hook, dev, pp_netns, now, typed);
	e->send_ts = vm_send_noted && pkt.kind == PP_KIND_REQUEST ? vm_take_send_start(now) : 0;
	pp_submit(ctx, e);
	return 0;
}

/* ---- dev_queue_xmit (struct sk_buff *, ...) ---- */
PP_FENTRY_SKB1_FN(vm_fentry_dev_queue_xmit, VM_HOOK_DEV_QUEUE, 1, vm_on_dev_queue)
PP_FENTRY_SKB1_FN(vm_fentry_dev_queue_xmit_inner, VM_HOOK_DEV_QUEUE, 1, vm_on_dev_queue)
PP_KPROBE_SKB1_FN(vm_kprobe_dev_queue_xmit, VM_HOOK_DEV_QUEUE, 1, vm_on_dev_queue)
PP_TP_BTF_SKB1_FN(vm_tp_btf_net_dev_queue, VM_HOOK_DEV_QUEUE, 1, vm_on_dev_queue)
PP_RAW_TP_SKB1_FN(vm_raw_tp_net_dev_queue, VM_HOOK_DEV_QUEUE, 1, vm_on_dev_queue)

/* ---- icmp_rcv (struct sk_buff *) ---- */
PP_FENTRY_SKB1(vm_fentry_icmp_rcv, VM_HOOK_ICMP_RCV, 0)
PP_KPROBE_SKB1(vm_kprobe_icmp_rcv, VM_HOOK_ICMP_RCV, 0)

/* ---- netif_receive_skb tracepoint (struct sk_buff *) ---- */
static __always_inline int vm_on_netif_receive(void *ctx, struct sk_buff *skb, int typed)
{
	struct pp_pkt pkt = {};
	struct net_device *dev;
	if (!pp_filter_skb(skb, &pkt, 1, &dev, typed))
		return 0;
	if (pkt.kind == PP_KIND_REQUEST) {
		__u32 zero = 0;
		struct vm_cur *cur = bpf_map_lookup_elem(&vm_cur_req, &zero);
		if (cur) {
			cur->ts = bpf_ktime_get_ns();
			cur->id = pkt.id;
			cur->seq = pkt.seq;
		}
	}
	return pp_emit(ctx, &pkt, VM_HOOK_NETIF_RX, dev, pp_netns, typed);
}

SEC("raw_tracepoint")
int vm_raw_tp_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(VM_HOOK_NETIF_RX, vm_on_netif_receive(ctx, (struct sk_buff *)ctx->args[0], 0));
}

SEC("tp_btf")
int BPF_PROG(vm_tp_btf_netif_receive_skb, struct sk_buff *skb)
{
	return PP_COSTED(VM_HOOK_NETIF_RX, vm_on_netif_receive(ctx, skb, 1));
}

/*
 * consume_skb(skb, location) / kfree_skb(skb, location, reason): the reply
 * freed at the end of ICMP processing. Depending on the kernel and on who
 * listens (ping socket, raw sockets only), the original reply is consumed or
 * freed (reason NO_SOCKET) in icmp_rcv or ping_rcv, so both tracepoints are
 * needed; the location check (without one: the owner, below) keeps out the
 * clones that sockets free later in recvmsg.
 */
static __always_inline int vm_freed_in_icmp_rcv(void *ctx, __u64 *args, int has_loc, int typed)
{
	struct sk_buff *skb = (struct sk_buff *)args[0];
	if (has_loc && vm_free_end[0]) {
		__u64 loc = args[1];
		int in = 0;
#pragma unroll
		for (int i = 0; i < VM_FREE_FUNCS; i++)
			if (loc >= vm_free_start[i] && loc < vm_free_end[i])
				in = 1;
		if (!in)
			return 0;
	} else if (!skb || PP_RD(typed, skb, sk)) {
		/* No location (consume_skb before 6.3): ip_rcv orphaned the reply,
		 * while the clones a ping or raw socket queued are owned by it
		 * until recvmsg frees them, so an owned skb is not ICMP's free. */
		return 0;
	}
	return pp_on_skb(ctx, skb, VM_HOOK_CONSUME, 0, typed);
}

SEC("raw_tracepoint")
int vm_raw_tp_consume_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(VM_HOOK_CONSUME, vm_freed_in_icmp_rcv(ctx, ctx->args, vm_consume_has_loc, 0));
}

SEC("raw_tracepoint")
int vm_raw_tp_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(VM_HOOK_CONSUME, vm_freed_in_icmp_rcv(ctx, ctx->args, 1, 0));
}

/* tp_btf: the tracepoint's arguments are ctx (the location is read only
 * where the kernel passes one: vm_consume_has_loc is a load-time constant). */
SEC("tp_btf")
int BPF_PROG(vm_tp_btf_consume_skb, struct sk_buff *skb)
{
	return PP_COSTED(VM_HOOK_CONSUME, vm_freed_in_icmp_rcv(ctx, ctx, vm_consume_has_loc, 1));
}

SEC("tp_btf")
int BPF_PROG(vm_tp_btf_kfree_skb, struct sk_buff *skb)
{
	return PP_COSTED(VM_HOOK_CONSUME, vm_freed_in_icmp_rcv(ctx, ctx, 1, 1));
}

/*
 * fib_table_lookup(tb_id, flp, nhc, err): the request's input route lookup
 * (remote → local, from a device) and the reply's output route lookup
 * (local → remote, ICMP) on the CPU that just received the request.
 */
static __always_inline int vm_on_fib_lookup(void *ctx, __u64 *args, int typed)
{
	const struct flowi4 *flp = (const struct flowi4 *)args[1];
	__u32 saddr, daddr;
	if (typed) {
		saddr = flp->saddr;
		daddr = flp->daddr;
	} else if (bpf_core_field_offset(struct flowi4, daddr) == bpf_core_field_offset(struct flowi4, saddr) + 4) {
		__u32 addrs[2]; /* saddr, daddr: one read */
		if (bpf_probe_read_kernel(addrs, sizeof(addrs), (void *)flp + bpf_core_field_offset(struct flowi4, saddr)))
			return 0;
		saddr = addrs[0];
		daddr = addrs[1];
	} else {
		saddr = BPF_CORE_READ(flp, saddr);
		daddr = BPF_CORE_READ(flp, daddr);
	}
	__u8 hook, kind;
	if (saddr == pp_src_ip && daddr == pp_dst_ip) {
		hook = VM_HOOK_FIB_IN;
		kind = PP_KIND_REQUEST;
	} else if (saddr == pp_dst_ip && daddr == pp_src_ip) {
		hook = VM_HOOK_FIB_OUT;
		kind = PP_KIND_REPLY;
	} else {
		return 0;
	}
	if (!(pp_echo_kinds & kind))
		return 0;
	/* Only right after this CPU received an echo request. */
	__u32 zero = 0;
	struct vm_cur *cur = bpf_map_lookup_elem(&vm_cur_req, &zero);
	if (!cur || !cur->ts || bpf_ktime_get_ns() - cur->ts > VM_CUR_MAX_AGE_NS)
		return 0;
	if (hook == VM_HOOK_FIB_IN) {
		int iif = PP_RD(typed, flp, __fl_common.flowic_iif);
		if (iif == 0 || iif == VM_LOOPBACK_IFINDEX)
			return 0;
	} else if (PP_RD(typed, flp, __fl_common.flowic_proto) != PP_IPPROTO_ICMP) {
		return 0;
	}
	const struct fib_nh_common *nhc = (const struct fib_nh_common *)args[2];
	struct net_device *dev = nhc ? PP_RD(typed, nhc, nhc_dev) : NULL;
	if (pp_netns && (!dev || !pp_net_ok(PP_RD(typed, dev, nd_net.net), typed)))
		return 0;
	struct pp_pkt pkt = {
		.saddr = saddr,
		.daddr = daddr,
		.id = cur->id,
		.seq = cur->seq,
		.icmp_type = kind == PP_KIND_REQUEST ? PP_ICMP_ECHO : PP_ICMP_ECHOREPLY,
		.kind = kind,
	};
	if (pp_icmp_id_set && pkt.id != pp_icmp_id)
		return 0;
	return pp_emit(ctx, &pkt, hook, NULL, pp_netns, typed);
}

/* One program serves both lookups: accounted as VM_HOOK_FIB_IN. */
SEC("raw_tracepoint")
int vm_raw_tp_fib_table_lookup(struct bpf_raw_tracepoint_args *ctx)
{
	return PP_COSTED(VM_HOOK_FIB_IN, vm_on_fib_lookup(ctx, ctx->args, 0));
}

SEC("tp_btf")
int BPF_PROG(vm_tp_btf_fib_table_lookup, __u32 tb_id)
{
	return PP_COSTED(VM_HOOK_FIB_IN, vm_on_fib_lookup(ctx, ctx, 1));
}
