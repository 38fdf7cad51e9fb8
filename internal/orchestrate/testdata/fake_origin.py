#!/usr/bin/env python3
# A stand-in for the origin BCC tools: prints a banner like the tool named by
# FAKE_TOOL (its argv), its readiness line, then waits for SIGINT
# (KeyboardInterrupt) and exits 0 like the real scripts.
import os, sys, time
name = os.path.basename(sys.argv[0])
print("=== fake %s ===" % name)
print("argv: %s" % " ".join(sys.argv[1:]))
ready = {
    "kernel_icmp_rtt.py": "Tracing ICMP RTT (src=x, dst=y, dir=tx) ... Hit Ctrl-C to end.",
    "icmp_drop_detector.py": "Tracing... Hit Ctrl-C to end.",
    "tun_tx_to_kvm_irq.py": "Maps cleared. Ready for tracing.",
    "kvm_vhost_tun_latency_no_discovery.py": "Tracing... Hit Ctrl+C to end.",
}[name]
time.sleep(0.1)
print(ready)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print("Detaching...")
    sys.exit(0)
