//go:build ignore

// BPF side of `pingpath trace vhost-rx` and `pingpath trace vhost-tx`.
//
// The programs only observe and filter: every stage emits a small event into
// one ring buffer and user space (correlate.go) joins the events into
// per-packet chains, the way the kernel call chain links them:
//
//   vhost-rx: tun_net_xmit(skb) -> [vhost worker] tun_recvmsg(skb) ->
//             vhost_add_used_and_signal_n -> eventfd_signal(ctx) ->
//             irqfd_wakeup -> interrupt injection (same task, or a kworker)
//   vhost-tx: [vcpu] ioeventfd_write -> vhost_poll_wakeup(work) ->
//             [vhost worker] handle_tx_kick(work) -> tun_sendmsg ->
//             netif_receive_skb(skb on the vnet)
//
// Each stage is built in several variants (fentry, kprobe, raw tracepoint)
// sharing one handler; the loader picks the first that works on this kernel.
// Filtering keeps unrelated traffic cheap: a device/ICMP check where the
// packet is parsed, one hash lookup on an skb pointer or task id elsewhere.

#include "pingpath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Event kinds (pp_event.hook); keep in sync with event.go.
enum vh_kind {
	VH_TUN_XMIT = 1,      // vhost-rx S1: the tun device transmits toward the guest
	VH_VHOST_RECV = 2,    // vhost-rx S2: the backend takes the skb (tun_recvmsg / copy to user)
	VH_SKB_CONSUMED = 3,  // a tracked skb was consumed (end of its life)
	VH_SKB_DROPPED = 4,   // a tracked skb was freed as a drop (aux = reason)
	VH_VHOST_SIGNAL = 5,  // vhost-rx S3: vhost publishes used buffers and signals
	VH_EVENTFD = 6,       // eventfd_signal(ctx) in an armed task
	VH_IRQFD = 7,         // vhost-rx S4: irqfd_wakeup
	VH_KVM_IRQ = 8,       // vhost-rx S5: interrupt injection
	VH_KICK = 16,         // vhost-tx: guest kick (ioeventfd_write)
	VH_POLL_WAKEUP = 17,  // vhost-tx: the kick wakes a vhost poll (key = &poll->work)
	VH_HANDLE_TX = 18,    // vhost-tx: handle_tx_kick(work)
	VH_TUN_SENDMSG = 19,  // vhost-tx: tun_sendmsg, or write(2) on the tun fd
	VH_NETIF_RECEIVE = 20,// vhost-tx: netif_receive_skb on the vnet
};

// Attach method of the program that fired (vh_event.method).
enum vh_method {
	M_FENTRY = 1,
	M_KPROBE = 2,
	M_TRACEPOINT = 3,
	M_TP_BTF = 4,
};

// VH_TYPED(method): the program's arguments are BTF-typed (fentry, tp_btf),
// so kernel structs are read with plain loads (PP_RD).
#define VH_TYPED(method) ((method) == M_FENTRY || (method) == M_TP_BTF)

