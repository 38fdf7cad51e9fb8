#!/bin/sh
# A stand-in for `pingpath trace TOOL ...` in orchestrator unit tests: it
# prints a header, the ready line, then waits for stdin EOF (like
# --stop-on-stdin-eof, or sleeps for --duration) and prints a trailer. FAKE_HANG names tools that never
# become ready; FAKE_EXIT names tools that fail at once; FAKE_READY_DELAY
# delays the ready line; FAKE_KILL_AFTER_READY names tools killed (SIGKILL)
# once ready; FAKE_ARGS_DIR receives the argv and start time.
[ "$1" = trace ] || { echo "fake pingpath: unsupported: $*" >&2; exit 2; }
tool=$2
shift 2
case " $FAKE_HANG " in *" $tool "*) exec sleep 120 ;; esac
case " $FAKE_EXIT " in *" $tool "*) echo "attaching: operation not permitted" >&2; exit 1 ;; esac
if [ -n "$FAKE_ARGS_DIR" ]; then
	echo "$*" > "$FAKE_ARGS_DIR/$tool.$$"
	date +%s%N > "$FAKE_ARGS_DIR/$ROLE.$tool.$$.start"
fi
[ -n "$FAKE_READY_DELAY" ] && sleep "$FAKE_READY_DELAY"
printf '{"type":"header","schema":"pingpath.trace/v1","tool":"%s","version":"fake","kernel":"k","hostname":"h","netns":1,"clock":"CLOCK_MONOTONIC","start_mono_ns":1,"start_wall_ns":1,"probes":[{"stage":"s1","method":"tracepoint","target":"net/netif_receive_skb","available":true},{"stage":"s2","available":false,"reason":"no vhost"}]}\n' "$tool"
echo "ready tool=$tool pid=$$ probes=s1=tracepoint" >&2
case " $FAKE_KILL_AFTER_READY " in *" $tool "*) sleep 0.2; kill -9 $$ ;; esac
dur= prev=
for a; do
	[ "$prev" = --duration ] && dur=${a%s}
	prev=$a
done
trailer() { echo "{\"type\":\"trailer\",\"end_mono_ns\":2,\"exit_reason\":\"$1\",\"counters\":{\"events\":0}}"; exit 0; }
trap 'trailer signal' INT TERM
if [ -n "$dur" ]; then
	sleep "$dur"
	trailer duration
fi
cat >/dev/null
trailer stdin-eof
