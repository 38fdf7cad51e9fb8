#!/usr/bin/env python3
# pingpath's own small kernel_icmp_rtt.py (see pingpath_bcc.py): the origin
# tool's flags and its per-ping block, with the origin's dev-branch stages:
#
#   --direction tx (sender VM)           --direction rx (receiver VM)
#   0 P1 ip_local_out (request)          0 P1 netif_receive_skb (request, --interface)
#   1 P1 dev_queue_xmit (--interface)    2 P1 icmp_rcv
#   3 P2 netif_receive_skb (--interface) 4 P2 ip_local_out (reply)
#   5 P2 icmp_rcv (reply)                5 P2 dev_queue_xmit (reply, --interface)
#
# Path 1 is the request, path 2 the reply; a ping's block is printed when its
# last stage is hit and every path start and end was seen.
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pingpath_bcc as pb  # noqa: E402

parser = argparse.ArgumentParser(description="ICMP round trip through the kernel stack of a VM")
parser.add_argument("--src-ip", required=True, help="the ping's source (the sender VM)")
parser.add_argument("--dst-ip", required=True, help="the ping's destination (the receiver VM)")
parser.add_argument("--interface", help="device(s), comma separated (default: all)")
parser.add_argument("--latency-ms", type=float, default=0, help="print only round trips of at least this")
parser.add_argument("--direction", choices=["tx", "rx"], default="tx")
parser.add_argument("--disable-kernel-stacks", action="store_true", help="accepted; this tool prints no stacks")
parser.add_argument("--debug", action="store_true")
args = parser.parse_args()
pb.require_root()

from bcc import BPF  # noqa: E402  (after the root check, as the origin)

tx = args.direction == "tx"
idx = pb.ifaces(args.interface or "")
names = {
    0: "P1 (ip_local_out)" if tx else "P1 (netif_receive_skb)",
    1: "P1 (dev_queue_xmit)",
    2: "P1 (icmp_rcv)",
    3: "P2 (netif_receive_skb)",
    4: "P2 (ip_local_out)",
    5: "P2 (icmp_rcv)" if tx else "P2 (dev_queue_xmit)",
}

text = pb.compat() + pb.PARSE + pb.iface_match("IFACE_OK", idx) + r"""
#define SRC_IP 0x%x
#define DST_IP 0x%x
#define DIR_TX %d
#define LATENCY_NS %dULL
#if DIR_TX
#define SLOT_LOCAL_OUT 0
#define SLOT_XMIT 1
#define SLOT_RECV 3
#define SLOT_ICMP 5
#define PATH1_END 1
#define PATH2_START 3
#else
#define SLOT_RECV 0
#define SLOT_ICMP 2
#define SLOT_LOCAL_OUT 4
#define SLOT_XMIT 5
#define PATH1_END 2
#define PATH2_START 4
#endif

struct key_t {
    u16 id, seq;
};

struct flow_t {
    u64 ts[6];
    u16 id, seq;
    u32 pid[2];
    u32 ifindex[2];
    char comm[2][16];
};

BPF_HASH(flows, struct key_t, struct flow_t, 10240);
BPF_PERF_OUTPUT(events);

static __always_inline int stage(void *ctx, struct sk_buff *skb, int slot, int at_data, int boundary) {
    struct pkt p = {};
    if ((at_data ? parse_data(skb, &p) : parse_nh(skb, &p)) < 0)
        return 0;
    int request = slot < 3;
    if (request) {
        if (p.type != 8 || p.saddr != SRC_IP || p.daddr != DST_IP)
            return 0;
    } else if (p.type != 0 || p.saddr != DST_IP || p.daddr != SRC_IP) {
        return 0;
    }
    int ifi = ifindex_of(skb);
    if (boundary && !IFACE_OK(ifi))
        return 0;
    struct key_t key = {.id = p.id, .seq = p.seq};
    struct flow_t *f;
    if (slot == 0) {
        struct flow_t zero = {};
        f = flows.lookup_or_try_init(&key, &zero);
    } else {
        f = flows.lookup(&key);
    }
    if (!f || f->ts[slot])
        return 0; // first timestamp wins
    f->ts[slot] = bpf_ktime_get_ns();
    if (slot == 0 || slot == PATH2_START) {
        int i = slot == 0 ? 0 : 1;
        f->pid[i] = bpf_get_current_pid_tgid() >> 32;
        f->ifindex[i] = ifi;
        bpf_get_current_comm(&f->comm[i], sizeof(f->comm[i]));
    }
    if (slot == 5) {
        if (f->ts[0] && f->ts[PATH1_END] && f->ts[PATH2_START] && f->ts[5] - f->ts[0] >= LATENCY_NS) {
            f->id = p.id;
            f->seq = p.seq;
            events.perf_submit(ctx, f, sizeof(*f));
        }
        flows.delete(&key);
    }
    return 0;
}

int on_local_out(struct pt_regs *ctx) {
    return stage(ctx, (struct sk_buff *)PT_REGS_PARM3(ctx), SLOT_LOCAL_OUT, 0, 0);
}

int on_xmit(struct pt_regs *ctx) {
    return stage(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx), SLOT_XMIT, 0, 1);
}

int on_icmp_rcv(struct pt_regs *ctx) {
    return stage(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx), SLOT_ICMP, 0, 0);
}

TRACEPOINT_PROBE(net, netif_receive_skb) {
    return stage(args, (struct sk_buff *)args->skbaddr, SLOT_RECV, 1, 1);
}
""" % (pb.ip_hex(args.src_ip), pb.ip_hex(args.dst_ip), 1 if tx else 0, int(args.latency_ms * 1e6))