// A stage's programs share one handler and differ in attach method only.
// VH_PROGS(base, slot, (args), expr) defines base_fentry and base_kprobe
// with the kernel function's arguments args, returning expr, each run
// accounted in cost slot slot (the event kind); VH_PROGS_TP adds base_tp for
// the raw tracepoint with the same arguments and base_btf for the same
// tracepoint typed (tp_btf). expr sees the attach method of the program as
// `method` (enum vh_method).
#define VH_ARGS(...) __VA_ARGS__
#define VH_PROGS(base, slot, args, ...)                                                            \
	SEC("fentry") int BPF_PROG(base##_fentry, VH_ARGS args)                                    \
	{                                                                                          \
		const __u8 method = M_FENTRY;                                                      \
		return PP_COSTED(slot, __VA_ARGS__);                                               \
	}                                                                                          \
	SEC("kprobe") int BPF_KPROBE(base##_kprobe, VH_ARGS args)                                  \
	{                                                                                          \
		const __u8 method = M_KPROBE;                                                      \
		return PP_COSTED(slot, __VA_ARGS__);                                               \
	}
#define VH_PROGS_TP(base, slot, args, ...)                                                         \
	VH_PROGS(base, slot, args, __VA_ARGS__)                                                    \
	SEC("raw_tracepoint") int BPF_PROG(base##_tp, VH_ARGS args)                                \
	{                                                                                          \
		const __u8 method = M_TRACEPOINT;                                                  \
		return PP_COSTED(slot, __VA_ARGS__);                                               \
	}                                                                                          \
	SEC("tp_btf") int BPF_PROG(base##_btf, VH_ARGS args)                                       \
	{                                                                                          \
		const __u8 method = M_TP_BTF;                                                      \
		return PP_COSTED(slot, __VA_ARGS__);                                               \
	}

// The vhost event: the common pingpath event (hook = enum vh_kind; id, seq,
// kind, icmp_type set when the packet was parsed) and the correlation keys.
struct vh_event {
	struct pp_event pp;
	__u64 key;  // skb, eventfd ctx, vhost work, tun socket
	__u64 key2; // vq, irqfd wait entry, vcpu / apic, drop location
	__u32 tid;
	__u32 aux;  // gsi / vector / drop reason / fd
	__u32 saddr; // network byte order, when parsed
	__u32 daddr;
	__u8 method;
	__u8 pad[7];
};

// Referenced so that bpf2go emits the Go type.
const struct vh_event *unused_vh_event __attribute__((unused));

// Configuration beyond the common filter, set from Go before loading.
volatile const __u32 vh_qemu_tgid;   // the process owning the tun file (0: any)
volatile const __u32 vh_sys_write;   // syscall numbers of write/writev on this arch
volatile const __u32 vh_sys_writev;
volatile const __u64 vh_arm_ns = 50000000; // how long a task stays armed after taking a packet
volatile const __u8 vh_arm = 1;            // 0: no vhost on this path, nothing to arm
volatile const __u8 vh_watching;           // watch_tasks has entries (kernel-thread workers)

// skb pointers seen at S1, until the backend takes or frees them.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} tracked_skbs SEC(".maps");

// At least the number of entries of tracked_skbs (an LRU eviction is not
// counted down, which only keeps the gate open): while it is 0 no skb is
// tracked, and the per-skb hooks, which fire for every skb the host copies
// or frees, leave after one load instead of a hash lookup.
__u64 vh_n_tracked = 0;

static __always_inline void track_skb(__u64 key, __u64 ts)
{
	// An existing entry (a reused skb address) is left alone: every entry
	// is counted exactly once, when inserted.
	if (bpf_map_update_elem(&tracked_skbs, &key, &ts, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&vh_n_tracked, 1);
}

static __always_inline int skb_tracked(__u64 key)
{
	return vh_n_tracked && bpf_map_lookup_elem(&tracked_skbs, &key);
}

static __always_inline void untrack_skb(__u64 key)
{
	if (bpf_map_delete_elem(&tracked_skbs, &key) == 0)
		__sync_fetch_and_add(&vh_n_tracked, -1);
}

// Tasks that took a traced packet (vhost workers): their next signal,
// eventfd and irqfd calls belong to it. Value: when armed.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} armed SEC(".maps");

// When a task was last armed (0: never). The signal chain's hooks run for
// every signal, eventfd, irqfd and interrupt on the host; while no task
// took a traced packet within vh_arm_ns (between pings, and always for
// other VMs' traffic) they leave on this one compare instead of a lookup
// in armed. Written without atomics: two arms racing on two CPUs leave the
// older of two nearly equal times, which ends the window microseconds
// early at worst.
__u64 vh_last_arm = 0;

// When the last S4 event was (0: none), so that an injection in another
// task (irqfd_inject in a kworker) is reported only shortly after one.
__u64 vh_last_irqfd = 0;

// Tasks vhost-tx watches (vhost workers of the VM): kernel-thread workers
// (before 6.4) are not in QEMU's thread group. Looked up only when
// vh_watching says there are any.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} watch_tasks SEC(".maps");

// vhost-tx keeps each transmit's chain in BPF and emits it only when the
// packet turns out to be ours at netif_receive (the ICMP identity is known
// only there): every packet a guest sends crosses tun_sendmsg, and emitting
// kick, wake-up, handle_tx and sendmsg for all of them put ring-buffer and
// user-space work on every packet nobody asked about. The maps hold the
// events exactly as they would have been emitted; a matched packet emits
// those of its chain not emitted yet, in chain order, so the correlator
// (tx.go) links the same events it would have seen.

// Each vcpu task's latest kick (ioeventfd_write), so that the vhost poll
// wake-up it causes can be told from socket wake-ups and carries it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct vh_event);
} tx_kicks SEC(".maps");

// A vhost work woken and not yet handled: the kick and wake-up of the first
// wake-up while it was queued (later ones merge into the same pass).
struct tx_queued {
	struct vh_event kick; // pp.ts == 0: the wake-up had no KVM kick
	struct vh_event wakeup;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct tx_queued);
} tx_queued SEC(".maps");

// A vhost worker's (or user space backend thread's) current pass: what
// started it and its latest tun_sendmsg. sent has a TX_* bit per event
// already emitted for an earlier matched packet of the pass.
#define TX_KICK 1
#define TX_WAKEUP 2
#define TX_HANDLE 4
#define TX_SENDMSG 8

struct tx_run {
	struct tx_queued q;
	struct vh_event handle_tx;
	struct vh_event sendmsg;
	__u32 sent;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct tx_run);
} tx_runs SEC(".maps");

// A zeroed value to create tx_runs entries from (too big for the stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tx_run);
} tx_zero SEC(".maps");

// How long a stored kick or wake-up may wait for what follows it (the Go
// side's Stale is the same second).
#define TX_STALE_NS 1000000000ULL

// (tgid << 32 | fd) of the tun files of the vnet, for the write(2) rung.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u8);
} tun_fds SEC(".maps");

