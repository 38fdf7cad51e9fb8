package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pingpath/pingpath/internal/kernel"
)

// Event buffers: how events leave the kernel (--event-buffer, the header's
// event_buffer). A BPF ring buffer (5.8+) is one buffer shared by all CPUs;
// a perf event array is one buffer per CPU and works on 4.x kernels. The BPF
// objects carry both; pp_perf_events (a load-time constant) picks one.
const (
	EventBufferAuto = "auto"
	EventBufferRing = "ringbuf"
	EventBufferPerf = "perf"
)

// PerfMap is the perf event array every pingpath object has (pingpath.h).
const PerfMap = "pp_perf"

// perfEventsVar selects the perf event array in the BPF programs.
const perfEventsVar = "pp_perf_events"

// wakeEvery is how many events of a CPU wake the reader (PP_WAKE_EVERY in
// pingpath.h): in between, the reader finds them on its 100 ms tick.
const wakeEvery = 512

// minPerfBytes is the smallest per-CPU perf buffer: wakeEvery events of the
// largest event (~120 bytes with its header) twice over, so that a CPU
// bursting while its reader is being woken does not lose events.
const minPerfBytes = 128 << 10

// PerfReorderWindow is the reorder window a tool that otherwise takes its
// events as they arrive uses with the perf event array: the ring buffer is
// read in the order its records were reserved (a reader cannot pass a
// record still being written), the per-CPU perf buffers in no common order,
// and a program stamped on one CPU and delayed before it sends (preempted,
// or its vCPU descheduled under emulation) arrives after later events of
// other CPUs. The host tracer's window, ReorderWindow, is as long.
const PerfReorderWindow = 250 * time.Millisecond

// EventBufferUser is a Tool that needs to know the event buffer before
// Start (the runner tells it): the vm tracer keys its events per ping and
// takes them unordered from the ring buffer, but needs a reorder window
// with the perf event array.
type EventBufferUser interface {
	UseEventBuffer(buffer string)
}

// ParseEventBuffer checks an --event-buffer value ("" is auto).
func ParseEventBuffer(s string) (string, error) {
	switch s {
	case "":
		return EventBufferAuto, nil
	case EventBufferAuto, EventBufferRing, EventBufferPerf:
		return s, nil
	}
	return "", &UsageError{fmt.Errorf("--event-buffer %q: want auto, ringbuf or perf", s)}
}

// ChooseEventBuffer resolves want (auto, ringbuf, perf) on this kernel:
// auto is the ring buffer where the kernel has ring buffers and the perf
// event array elsewhere. ringSupport is kernel.MapTypeSupport(ebpf.RingBuf)
// (tests fabricate it). The reason says why auto chose perf ("" otherwise).
func ChooseEventBuffer(want string, ringSupport func() error) (buffer, reason string, err error) {
	switch want {
	case EventBufferPerf:
		return EventBufferPerf, "", nil
	case EventBufferRing:
		if err := ringSupport(); err != nil {
			return "", "", &UsageError{fmt.Errorf("--event-buffer ringbuf: this kernel has no BPF ring buffer (%w); use auto or perf", err)}
		}
		return EventBufferRing, "", nil
	case EventBufferAuto, "":
		if err := ringSupport(); err != nil {
			return EventBufferPerf, "no BPF ring buffer: " + err.Error(), nil
		}
		return EventBufferRing, "", nil
	}
	return "", "", &UsageError{fmt.Errorf("--event-buffer %q: want auto, ringbuf or perf", want)}
}

// RingBufferSupport returns nil when the kernel has BPF ring buffers.
func RingBufferSupport() error { return kernel.MapTypeSupport(ebpf.RingBuf) }

// ConfigureEventBuffer sets up spec for buffer: the programs' switch, and a
// one-entry placeholder for the map the programs will not use (the verifier
// drops their code for it, but the map must exist: a kernel without ring
// buffers cannot create one, and a perf event array needs no room).
// ringBytes sizes the ring buffer (0: the object's default).
func ConfigureEventBuffer(spec *ebpf.CollectionSpec, buffer string, ringBytes uint32) error {
	ring, perfArr := spec.Maps[EventsMap], spec.Maps[PerfMap]
	if ring == nil || perfArr == nil {
		return fmt.Errorf("BPF object without maps %s and %s", EventsMap, PerfMap)
	}
	v, ok := spec.Variables[perfEventsVar]
	if !ok {
		return fmt.Errorf("BPF object without variable %s", perfEventsVar)
	}
	perf := buffer == EventBufferPerf
	var flag uint8
	if perf {
		flag = 1
	}
	if err := v.Set(flag); err != nil {
		return fmt.Errorf("setting %s: %w", perfEventsVar, err)
	}
	if perf {
		spec.Maps[EventsMap] = placeholderMap(EventsMap)
		return nil
	}
	if ringBytes != 0 {
		ring.MaxEntries = ringBytes
	}
	perfArr.MaxEntries = 1 // unused: one slot instead of one per CPU
	return nil
}

