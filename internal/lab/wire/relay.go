package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Clock says where a frame's receipt time comes from.
type Clock string

const (
	// ClockKernel (the default) uses the kernel's receive timestamp
	// (SO_TIMESTAMPNS): a delayed frame leaves D after it reached the
	// wire, so the relay's own wake-up latency is hidden inside the delay
	// and the wire adds D plus only a few microseconds (an undelayed frame
	// still pays the wake-up).
	ClockKernel Clock = "kernel"
	// ClockUser stamps a frame when the relay's read returns. Every frame
	// then pays the same wake-up latency with or without delay, so a
	// relay with delay D is D slower than the same relay with 0: the
	// like-for-like comparison.
	ClockUser Clock = "user"
)

// Relay forwards frames between interfaces A and B of the current network
// namespace, applying the impairment in both directions.
//
// An end may be a port channel: its members' names separated by commas
// ("to-sender,to-sender1"), as a switch's static LAG towards a bonded host.
// Frames received on any member go the same way, and the frames towards a
// port channel leave on its members in turn (round robin, frame by frame),
// so a host's bond sees its replies arrive on either member whichever
// member it sent on; a frame is never sent back out of its own end. A
// member whose interface is down is skipped (a switch port whose link was
// lost), so taking a member's port down in the wire namespace is the
// switch's side of pulling that cable.
type Relay struct {
	A, B       string
	Impairment Impairment
	Clock      Clock     // default ClockKernel
	Log        io.Writer // progress and final statistics; nil discards
	// QueueLen bounds the frames in flight per direction (default 4096);
	// a frame arriving at a full queue is dropped and counted.
	QueueLen int
}

// Stats counts one direction.
type Stats struct {
	Received   atomic.Uint64
	Sent       atomic.Uint64
	Lost       atomic.Uint64 // dropped by the loss impairment
	Overflow   atomic.Uint64 // dropped because the queue was full
	SendErrors atomic.Uint64
	// Rerouted counts the frames towards a port channel that left on
	// another member than their turn's, because that member was down.
	Rerouted atomic.Uint64
	// Lateness of delayed frames: how long after its release time each was
	// handed to the kernel.
	LateCount atomic.Uint64
	LateSumNs atomic.Int64
	LateMaxNs atomic.Int64
}

func (s *Stats) String() string {
	mean := time.Duration(0)
	if n := s.LateCount.Load(); n > 0 {
		mean = time.Duration(s.LateSumNs.Load() / int64(n))
	}
	return fmt.Sprintf("received=%d sent=%d lost=%d overflow=%d send_errors=%d rerouted=%d delayed=%d late_mean=%s late_max=%s",
		s.Received.Load(), s.Sent.Load(), s.Lost.Load(), s.Overflow.Load(), s.SendErrors.Load(), s.Rerouted.Load(),
		s.LateCount.Load(), mean, time.Duration(s.LateMaxNs.Load()))
}

// frame is a received frame waiting for its release time.
type frame struct {
	data    []byte
	release int64 // monotonic ns
}

// direction is one way through the relay.
type direction struct {
	name    string
	in, out []int         // packet sockets: the members of each end
	next    atomic.Uint32 // round robin over out
	// schedMu serialises the scheduler between the readers of a port
	// channel's members (one reader per member).
	schedMu sync.Mutex
	sched   *Scheduler
	clock   Clock
	queue   chan frame
	pending atomic.Int64 // frames queued or being sent
	stats   Stats
}

// Run relays until ctx is cancelled. AtoB and BtoA statistics are written to
// Log when it returns.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.Impairment.Validate(); err != nil {
		return err
	}
	clock := r.Clock
	if clock == "" {
		clock = ClockKernel
	}
	if clock != ClockUser && clock != ClockKernel {
		return fmt.Errorf("wire clock %q: want %q or %q", clock, ClockUser, ClockKernel)
	}
	qlen := r.QueueLen
	if qlen <= 0 {
		qlen = 4096
	}
	log := r.Log
	if log == nil {
		log = io.Discard
	}
	fa, err := openEnd(r.A, clock == ClockKernel)
	if err != nil {
		return err
	}
	defer closeAll(fa)
	fb, err := openEnd(r.B, clock == ClockKernel)
	if err != nil {
		return err
	}
	defer closeAll(fb)
	dirs := []*direction{
		{name: r.A + "->" + r.B, in: fa, out: fb, sched: NewScheduler(r.Impairment, 0), clock: clock, queue: make(chan frame, qlen)},
		{name: r.B + "->" + r.A, in: fb, out: fa, sched: NewScheduler(r.Impairment, 1), clock: clock, queue: make(chan frame, qlen)},
	}
	fmt.Fprintf(log, "wire relay %s <-> %s: delay=%s jitter=%s loss=%g%% seed=%d clock=%s\n",
		r.A, r.B, r.Impairment.Delay, r.Impairment.Jitter, r.Impairment.Loss, r.Impairment.Seed, clock)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(fa)+len(fb))
	for _, d := range dirs {
		for _, in := range d.in {
			wg.Add(1)
			go func() { defer wg.Done(); errc <- d.receive(ctx, in) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); d.send(ctx) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		cancel()
	}
	wg.Wait()
	for _, d := range dirs {
		fmt.Fprintf(log, "wire %s: %s\n", d.name, &d.stats)
	}
	return runErr
}