// vh_fill fills an event's common part (the caller fills the rest).
static __always_inline void vh_fill(struct vh_event *e, __u8 kind, __u8 method, __u64 ts)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__builtin_memset(e, 0, sizeof(*e));
	e->pp.ts = ts;
	e->pp.pid = pid_tgid >> 32;
	e->pp.cpu = bpf_get_smp_processor_id();
	e->pp.hook = kind;
	e->pp.netns = pp_netns;
	bpf_get_current_comm(e->pp.comm, sizeof(e->pp.comm));
	e->tid = (__u32)pid_tgid;
	e->method = method;
}

// VH_RESERVE declares e, an event with its common part filled (PP_RESERVE);
// the caller fills the rest and submits. A full buffer is counted in pp_lost.
#define VH_RESERVE(e, kind, method, ts)                                                            \
	PP_RESERVE(struct vh_event, e);                                                            \
	if (e)                                                                                     \
	vh_fill(e, kind, method, ts)

static __always_inline void vh_fill_pkt(struct vh_event *e, struct pp_pkt *pkt, struct net_device *dev, int typed)
{
	e->pp.id = pkt->id;
	e->pp.seq = pkt->seq;
	e->pp.kind = pkt->kind;
	e->pp.icmp_type = pkt->icmp_type;
	e->saddr = pkt->saddr;
	e->daddr = pkt->daddr;
	// The vnet's name is the tracer's --vm-interface: not read here.
	if (dev)
		e->pp.ifindex = PP_RD(typed, dev, ifindex);
}

/* ---------------------------------------------------------------- vhost-rx */

