package nettest

import "testing"

func TestIPCounters(t *testing.T) {
	got := IPCounters("Ip: Forwarding FragOKs FragCreates\nIp: 1 11 22\nIcmp: InMsgs\nIcmp: 3\n")
	if len(got) != 3 || got["FragCreates"] != 22 || got["FragOKs"] != 11 || got["Forwarding"] != 1 {
		t.Errorf("IPCounters = %v", got)
	}
	if got := IPCounters("Tcp: A\nTcp: 1\n"); len(got) != 0 {
		t.Errorf("IPCounters without Ip: = %v", got)
	}
}
