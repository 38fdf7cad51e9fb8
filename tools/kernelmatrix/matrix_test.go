package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleOutput = `=== RUN   TestGuestA
    a_test.go:10: hello
--- PASS: TestGuestA (0.10s)
=== RUN   TestTraceRealPackets
=== RUN   TestTraceRealPackets/bridge
    real_test.go:72: background UDP datagrams: 1800
=== RUN   TestTraceRealPackets/vlan
    real_test.go:36: skipping: 802.1Q VLAN devices (CONFIG_VLAN_8021Q)
--- PASS: TestTraceRealPackets (12.61s)
    --- PASS: TestTraceRealPackets/bridge (7.41s)
    --- SKIP: TestTraceRealPackets/vlan (0.09s)
=== RUN   TestGuestB
    b_test.go:5: runs in the kernel matrix only: x
--- SKIP: TestGuestB (0.00s)
=== RUN   TestGuestC
=== RUN   TestGuestC/sub
    c_test.go:7: want 1, got 2
    c_test.go:8: second
--- FAIL: TestGuestC (1.00s)
    --- FAIL: TestGuestC/sub (1.00s)
=== RUN   TestGuestD
panic: boom
`

func TestParseTestOutput(t *testing.T) {
	got := parseTestOutput(sampleOutput, []string{"TestGuestA", "TestTraceRealPackets", "TestGuestB", "TestGuestC", "TestGuestD"})
	want := []outcome{
		{Test: "TestGuestA", Status: statusPass, Elapsed: "0.10s"},
		{Test: "TestTraceRealPackets", Status: statusPass, Elapsed: "12.61s",
			Reason: "subtest vlan skipped: real_test.go:36: skipping: 802.1Q VLAN devices (CONFIG_VLAN_8021Q)"},
		{Test: "TestGuestB", Status: statusSkip, Elapsed: "0.00s", Reason: "b_test.go:5: runs in the kernel matrix only: x"},
		{Test: "TestGuestC", Status: statusFail, Elapsed: "1.00s", Reason: "sub: c_test.go:7: want 1, got 2 / c_test.go:8: second"},
		{Test: "TestGuestD"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d outcomes, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("outcome %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestSettleNeverPassesACrash(t *testing.T) {
	r := jobResult{exitCode: 2, outcomes: parseTestOutput(sampleOutput, []string{"TestGuestA", "TestGuestD"})}
	r.settle(sampleOutput, "")
	if r.outcomes[1].Status != statusFail || !strings.Contains(r.outcomes[1].Reason, "panic: boom") {
		t.Errorf("test without a result: %+v", r.outcomes[1])
	}
	// A binary that exits non-zero after every test passed fails as a package.
	r = jobResult{exitCode: 1, outcomes: parseTestOutput(sampleOutput, []string{"TestGuestA"})}
	r.settle("FAIL\n", "[ 1.0] Kernel panic - not syncing: x\n")
	if n := len(r.outcomes); n != 2 || r.outcomes[1].Test != "(package)" || r.outcomes[1].Status != statusFail {
		t.Errorf("non-zero exit with all tests passed: %+v", r.outcomes)
	}
}

func TestCrashSummary(t *testing.T) {
	console := "[    1.0] ok\n[   24.8] Oops: general protection fault: 0000\n[   24.8] RIP: 0010:do_sync_core+0x28/0x30\n[   24.9] Kernel panic - not syncing: Fatal exception\n"
	got := crashSummary(console)
	want := "Oops: general protection fault: 0000 / RIP: 0010:do_sync_core+0x28/0x30 / Kernel panic - not syncing: Fatal exception"
	if got != want {
		t.Errorf("crashSummary = %q, want %q", got, want)
	}
}

func TestKernelRungs(t *testing.T) {
	all := []string{"auto", "fentry", "kprobe", "tracepoint", "perf"}
	got, err := parseKernelRungs("6.12-arm64=auto+perf, 6.1-arm64=kprobe, 5.10=auto+btf-file")
	if err != nil {
		t.Fatal(err)
	}
	m := &Matrix{rungs: all, kernelRungs: got}
	if r := strings.Join(m.rungsOf("6.12-arm64"), ","); r != "auto,perf" {
		t.Errorf("6.12-arm64: %s", r)
	}
	if r := strings.Join(m.rungsOf("6.1-arm64"), ","); r != "kprobe" {
		t.Errorf("6.1-arm64: %s", r)
	}
	if r := strings.Join(m.rungsOf("5.10"), ","); r != "auto,btf-file" {
		t.Errorf("5.10 (a rung -rungs lacks): %s", r)
	}
	if r := strings.Join(m.rungsOf("6.12"), ","); r != strings.Join(all, ",") {
		t.Errorf("6.12 (not named): %s", r)
	}
	for _, bad := range []string{"6.12-arm64", "6.12-arm64=", "=auto", "6.12-arm64=nosuch"} {
		if _, err := parseKernelRungs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestWithRetry: a failed test's retry replaces it and keeps the first
// failure as a note; passing tests stay as they were.
func TestWithRetry(t *testing.T) {
	first := jobResult{log: "logs/x.log", total: time.Minute, outcomes: []outcome{
		{Test: "TestA", Status: statusPass},
		{Test: "TestB", Status: statusFail, Reason: "ping lost [5]"},
		{Test: "TestC", Status: statusFail, Reason: "no result"},
	}}
	if got := failedTests(first); !slices.Equal(got, []string{"TestB", "TestC"}) {
		t.Fatalf("failedTests = %q", got)
	}
	second := jobResult{log: "logs/x-retry.log", total: time.Minute, outcomes: []outcome{
		{Test: "TestA", Status: statusFail, Reason: "no result"}, // not run the second time
		{Test: "TestB", Status: statusPass},
		{Test: "TestC", Status: statusFail, Reason: "timeout"},
	}}
	r := withRetry(first, second)
	want := []outcome{
		{Test: "TestA", Status: statusPass},
		{Test: "TestB", Status: statusPass, Retry: "first try FAIL: ping lost [5] (log logs/x.log)"},
		{Test: "TestC", Status: statusFail, Reason: "timeout", Retry: "first try FAIL: no result (log logs/x.log)"},
	}
	if !slices.Equal(r.outcomes, want) {
		t.Errorf("outcomes:\n got %+v\nwant %+v", r.outcomes, want)
	}
	if r.total != 2*time.Minute || first.outcomes[1].Status != statusFail {
		t.Errorf("total %v, first changed: %+v", r.total, first.outcomes)
	}
}