// openPacketSocket opens an AF_PACKET socket bound to ifname that sees every
// frame the interface receives (not those it sends).
// openEnd opens a packet socket on each member of an end (one interface,
// or a port channel's members separated by commas).
func openEnd(end string, kernelTimestamps bool) ([]int, error) {
	var fds []int
	for _, name := range strings.Split(end, ",") {
		fd, err := openPacketSocket(name, kernelTimestamps)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func openPacketSocket(ifname string, kernelTimestamps bool) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, fmt.Errorf("wire interface %s: %w", ifname, err)
	}
	// Protocol 0 until bound, so no frame of another interface is queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening packet socket on %s: %w", ifname, err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket on %s: %s: %w", ifname, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if kernelTimestamps {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fail("SO_TIMESTAMPNS", err)
		}
	}
	// A receive timeout lets the reader notice cancellation.
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// monoNow is CLOCK_MONOTONIC in nanoseconds.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// receive reads frames, stamps and schedules them. A frame that is due
// already (no delay) and has nothing queued before it is sent right away
// from this goroutine, saving a thread hand-off.
func (d *direction) receive(ctx context.Context, in int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	realtime()
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for ctx.Err() == nil {
		n, oobn, flags, from, err := unix.Recvmsg(in, buf, oob, 0)
		// ENETDOWN is reported once when the interface goes down (a port
		// channel's member taken down); the socket receives again once it
		// is up.
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENETDOWN) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wire %s: receiving: %w", d.name, err)
		}
		now := monoNow()
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			d.stats.SendErrors.Add(1)
			continue
		}
		d.stats.Received.Add(1)
		rx := now
		if d.clock == ClockKernel {
			rx = kernelRx(oob[:oobn], now)
		}
		d.schedMu.Lock()
		release, keep := d.sched.Schedule(rx, !lossExempt(buf[:n]))
		d.schedMu.Unlock()
		if !keep {
			d.stats.Lost.Add(1)
			continue
		}
		if release <= now && d.pending.Load() == 0 {
			d.write(buf[:n])
			continue
		}
		d.pending.Add(1)
		select {
		case d.queue <- frame{data: append([]byte(nil), buf[:n]...), release: release}:
		default:
			d.pending.Add(-1)
			d.stats.Overflow.Add(1)
		}
	}
	return nil
}

// kernelRx converts the kernel's CLOCK_REALTIME receive timestamp in the
// control messages into CLOCK_MONOTONIC, falling back to now when there is
// none or it is implausible (clock stepped).
func kernelRx(oob []byte, now int64) int64 {
	ts, ok := RxTimestamp(oob)
	if !ok {
		return now
	}
	// time.Now reads CLOCK_REALTIME through the vDSO; unix.ClockGettime
	// would be a system call on every frame.
	age := time.Now().UnixNano() - ts
	if age < 0 || age > int64(time.Second) {
		return now
	}
	return now - age
}

// RxTimestamp returns the SO_TIMESTAMPNS receive timestamp (CLOCK_REALTIME,
// ns) from a recvmsg's control messages. It walks them one at a time
// rather than with ParseSocketControlMessage, which allocates, because it
// runs for every frame.
func RxTimestamp(oob []byte) (int64, bool) {
	for len(oob) >= unix.CmsgLen(0) {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			return (*unix.Timespec)(unsafe.Pointer(&data[0])).Nano(), true
		}
		oob = rest
	}
	return 0, false
}

// send releases queued frames at their time: it sleeps until shortly before
// (clock_nanosleep with 1 ns timer slack) and spins for the rest, so a frame
// leaves within a few microseconds of its release time.
func (d *direction) send(ctx context.Context) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	realtime()
	for {
		var f frame
		select {
		case <-ctx.Done():
			return
		case f = <-d.queue:
		}
		late := waitUntil(f.release) - f.release
		d.write(f.data)
		d.pending.Add(-1)
		d.stats.LateCount.Add(1)
		d.stats.LateSumNs.Add(late)
		for {
			m := d.stats.LateMaxNs.Load()
			if late <= m || d.stats.LateMaxNs.CompareAndSwap(m, late) {
				break
			}
		}
	}
}

// realtime moves the calling thread to SCHED_FIFO (best effort; it needs
// CAP_SYS_NICE, which lab up has as root). A busy machine then delays the
// relay's wake-ups by microseconds instead of a scheduler slice, which is
// what keeps the injected delay precise while other tests run. The threads
// only spin for the last spinWindow before each release, so they cannot
// monopolise a CPU at the packet rates the lab is for (and the kernel's RT
// throttling caps them at 95% anyway).
func realtime() {
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 10}, 0)
}

// spinWindow is how long before a release time the sender stops sleeping
// and spins: more than the wake-up latency of a sleeping thread.
const spinWindow = 100 * time.Microsecond

// waitUntil returns at monotonic time t (or right away if t has passed),
// with the time it read last, so the caller needs no clock read of its own.
func waitUntil(t int64) int64 {
	for {
		now := monoNow()
		left := t - now
		if left <= 0 {
			return now
		}
		if left > int64(spinWindow) {
			ts := unix.NsecToTimespec(t - int64(spinWindow))
			_ = unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
			continue
		}
		for now < t {
			now = monoNow()
		}
		return now
	}
}

func (d *direction) write(b []byte) {
	n := len(d.out)
	first := 0
	if n > 1 {
		first = int(d.next.Add(1)-1) % n
	}
	for i := range n {
		err := writeFrame(d.out[(first+i)%n], b)
		if err == nil {
			d.stats.Sent.Add(1)
			if i > 0 {
				d.stats.Rerouted.Add(1)
			}
			return
		}
		// A port channel's member that is down (ENETDOWN: its port is
		// administratively down, as a switch port whose link was lost) is
		// skipped, as a switch's LAG sends only on the members that are
		// up; any other error, or every member down, loses the frame.
		if !errors.Is(err, unix.ENETDOWN) {
			break
		}
	}
	d.stats.SendErrors.Add(1)
}

// writeFrame sends one frame on a packet socket, retrying an interrupted write.
func writeFrame(fd int, b []byte) error {
	for {
		_, err := unix.Write(fd, b)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