func placeholderMap(name string) *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
}

// PerfBufferBytes is the per-CPU perf buffer for a ring of ringBytes on
// cpus CPUs: the same memory in all. With the default ring (ringBytes 0,
// 4 MiB) at least minPerfBytes per CPU; a size the caller chose is kept
// (at least a page). The reader rounds it up to a power of two pages.
func PerfBufferBytes(ringBytes uint32, cpus int) int {
	if ringBytes == 0 {
		return max((4<<20)/max(cpus, 1), minPerfBytes)
	}
	return max(int(ringBytes)/max(cpus, 1), os.Getpagesize())
}

// eventReader reads the raw events of either buffer.
type eventReader interface {
	// next returns the next event's bytes (valid until the following
	// call), or os.ErrDeadlineExceeded when none came before the deadline.
	next() ([]byte, error)
	// lostRecords is the number of events the kernel reported lost to
	// the reader (perf lost-sample records; 0 for the ring buffer).
	lostRecords() uint64
	SetDeadline(time.Time)
	Close() error
}

// openEventReader opens the reader of the loaded collection's buffer.
func openEventReader(coll *ebpf.Collection, buffer string, ringBytes uint32) (eventReader, error) {
	if buffer == EventBufferPerf {
		m := coll.Maps[PerfMap]
		rd, err := perf.NewReaderWithOptions(m, PerfBufferBytes(ringBytes, int(m.MaxEntries())), perf.ReaderOptions{WakeupEvents: wakeEvery})
		if err != nil {
			return nil, fmt.Errorf("opening perf event buffers: %w", err)
		}
		return &perfReader{rd: rd}, nil
	}
	rd, err := ringbuf.NewReader(coll.Maps[EventsMap])
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	return &ringReader{rd: rd}, nil
}

type ringReader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
}

func (r *ringReader) next() ([]byte, error) {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return nil, err
	}
	return r.rec.RawSample, nil
}

func (r *ringReader) lostRecords() uint64     { return 0 }
func (r *ringReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }
func (r *ringReader) Close() error            { return r.rd.Close() }

// perfReader hands out the events of all CPUs' perf buffers in timestamp
// order, batch by batch. The perf reader empties one CPU's buffer after
// another, so a tick's worth of one CPU's events (up to 100 ms of them)
// would come before an earlier event of another CPU, more out of order than
// the tracers' reorder windows allow (vhost's is 5 ms). So next takes what
// every buffer holds at that moment and sorts it by the events' timestamp
// (the first field of every event, struct pp_event.ts): events of two
// batches are out of order by at most the time one batch takes to read,
// as in the ring buffer, where events are in the order they were reserved.
type perfReader struct {
	rd       *perf.Reader
	rec      perf.Record
	deadline time.Time
	batch    [][]byte // sorted; batch[pos:] not handed out yet
	pos      int
	lost     uint64
}

func (r *perfReader) next() ([]byte, error) {
	if r.pos < len(r.batch) {
		r.pos++
		return r.batch[r.pos-1], nil
	}
	r.batch, r.pos = r.batch[:0], 0
	// Wait (up to the deadline) for one event, then take whatever else is
	// in the buffers without waiting.
	if err := r.read(); err != nil {
		return nil, err
	}
	r.rd.SetDeadline(time.Now())
	for {
		err := r.read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			r.rd.SetDeadline(r.deadline)
			return nil, err
		}
	}
	r.rd.SetDeadline(r.deadline)
	sort.SliceStable(r.batch, func(i, j int) bool { return eventTS(r.batch[i]) < eventTS(r.batch[j]) })
	r.pos = 1
	return r.batch[0], nil
}

// read appends the next event to the batch (a copy: the reader reuses its
// buffer), counting and skipping the kernel's lost-sample records (see
// Loaded.EventsLost for how they join the programs' own count).
func (r *perfReader) read() error {
	for {
		if err := r.rd.ReadInto(&r.rec); err != nil {
			if errors.Is(err, perf.ErrFlushed) {
				return os.ErrDeadlineExceeded
			}
			return err
		}
		if r.rec.LostSamples == 0 {
			r.batch = append(r.batch, append([]byte(nil), r.rec.RawSample...))
			return nil
		}
		r.lost += r.rec.LostSamples
	}
}

// eventTS is an event's bpf_ktime_get_ns (struct pp_event.ts, first in
// every event; the objects are little-endian, bpfel).
func eventTS(raw []byte) uint64 {
	if len(raw) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(raw)
}

func (r *perfReader) lostRecords() uint64 { return r.lost }

func (r *perfReader) SetDeadline(t time.Time) {
	r.deadline = t
	r.rd.SetDeadline(t)
}

func (r *perfReader) Close() error { return r.rd.Close() }
