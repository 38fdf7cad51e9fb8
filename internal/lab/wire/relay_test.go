package wire

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// timestampCmsg encodes an SCM_TIMESTAMPNS control message as recvmsg
// returns it.
func timestampCmsg(ns int64) []byte {
	ts := unix.NsecToTimespec(ns)
	size := int(unsafe.Sizeof(ts))
	b := make([]byte, unix.CmsgSpace(size))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(size))
	*(*unix.Timespec)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = ts
	return b
}

func TestRxTimestamp(t *testing.T) {
	const want = int64(1_700_000_000_123_456_789)
	// Another control message first, then the timestamp.
	oob := append(unix.UnixRights(7), timestampCmsg(want)...)
	if got, ok := RxTimestamp(oob); !ok || got != want {
		t.Fatalf("RxTimestamp = %d, %v; want %d, true", got, ok, want)
	}
	if _, ok := RxTimestamp(unix.UnixRights(7)); ok {
		t.Fatal("RxTimestamp found a timestamp in SCM_RIGHTS only")
	}
	if _, ok := RxTimestamp(nil); ok {
		t.Fatal("RxTimestamp found a timestamp in no control messages")
	}
	if _, ok := RxTimestamp(timestampCmsg(want)[:unix.CmsgLen(0)-1]); ok {
		t.Fatal("RxTimestamp found a timestamp in a truncated header")
	}
}

// BenchmarkKernelRx is the per-frame cost of turning the kernel's receive
// timestamp into a monotonic receive time (ClockKernel).
func BenchmarkKernelRx(b *testing.B) {
	oob := timestampCmsg(time.Now().UnixNano() - 1000)
	if _, ok := RxTimestamp(oob); !ok {
		b.Fatal("no timestamp")
	}
	b.ReportAllocs()
	for b.Loop() {
		kernelRx(oob, monoNow())
	}
}
