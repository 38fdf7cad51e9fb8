package nettest

import (
	"strconv"
	"strings"
)

// IPCounters parses the IPv4 counters out of /proc/net/snmp's text: its
// "Ip:" header line names them, the next "Ip:" line holds their values
// (e.g. FragCreates, ReasmOKs). Empty when there are none.
func IPCounters(snmp string) map[string]uint64 {
	var names []string
	out := map[string]uint64{}
	for _, line := range strings.Split(snmp, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				out[names[i]], _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return out
}
