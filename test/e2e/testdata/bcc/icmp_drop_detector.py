#!/usr/bin/env python3
# pingpath's own small icmp_drop_detector.py (see pingpath_bcc.py): the
# origin host tool's flags and --verbose output. Four stages of a ping through
# a host, each recorded once (first wins) and reported to user space with the
# flow's timestamps so far:
#
#   [0] ReqRX  tracepoint net:netif_receive_skb, request on --rx-iface (creates the flow)
#   [1] ReqTX  kprobe __dev_queue_xmit, request on --tx-iface
#   [2] RepRX  tracepoint net:netif_receive_skb, reply on --tx-iface
#   [3] RepTX  kprobe __dev_queue_xmit, reply on --rx-iface (ends the flow)
#
# A flow not complete --timeout-ms after user space first saw it is reported
# as a drop where it stopped; Ctrl-C prints the statistics.
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pingpath_bcc as pb  # noqa: E402

parser = argparse.ArgumentParser(description="ICMP path and drops through a host")
parser.add_argument("--src-ip", required=True, help="the echo request's source (sender VM)")
parser.add_argument("--dst-ip", required=True, help="the echo request's destination (receiver VM)")
parser.add_argument("--rx-iface", required=True, help="where the request comes in (comma list)")
parser.add_argument("--tx-iface", required=True, help="where the request goes out (comma list)")
parser.add_argument("--timeout-ms", type=int, default=1000)
parser.add_argument("--verbose", action="store_true", help="print every stage and the latencies")
args = parser.parse_args()
pb.require_root()

from bcc import BPF  # noqa: E402

rx, txi = pb.ifaces(args.rx_iface), pb.ifaces(args.tx_iface)
STAGES = ["ReqRX", "ReqTX", "RepRX", "RepTX"]

text = pb.compat() + pb.PARSE + pb.iface_match("ON_RX", rx) + pb.iface_match("ON_TX", txi) + r"""
#define SRC_IP 0x%x
#define DST_IP 0x%x

struct key_t {
    u16 id, seq;
};

struct event_t {
    u64 ts[4];
    u16 id, seq;
    u32 stage;
};

BPF_HASH(flows, struct key_t, struct event_t, 10240);
BPF_PERF_OUTPUT(events);

static __always_inline int seen(void *ctx, struct sk_buff *skb, int receive) {
    struct pkt p = {};
    if ((receive ? parse_data(skb, &p) : parse_nh(skb, &p)) < 0)
        return 0;
    int stage, ifi = ifindex_of(skb);
    if (p.type == 8 && p.saddr == SRC_IP && p.daddr == DST_IP) {
        if (receive && ON_RX(ifi))
            stage = 0;
        else if (!receive && ON_TX(ifi))
            stage = 1;
        else
            return 0;
    } else if (p.type == 0 && p.saddr == DST_IP && p.daddr == SRC_IP) {
        if (receive && ON_TX(ifi))
            stage = 2;
        else if (!receive && ON_RX(ifi))
            stage = 3;
        else
            return 0;
    } else {
        return 0;
    }
    struct key_t key = {.id = p.id, .seq = p.seq};
    struct event_t *f;
    if (stage == 0) {
        struct event_t zero = {};
        f = flows.lookup_or_try_init(&key, &zero);
    } else {
        f = flows.lookup(&key);
    }
    if (!f || f->ts[stage])
        return 0;
    f->ts[stage] = bpf_ktime_get_ns();
    f->id = p.id;
    f->seq = p.seq;
    f->stage = stage;
    events.perf_submit(ctx, f, sizeof(*f));
    if (stage == 3)
        flows.delete(&key);
    return 0;
}

int on_xmit(struct pt_regs *ctx) {
    return seen(ctx, (struct sk_buff *)PT_REGS_PARM1(ctx), 0);
}

TRACEPOINT_PROBE(net, netif_receive_skb) {
    return seen(args, (struct sk_buff *)args->skbaddr, 1);
}
""" % (pb.ip_hex(args.src_ip), pb.ip_hex(args.dst_ip))