// S1: the tun device transmits skb toward the guest.
static __always_inline int on_tun_xmit(void *ctx, struct sk_buff *skb, struct net_device *dev, __u8 method)
{
	struct pp_pkt pkt = {};
	// Cheapest test first: the device (a pointer compare once learned,
	// which vouches for its namespace too), then the packet.
	int typed = VH_TYPED(method);
	int how = pp_n_ifindex ? pp_dev_ok(dev, typed) : dev ? pp_netns_ok(skb, dev, typed) : PP_DEV_NO;
	if (!how || !pp_parse_skb(skb, &pkt, typed) || !pp_dev_recheck(dev, how, typed))
		return 0;
	__u64 ts = bpf_ktime_get_ns();
	__u64 key = (__u64)skb;
	track_skb(key, ts);
	VH_RESERVE(e, VH_TUN_XMIT, method, ts);
	if (!e)
		return 0;
	e->key = key;
	vh_fill_pkt(e, &pkt, dev, typed);
	pp_submit(ctx, e);
	return 0;
}

// tun_net_xmit(skb, dev); net:net_dev_start_xmit(skb, dev).
VH_PROGS_TP(s1, VH_TUN_XMIT, (struct sk_buff *skb, struct net_device *dev), on_tun_xmit(ctx, skb, dev, method))

static __always_inline void arm_task(__u64 ts)
{
	if (!vh_arm)
		return;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&armed, &tid, &ts, BPF_ANY);
	if (ts > vh_last_arm)
		vh_last_arm = ts;
}

// S2: the backend takes a tracked skb (kind VH_VHOST_RECV), or the skb is
// consumed (VH_SKB_CONSUMED); the task doing it is armed. Its tracking ends
// here: tun_recvmsg hands the skb to vhost-net, which frees it; tun_put_user
// copies it once (twice with a VLAN tag: the second copy is not a new S2)
// and consumes it, or frees it with kfree_skb when the copy failed — after
// S2, so no drop of ours. Forgetting at the copy spares vhost-rx a program
// on consume_skb, which runs for every skb the host consumes.
static __always_inline int on_skb_taken(void *ctx, void *skb, __u8 kind, __u8 probe)
{
	__u64 key = (__u64)skb;
	if (!skb_tracked(key))
		return 0;
	untrack_skb(key);
	__u64 ts = bpf_ktime_get_ns();
	arm_task(ts);
	VH_RESERVE(e, kind, probe, ts);
	if (!e)
		return 0;
	e->key = key;
	pp_submit(ctx, e);
	return 0;
}

// vhost-net hands tun the skb it took from the tun ring in msg_control.
VH_PROGS(s2, VH_VHOST_RECV, (struct socket *sock, struct msghdr *m), on_skb_taken(ctx, PP_RD(VH_TYPED(method), m, msg_control), VH_VHOST_RECV, method))

// tun_put_user copies the packet with skb_copy_datagram_iter, in the task of
// whoever reads the tun queue (the vhost worker, or a user space backend).
SEC("raw_tracepoint")
int BPF_PROG(s2_tp, struct sk_buff *skb, int len)
{
	return PP_COSTED(VH_VHOST_RECV, on_skb_taken(ctx, skb, VH_VHOST_RECV, M_TRACEPOINT));
}

// consume_skb(skb), S2 on kernels without the copy tracepoint (6.3+ adds
// the caller's location: not read, so that one program attaches everywhere).
SEC("raw_tracepoint")
int BPF_PROG(skb_consumed, struct sk_buff *skb)
{
	return PP_COSTED(VH_SKB_CONSUMED, on_skb_taken(ctx, skb, VH_SKB_CONSUMED, M_TRACEPOINT));
}

static __always_inline int on_skb_dropped(void *ctx, struct sk_buff *skb, void *location, __u32 reason)
{
	__u64 key = (__u64)skb;
	if (!skb_tracked(key))
		return 0;
	untrack_skb(key);
	VH_RESERVE(e, VH_SKB_DROPPED, M_TRACEPOINT, bpf_ktime_get_ns());
	if (!e)
		return 0;
	e->key = key;
	e->key2 = (__u64)location;
	e->aux = reason;
	pp_submit(ctx, e);
	return 0;
}

// kfree_skb(skb, location, reason[, rx_sk]) since 5.17 ...
SEC("raw_tracepoint")
int BPF_PROG(skb_dropped, struct sk_buff *skb, void *location, int reason)
{
	return PP_COSTED(VH_SKB_DROPPED, on_skb_dropped(ctx, skb, location, (__u32)reason));
}

