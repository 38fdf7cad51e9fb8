# Shared by pingpath's own small BCC scripts (kernel_icmp_rtt.py,
# icmp_drop_detector.py in this directory). They have the origin tools'
# command lines and output, so that `pingpath run` can drive them through the
# env file's `tools:` section on the KVM lab (test/e2e/bcc_test.go): real
# BCC, compiled on the node against its kernel headers, real kprobes and
# tracepoints, one line or block per ping. They are test programs, not ports
# of the origin tools: fewer probes, no stack traces.
import datetime
import os
import socket
import struct
import sys

# Debian 12's BCC (0.26) puts its own copy of the UAPI linux/bpf.h in front of
# the kernel's, with the same include guard; the kernel's linux/bpf.h of 6.x
# (pulled in by linux/skbuff.h through linux/filter.h) then takes sizeof of
# types that copy does not define yet ("invalid application of 'sizeof' to an
# incomplete type 'struct bpf_wq'" on 6.12). compat() defines those the BCC
# at hand lacks, as the kernel's UAPI does; harmless on older kernels.
UAPI_TYPES = {
    "bpf_list_head": "struct bpf_list_head { __u64 __opaque[2]; } __attribute__((aligned(8)));",
    "bpf_list_node": "struct bpf_list_node { __u64 __opaque[3]; } __attribute__((aligned(8)));",
    "bpf_rb_root": "struct bpf_rb_root { __u64 __opaque[2]; } __attribute__((aligned(8)));",
    "bpf_rb_node": "struct bpf_rb_node { __u64 __opaque[4]; } __attribute__((aligned(8)));",
    "bpf_refcount": "struct bpf_refcount { __u32 __opaque[1]; } __attribute__((aligned(4)));",
    "bpf_wq": "struct bpf_wq { __u64 __opaque[2]; } __attribute__((aligned(8)));",
}


def compat():
    """The UAPI types BCC's built-in linux/bpf.h lacks (it is compiled into libbcc)."""
    lib = None
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "/libbcc.so" in path:
                lib = path
                break
    if lib is None:
        return ""
    with open(lib, "rb") as f:
        data = f.read()
    return "\n".join(d for t, d in UAPI_TYPES.items() if ("struct %s {" % t).encode() not in data) + "\n"


# The IPv4/ICMP parsing both scripts share. parse_nh reads the packet at the
# network header (set once IP has the packet, and on transmit); parse_data at
# skb->data, which is where the IP header starts at netif_receive_skb (the
# link header was pulled, the network header not reset yet).
PARSE = r"""
#include <uapi/linux/ptrace.h>
#include <linux/skbuff.h>
#include <linux/netdevice.h>
#include <linux/ip.h>
#include <linux/icmp.h>

struct pkt {
    u32 saddr, daddr;
    u16 id, seq;
    u8 type;
};

static __always_inline int parse_at(unsigned char *at, struct pkt *p) {
    struct iphdr iph = {};
    struct icmphdr ic = {};
    if (bpf_probe_read_kernel(&iph, sizeof(iph), at) < 0)
        return -1;
    if (iph.version != 4 || iph.protocol != IPPROTO_ICMP)
        return -1;
    if (bpf_probe_read_kernel(&ic, sizeof(ic), at + iph.ihl * 4) < 0)
        return -1;
    p->saddr = iph.saddr;
    p->daddr = iph.daddr;
    p->type = ic.type;
    p->id = ic.un.echo.id;
    p->seq = ic.un.echo.sequence;
    return 0;
}

static __always_inline int parse_nh(struct sk_buff *skb, struct pkt *p) {
    unsigned char *head = 0;
    u16 nh = 0;
    bpf_probe_read_kernel(&head, sizeof(head), &skb->head);
    bpf_probe_read_kernel(&nh, sizeof(nh), &skb->network_header);
    if (!head || nh == (u16)~0U)
        return -1;
    return parse_at(head + nh, p);
}

static __always_inline int parse_data(struct sk_buff *skb, struct pkt *p) {
    unsigned char *data = 0;
    bpf_probe_read_kernel(&data, sizeof(data), &skb->data);
    if (!data)
        return -1;
    return parse_at(data, p);
}

static __always_inline int ifindex_of(struct sk_buff *skb) {
    struct net_device *dev = 0;
    int i = 0;
    bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
    if (!dev)
        return 0;
    bpf_probe_read_kernel(&i, sizeof(i), &dev->ifindex);
    return i;
}
"""


def require_root():
    if os.geteuid() != 0:
        print("This program must be run as root")
        sys.exit(1)


def ip_hex(ip):
    """The address as the BPF program compares it (network order, read as a u32 on x86)."""
    return struct.unpack("<I", socket.inet_aton(ip))[0]


def ifaces(spec):
    """'eth0,eth1' -> [(name, ifindex)]; exits with a message for an unknown device."""
    out = []
    for name in [n.strip() for n in spec.split(",") if n.strip()]:
        try:
            out.append((name, socket.if_nametoindex(name)))
        except OSError:
            print("Error: interface %s not found" % name)
            sys.exit(1)
    return out


def iface_match(name, idx):
    """A C macro NAME(i) true when i is one of the ifindexes (true for all when none)."""
    if not idx:
        return "#define %s(i) 1\n" % name
    return "#define %s(i) (%s)\n" % (name, " || ".join("(i) == %d" % i for _, i in idx))


def now():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def ntohs(v):
    return ((v & 0xff) << 8) | (v >> 8)


def attach_kprobes(b, fn, names):
    """Attaches fn to the first of names the kernel has (as the origin tools try several)."""
    for n in names:
        try:
            b.attach_kprobe(event=n, fn_name=fn)
            return n
        except Exception:
            continue
    raise Exception("none of %s can be probed" % ", ".join(names))