print("=== ICMP Drop Detector ===")
print("Source IP: %s" % args.src_ip)
print("Destination IP: %s" % args.dst_ip)
print("RX Interface(s): %s" % ", ".join("%s(ifindex=%d)" % i for i in rx))
print("TX Interface(s): %s" % ", ".join("%s(ifindex=%d)" % i for i in txi))
print("Timeout: %d ms" % args.timeout_ms)
print()
print("Flow path:")
print("  [0] Request RX at %s" % args.rx_iface)
print("  [1] Request TX at %s" % args.tx_iface)
print("  [2] Reply RX at %s" % args.tx_iface)
print("  [3] Reply TX at %s" % args.rx_iface)
print()

b = BPF(text=text, cflags=["-w"])  # -w: the kernel headers warn under BCC's clang
pb.attach_kprobes(b, "on_xmit", ["__dev_queue_xmit", "dev_queue_xmit"])

flows = {}  # (id, seq) -> {"ts": [4], "first": monotonic seconds}
done = set()  # (id, seq) of the flows completed or reported
stats = {"tracked": 0, "complete": 0, "req_internal": 0, "external": 0, "rep_internal": 0}


def status(ts):
    return " ".join("%s:%s" % (n, "Y" if ts[i] else "-") for i, n in enumerate(STAGES))


def event(cpu, data, size):
    e = b["events"].event(data)
    key = (pb.ntohs(e.id), pb.ntohs(e.seq))
    if key in done:
        return  # an earlier stage's event read after the flow ended
    f = flows.get(key)
    if f is None:
        # Every event carries the flow's timestamps so far, so a ping whose
        # later stage is read first (per-CPU rings are read one after the
        # other) still starts its flow (the origin ignores such an event
        # and then reports a false drop).
        f = flows[key] = {"ts": [0, 0, 0, 0], "first": time.monotonic()}
        stats["tracked"] += 1
        kind = "new"
    else:
        kind = "update"
    for i in range(4):
        if e.ts[i] and not f["ts"][i]:
            f["ts"][i] = e.ts[i]
    ts = f["ts"]
    if ts[3]:
        kind = "complete"
    if args.verbose:
        print("%s [%s] ID=%d Seq=%d %s" % (pb.now(), kind, key[0], key[1], status(ts)))
    if kind == "complete":
        stats["complete"] += 1
        del flows[key]
        done.add(key)
        if args.verbose:
            def d(a, z):
                return (ts[z] - ts[a]) / 1000.0 if ts[a] and ts[z] else 0
            print("  Latency(us): ReqInternal=%.1f  External=%.1f  RepInternal=%.1f  Total=%.1f" % (
                d(0, 1), d(1, 2), d(2, 3), d(0, 3)))
            print("-" * 80)


def check_drops():
    limit = time.monotonic() - args.timeout_ms / 1000.0
    for key, f in list(flows.items()):
        if f["first"] > limit:
            continue
        del flows[key]
        done.add(key)
        ts = f["ts"]
        print()
        print("=== ICMP Drop Detected: %s ===" % pb.now())
        print("Flow: %s -> %s (ID=%d, Seq=%d)" % (args.src_ip, args.dst_ip, key[0], key[1]))
        for i, n in enumerate(STAGES):
            print("  [%d] %s: %s" % (i, n, "recorded" if ts[i] else "MISSING"))
        print()
        if not ts[1]:
            stats["req_internal"] += 1
            print("Drop Location: Request dropped INTERNALLY")
            print("  Request received at %s but NOT sent from %s" % (args.rx_iface, args.tx_iface))
        elif not ts[2]:
            stats["external"] += 1
            print("Drop Location: EXTERNAL (network or peer)")
            print("  Request sent from %s but Reply NOT received at %s" % (args.tx_iface, args.tx_iface))
        else:
            stats["rep_internal"] += 1
            print("Drop Location: Reply dropped INTERNALLY")
            print("  Reply received at %s but NOT sent from %s" % (args.tx_iface, args.rx_iface))


b["events"].open_perf_buffer(event, page_cnt=64)
print("Tracing... Hit Ctrl-C to end.")
print()
last = time.monotonic()
try:
    while True:
        b.perf_buffer_poll(timeout=200)
        if time.monotonic() - last >= 1:
            check_drops()
            last = time.monotonic()
except KeyboardInterrupt:
    pass
print()
print("Detaching...")
print()
print("=== ICMP Flow Statistics ===")
print("Total flows tracked: %d" % stats["tracked"])
print("Complete flows: %d" % stats["complete"])
print("Request internal drops: %d" % stats["req_internal"])
print("External drops: %d" % stats["external"])
print("Reply internal drops: %d" % stats["rep_internal"])