// ... and kfree_skb(skb, location) before: a raw tracepoint program may not
// read more arguments than the tracepoint has.
SEC("raw_tracepoint")
int BPF_PROG(skb_dropped_noreason, struct sk_buff *skb, void *location)
{
	return PP_COSTED(VH_SKB_DROPPED, on_skb_dropped(ctx, skb, location, 0));
}

// within reports whether at is at most vh_arm_ns before now. Signed: a
// time another CPU wrote after this one read the clock is within.
static __always_inline int within(__u64 now, __u64 at)
{
	return (__s64)(now - at) <= (__s64)vh_arm_ns;
}

// task_armed reports whether the current task took a traced packet within
// vh_arm_ns; while no task did, without a lookup.
static __always_inline int task_armed(__u64 now)
{
	if (!within(now, vh_last_arm))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *at = bpf_map_lookup_elem(&armed, &tid);
	return at && now - *at <= vh_arm_ns;
}

static __always_inline int on_armed_event(void *ctx, __u8 kind, __u8 probe, __u64 key, __u64 key2, __u32 aux)
{
	__u64 ts = bpf_ktime_get_ns();
	if (!task_armed(ts))
		return 0;
	if (kind == VH_IRQFD || kind == VH_EVENTFD)
		vh_last_irqfd = ts;
	VH_RESERVE(e, kind, probe, ts);
	if (!e)
		return 0;
	e->key = key;
	e->key2 = key2;
	e->aux = aux;
	pp_submit(ctx, e);
	return 0;
}

// S3: vhost_add_used_and_signal_n(dev, vq, heads, count) or vhost_signal(dev, vq).
VH_PROGS(s3, VH_VHOST_SIGNAL, (void *dev, void *vq), on_armed_event(ctx, VH_VHOST_SIGNAL, method, (__u64)dev, (__u64)vq, 0))

// eventfd_signal(ctx, n) before 6.8, eventfd_signal_mask(ctx, mask) from
// 6.8 (eventfd_signal became an inline wrapper): ctx is the first argument
// of both, so one program serves either symbol.
VH_PROGS(eventfd, VH_EVENTFD, (void *ctx_), on_armed_event(ctx, VH_EVENTFD, method, (__u64)ctx_, 0, 0))

// S4: irqfd_wakeup(wait, mode, sync, key). The irqfd's eventfd and GSI are
// read with CO-RE where the kernel's BTF describes struct kvm_kernel_irqfd.
static __always_inline int on_irqfd(void *ctx, wait_queue_entry_t *wait, __u64 flags, __u8 probe)
{
	if (!(flags & 0x1 /* EPOLLIN */))
		return 0;
	__u64 ctx_ = 0;
	__u32 gsi = 0;
	if (bpf_core_type_exists(struct kvm_kernel_irqfd)) {
		struct kvm_kernel_irqfd *irqfd = (void *)((char *)wait - bpf_core_field_offset(struct kvm_kernel_irqfd, wait));
		ctx_ = (__u64)BPF_CORE_READ(irqfd, eventfd);
		gsi = BPF_CORE_READ(irqfd, gsi);
	}
	return on_armed_event(ctx, VH_IRQFD, probe, ctx_, (__u64)wait, gsi);
}

VH_PROGS(s4, VH_IRQFD, (wait_queue_entry_t *wait, unsigned mode, int sync, void *key), on_irqfd(ctx, wait, (__u64)key, method))

// S5: interrupt injection. Reported in the armed task (the irqfd fast path
// injects synchronously) or, shortly after an irqfd wake-up, in any task
// (irqfd_inject runs from a kworker).
// src says what aux holds (enum vh_irq_src).
enum vh_irq_src {
	IRQ_POSTED = 1,   // vmx_deliver_posted_interrupt: aux = vector
	IRQ_DELIVER = 2,  // vmx/svm_deliver_interrupt: aux = vector
	IRQ_INATOMIC = 3, // kvm_arch_set_irq_inatomic: no aux
	IRQ_APIC = 4,     // kvm:kvm_apic_accept_irq: aux = vector
	IRQ_MSI = 5,      // kvm:kvm_msi_set_irq: aux = vector
	IRQ_SET_IRQ = 6,  // kvm:kvm_set_irq: aux = GSI
};

