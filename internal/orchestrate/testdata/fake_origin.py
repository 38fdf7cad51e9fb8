#!/usr/bin/env python3
# A stand-in for the origin BCC tools: prints a banner like the tool named by
# its argv[0], its readiness line, then waits for SIGINT (KeyboardInterrupt)
# and exits 0 like the real scripts. It counts the SIGINTs it gets: the real
# tools detach and print their summaries in their KeyboardInterrupt handler,
# which a second SIGINT would interrupt (a traceback, the summary lost).
import os, signal, sys, time
name = os.path.basename(sys.argv[0])
print("=== fake %s ===" % name)
print("argv: %s" % " ".join(sys.argv[1:]))
ready = {
    "kernel_icmp_rtt.py": "Tracing ICMP RTT (src=x, dst=y, dir=tx) ... Hit Ctrl-C to end.",
    "icmp_drop_detector.py": "Tracing... Hit Ctrl-C to end.",
    "tun_tx_to_kvm_irq.py": "Maps cleared. Ready for tracing.",
    "kvm_vhost_tun_latency_no_discovery.py": "Tracing... Hit Ctrl+C to end.",
}[name]
sigints = 0


def on_sigint(sig, frame):
    global sigints
    sigints += 1
    if sigints == 1:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, on_sigint)
time.sleep(0.1)
print(ready)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    time.sleep(0.3)  # where the real tools detach their probes
    print("Detaching...")
    print("SIGINTs: %d" % sigints)
    sys.exit(0)