local, remote = (args.src_ip, args.dst_ip) if tx else (args.dst_ip, args.src_ip)
print("=== Kernel ICMP RTT Tracer ===")
print("Trace Direction: %s" % args.direction.upper())
print("Ping Session: %s -> %s" % (args.src_ip, args.dst_ip))
print("Local IP: %s (0x%x)" % (local, pb.ip_hex(local)))
print("Remote IP: %s (0x%x)" % (remote, pb.ip_hex(remote)))
print("Monitoring interface(s): %s" % (", ".join("%s(ifindex=%d)" % i for i in idx) or "all"))
print()

b = BPF(text=text, cflags=["-w"])  # -w: the kernel headers warn under BCC's clang
print("BPF program loaded successfully")
print()
b.attach_kprobe(event="icmp_rcv", fn_name="on_icmp_rcv")
pb.attach_kprobes(b, "on_local_out", ["ip_local_out", "__ip_local_out"])
pb.attach_kprobes(b, "on_xmit", ["__dev_queue_xmit", "dev_queue_xmit"])

ifname = {i: n for n, i in idx}


def block(cpu, data, size):
    e = b["events"].event(data)
    ts = list(e.ts)

    def d(a, z):
        return (ts[z] - ts[a]) / 1000.0 if ts[a] and ts[z] else None

    def us(v):
        return "%7.3f" % v if v is not None else "   N/A "

    p1e, p2s = (1, 3) if tx else (2, 4)
    print("=" * 80)
    print("=== ICMP RTT Trace: %s (%s) ===" % (pb.now(), "TX (Local -> Remote)" if tx else "RX (Remote -> Local)"))
    print("Session: %s -> %s (ID: %d, Seq: %d)" % (args.src_ip, args.dst_ip, pb.ntohs(e.id), pb.ntohs(e.seq)))
    for i, label in ((0, "Path 1 (Request: %s %s)" % (("TX to", args.dst_ip) if tx else ("RX from", args.src_ip))),
                     (1, "Path 2 (Reply:   %s %s)" % (("RX from", args.dst_ip) if tx else ("TX to", args.src_ip)))):
        comm = bytes(e.comm[i]).split(b"\0", 1)[0].decode("utf-8", "replace")  # a row of char[2][16]
        print("%-45s: PID=%-6d COMM=%-12s IF=%-10s ICMP_Type=%d" % (
            label, e.pid[i], comm, ifname.get(e.ifindex[i], "unknown"), 8 if i == 0 else 0))
    print()
    for n, (a, z) in ((1, (0, p1e)), (2, (p2s, 5))):
        print("Path %d Latencies (us):" % n)
        print("  [%d->%d] %-40s -> %-40s: %s us" % (a, z, names[a], names[z], us(d(a, z))))
        print("  Total Path %d: %s us" % (n, us(d(a, z))))
        print()
    print("Total RTT (Path1 Start to Path2 End): %s us" % us(d(0, 5)))
    print("Inter-Path Latency (P1 end -> P2 start): %s us" % us(d(p1e, p2s)))
    print("=" * 80)
    print()


b["events"].open_perf_buffer(block, page_cnt=64)
print("Tracing ICMP RTT (src=%s, dst=%s, dir=%s) ... Hit Ctrl-C to end." % (args.src_ip, args.dst_ip, args.direction))
try:
    while True:
        b.perf_buffer_poll()
except KeyboardInterrupt:
    pass
print("\nDetaching...")
print("Exiting.")