static __always_inline int on_kvm_irq(void *ctx, __u8 method, __u8 src, __u64 key2, __u32 aux)
{
	__u64 ts = bpf_ktime_get_ns();
	if (!task_armed(ts) && (!vh_last_irqfd || !within(ts, vh_last_irqfd)))
		return 0;
	VH_RESERVE(e, VH_KVM_IRQ, method, ts);
	if (!e)
		return 0;
	e->key = src;
	e->key2 = key2;
	e->aux = aux;
	pp_submit(ctx, e);
	return 0;
}

// (vcpu, vector): vmx_deliver_posted_interrupt.
VH_PROGS(s5_vec2, VH_KVM_IRQ, (void *vcpu, int vector), on_kvm_irq(ctx, method, IRQ_POSTED, (__u64)vcpu, vector))

// (apic, delivery_mode, trig_mode, vector): vmx_deliver_interrupt, svm_deliver_interrupt.
VH_PROGS(s5_vec4, VH_KVM_IRQ, (void *apic, int dm, int tm, int vector), on_kvm_irq(ctx, method, IRQ_DELIVER, (__u64)apic, vector))

// (routing entry, kvm, ...): kvm_arch_set_irq_inatomic, kvm_set_msi_irq.
VH_PROGS(s5_arg1, VH_KVM_IRQ, (void *arg1), on_kvm_irq(ctx, method, IRQ_INATOMIC, (__u64)arg1, 0))

SEC("raw_tracepoint")
int BPF_PROG(s5_tp_apic, __u32 apicid, __u16 dm, __u16 tm, __u8 vec)
{
	return PP_COSTED(VH_KVM_IRQ, on_kvm_irq(ctx, M_TRACEPOINT, IRQ_APIC, apicid, vec));
}

SEC("raw_tracepoint")
int BPF_PROG(s5_tp_msi, __u64 address, __u64 data)
{
	return PP_COSTED(VH_KVM_IRQ, on_kvm_irq(ctx, M_TRACEPOINT, IRQ_MSI, address, (__u32)(data & 0xff)));
}

SEC("raw_tracepoint")
int BPF_PROG(s5_tp_set_irq, unsigned int gsi, int level, int irq_source_id)
{
	return PP_COSTED(VH_KVM_IRQ, on_kvm_irq(ctx, M_TRACEPOINT, IRQ_SET_IRQ, 0, gsi));
}

/* ---------------------------------------------------------------- vhost-tx */

// tx_run_of returns the current task's pass, created empty when missing.
static __always_inline struct tx_run *tx_run_of(__u32 tid)
{
	struct tx_run *r = bpf_map_lookup_elem(&tx_runs, &tid);
	if (r)
		return r;
	__u32 zero = 0;
	struct tx_run *z = bpf_map_lookup_elem(&tx_zero, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&tx_runs, &tid, z, BPF_NOEXIST);
	return bpf_map_lookup_elem(&tx_runs, &tid);
}

// Guest kick: ioeventfd_write(vcpu, this, addr, len, val) in a vcpu thread.
static __always_inline int on_kick(void *dev, __u8 probe)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (vh_qemu_tgid && (pid_tgid >> 32) != vh_qemu_tgid)
		return 0;
	__u32 tid = (__u32)pid_tgid;
	struct vh_event ev;
	vh_fill(&ev, VH_KICK, probe, bpf_ktime_get_ns());
	ev.key = (__u64)dev;
	bpf_map_update_elem(&tx_kicks, &tid, &ev, BPF_ANY);
	return 0;
}

VH_PROGS(kick, VH_KICK, (void *vcpu, void *this), on_kick(this, method))

// vhost_poll_wakeup(wait, mode, sync, key) runs inside the eventfd_signal of
// a kick: in a vcpu thread inside ioeventfd_write (KVM), or in the thread of
// a user space driver that wrote the kick eventfd. Both are tasks of the
// owner process; a KVM kick of this task just before is taken along. struct
// vhost_poll keeps its work right after its wait entry (since 4.x), so
// &poll->work = wait + sizeof(wait_queue_entry_t): the key handle_tx_kick
// is called with.
static __always_inline int on_poll_wakeup(void *wait, __u8 method)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	// Every vhost wake-up on the host runs this (other VMs' kicks, tun
	// socket wake-ups in softirq): outside the owner, where on_kick stores
	// no kick either, it ends on one compare.
	if (vh_qemu_tgid && (pid_tgid >> 32) != vh_qemu_tgid)
		return 0;
	__u32 tid = (__u32)pid_tgid;
	__u64 ts = bpf_ktime_get_ns();
	struct vh_event *kick = bpf_map_lookup_elem(&tx_kicks, &tid);
	int kvm_kick = kick && ts >= kick->pp.ts && ts - kick->pp.ts <= 1000000;
	if (!kvm_kick && !vh_qemu_tgid)
		return 0;
	__u64 work = (__u64)wait + bpf_core_type_size(struct wait_queue_entry);
	// Kicks while the work is queued merge into one handle_tx pass: keep
	// the first wake-up, unless it went stale without a pass.
	struct tx_queued *q = bpf_map_lookup_elem(&tx_queued, &work);
	if (q && ts - q->wakeup.pp.ts <= TX_STALE_NS) {
		if (kvm_kick)
			bpf_map_delete_elem(&tx_kicks, &tid);
		return 0;
	}
	__u32 zero = 0;
	struct tx_run *z = bpf_map_lookup_elem(&tx_zero, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&tx_queued, &work, &z->q, BPF_ANY);
	q = bpf_map_lookup_elem(&tx_queued, &work);
	if (!q)
		return 0;
	if (kvm_kick) {
		__builtin_memcpy(&q->kick, kick, sizeof(q->kick));
		bpf_map_delete_elem(&tx_kicks, &tid);
	}
	vh_fill(&q->wakeup, VH_POLL_WAKEUP, method, ts);
	q->wakeup.key = work;
	q->wakeup.key2 = (__u64)wait;
	return 0;
}

VH_PROGS(wakeup, VH_POLL_WAKEUP, (void *wait), on_poll_wakeup(wait, method))

// tx_task_ok: the current task may carry the VM's transmits. vhost workers
// are kernel threads before 6.4 (watched by tid) and threads of QEMU from
// 6.4 on.
static __always_inline int tx_task_ok(__u64 pid_tgid)
{
	__u32 tid = (__u32)pid_tgid;
	return !vh_qemu_tgid || (pid_tgid >> 32) == vh_qemu_tgid || (vh_watching && bpf_map_lookup_elem(&watch_tasks, &tid));
}

// handle_tx_kick(work): a new pass of the worker, started by the wake-up
// queued for work.
static __always_inline int on_handle_tx(__u64 work, __u8 method)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!tx_task_ok(pid_tgid))
		return 0;
	struct tx_run *r = tx_run_of((__u32)pid_tgid);
	if (!r)
		return 0;
	r->sent = 0;
	r->sendmsg.pp.ts = 0;
	struct tx_queued *q = bpf_map_lookup_elem(&tx_queued, &work);
	if (q) {
		__builtin_memcpy(&r->q, q, sizeof(r->q));
		bpf_map_delete_elem(&tx_queued, &work);
	} else {
		r->q.kick.pp.ts = 0;
		r->q.wakeup.pp.ts = 0;
	}
	vh_fill(&r->handle_tx, VH_HANDLE_TX, method, bpf_ktime_get_ns());
	r->handle_tx.key = work;
	return 0;
}

VH_PROGS(handle_tx, VH_HANDLE_TX, (void *work), on_handle_tx((__u64)work, method))

// tun_sendmsg (or a backend's write(2) on the tun fd, fd in aux): the
// pass's latest send.
static __always_inline int on_sendmsg(__u64 key, __u32 aux, __u8 method)
{
	struct tx_run *r = tx_run_of((__u32)bpf_get_current_pid_tgid());
	if (!r)
		return 0;
	vh_fill(&r->sendmsg, VH_TUN_SENDMSG, method, bpf_ktime_get_ns());
	r->sendmsg.key = key;
	r->sendmsg.aux = aux;
	r->sent &= ~TX_SENDMSG;
	return 0;
}

VH_PROGS(sendmsg, VH_TUN_SENDMSG, (void *sock),
	 tx_task_ok(bpf_get_current_pid_tgid()) ? on_sendmsg((__u64)sock, 0, method) : 0)

// Tracepoint rungs of tun_sendmsg: a write(2)/writev(2) on the vnet's tun
// file by the process that owns it (a user space virtio backend: QEMU
// without vhost, or the lab's relay). tun_get_user runs inside that syscall.
static __always_inline int on_backend_write(__u32 fd, __u8 method)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (vh_qemu_tgid && (pid_tgid >> 32) != vh_qemu_tgid)
		return 0;
	__u64 key = (pid_tgid & 0xffffffff00000000ULL) | fd;
	if (!bpf_map_lookup_elem(&tun_fds, &key))
		return 0;
	return on_sendmsg(0, fd, method);
}

// syscalls:sys_enter_write / sys_enter_writev: fire only for those calls.
SEC("tracepoint")
int sendmsg_tp_write(struct trace_event_raw_sys_enter *ctx)
{
	return PP_COSTED(VH_TUN_SENDMSG, on_backend_write((__u32)ctx->args[0], M_TRACEPOINT));
}

// raw_syscalls:sys_enter, for kernels without syscall tracepoints: fires
// for every system call, so the syscall number is checked first.
SEC("raw_tracepoint")
int BPF_PROG(sendmsg_tp, struct pt_regs *regs, long id)
{
	return PP_COSTED(VH_TUN_SENDMSG, (id == vh_sys_write || id == vh_sys_writev)
						 ? on_backend_write((__u32)PT_REGS_PARM1_CORE(regs), M_TRACEPOINT)
						 : 0);
}

// tx_emit sends a stored chain event (once per pass: bit in r->sent).
static __always_inline void tx_emit(void *ctx, struct tx_run *r, struct vh_event *stored, __u32 bit)
{
	if (!stored->pp.ts || (r->sent & bit))
		return;
	r->sent |= bit;
	PP_RESERVE(struct vh_event, e);
	if (!e)
		return;
	__builtin_memcpy(e, stored, sizeof(*e));
	pp_submit(ctx, e);
}

// netif_receive_skb of a packet the guest sent (on the vnet), with its
// identity: first the events of its pass not emitted yet, then its own.
static __always_inline int on_netif_receive(void *ctx, struct sk_buff *skb, __u8 method)
{
	struct pp_pkt pkt = {};
	struct net_device *dev;
	int typed = VH_TYPED(method);
	if (!skb || !pp_filter_skb(skb, &pkt, 1, &dev, typed))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tx_run *r = bpf_map_lookup_elem(&tx_runs, &tid);
	if (r) {
		tx_emit(ctx, r, &r->q.kick, TX_KICK);
		tx_emit(ctx, r, &r->q.wakeup, TX_WAKEUP);
		tx_emit(ctx, r, &r->handle_tx, TX_HANDLE);
		tx_emit(ctx, r, &r->sendmsg, TX_SENDMSG);
	}
	VH_RESERVE(e, VH_NETIF_RECEIVE, method, bpf_ktime_get_ns());
	if (!e)
		return 0;
	e->key = (__u64)skb;
	vh_fill_pkt(e, &pkt, dev, typed);
	pp_submit(ctx, e);
	return 0;
}

VH_PROGS_TP(netif, VH_NETIF_RECEIVE, (struct sk_buff *skb), on_netif_receive(ctx, skb, method))
