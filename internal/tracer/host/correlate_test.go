package host

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

const ms = uint64(1_000_000)

type collected struct {
	pings []*record.Ping
	drops []*record.Drop
}

func (c *collected) Ping(p *record.Ping) error { c.pings = append(c.pings, p); return nil }
func (c *collected) Drop(d *record.Drop) error { c.drops = append(c.drops, d); return nil }

// counted counts records (benchmarks).
type counted struct{ pings, drops int }

func (c *counted) Ping(*record.Ping) error { c.pings++; return nil }
func (c *counted) Drop(*record.Drop) error { c.drops++; return nil }

func newTestCorrelator(role string) (*Correlator, *collected) {
	out := &collected{}
	c := NewCorrelator(CorrelatorConfig{
		Timeout: 1000 * ms, Window: 50 * ms, Role: role,
		ReasonName: func(code uint32) string { return fmt.Sprintf("R%d", code) },
		Symbol:     func(addr uint64) string { return fmt.Sprintf("fn+%#x", addr) },
	}, out)
	return c, out
}

// senderPing returns the four events a sender host sees for one ping
// starting at t: vnet RX, phy TX, phy RX, vnet TX.
func senderPing(id, seq uint16, t uint64) []Event {
	return []Event{
		{TS: t, Kind: KindIngress, Dir: DirRequest, Side: SideVM, ID: id, Seq: seq, Dev: "vnet0", CPU: 0},
		{TS: t + 80_000, Kind: KindEgress, Dir: DirRequest, Side: SidePhy, ID: id, Seq: seq, Dev: "eth0", CPU: 0},
		{TS: t + 480_000, Kind: KindIngress, Dir: DirReply, Side: SidePhy, ID: id, Seq: seq, Dev: "eth1", CPU: 1},
		{TS: t + 535_000, Kind: KindEgress, Dir: DirReply, Side: SideVM, ID: id, Seq: seq, Dev: "vnet0", CPU: 1},
	}
}

// receiverPing is the same ping seen on the receiver host.
func receiverPing(id, seq uint16, t uint64) []Event {
	return []Event{
		{TS: t, Kind: KindIngress, Dir: DirRequest, Side: SidePhy, ID: id, Seq: seq, Dev: "eth0"},
		{TS: t + 30_000, Kind: KindEgress, Dir: DirRequest, Side: SideVM, ID: id, Seq: seq, Dev: "vnet0"},
		{TS: t + 200_000, Kind: KindIngress, Dir: DirReply, Side: SideVM, ID: id, Seq: seq, Dev: "vnet0"},
		{TS: t + 240_000, Kind: KindEgress, Dir: DirReply, Side: SidePhy, ID: id, Seq: seq, Dev: "eth0"},
	}
}

func TestCompletePing(t *testing.T) {
	c, out := newTestCorrelator("auto")
	base := 10_000 * ms
	for _, e := range senderPing(7, 1, base) {
		c.Add(e)
	}
	c.Advance(base + 1*ms) // still inside the reorder window: nothing yet
	if len(out.pings) != 0 {
		t.Fatalf("ping emitted before the reorder window passed")
	}
	c.Advance(base + 60*ms)
	if len(out.pings) != 1 || len(out.drops) != 0 {
		t.Fatalf("got %d pings %d drops, want 1/0", len(out.pings), len(out.drops))
	}
	p := out.pings[0]
	if p.Role != record.RoleSender || p.ID != 7 || p.Seq != 1 {
		t.Errorf("ping = %+v", p)
	}
	want := map[string]int64{"req_internal": 80_000, "external": 400_000, "rep_internal": 55_000, "total": 535_000}
	for k, v := range want {
		if p.Durations[k] != v {
			t.Errorf("%s = %d, want %d", k, p.Durations[k], v)
		}
	}
	if p.Durations["req_internal"]+p.Durations["external"]+p.Durations["rep_internal"] != p.Durations["total"] {
		t.Errorf("durations do not add up: %v", p.Durations)
	}
	if p.Devices["rep_in"] != "eth1" || p.Devices["req_in"] != "vnet0" {
		t.Errorf("devices = %v (a reply on another bond slave must still match)", p.Devices)
	}
}

func TestReceiverRole(t *testing.T) {
	c, out := newTestCorrelator("")
	for _, e := range receiverPing(9, 3, 5*ms) {
		c.Add(e)
	}
	c.Flush(6 * ms)
	if len(out.pings) != 1 || out.pings[0].Role != record.RoleReceiver || out.pings[0].Durations["total"] != 240_000 {
		t.Fatalf("pings = %+v", out.pings)
	}
	if out.pings[0].Extra["incomplete"] != "" {
		t.Errorf("complete ping marked incomplete: %v", out.pings[0].Extra)
	}
}

// The origin tool reported drops for pings that every other log showed as
// complete: the reply events were read before the request's. Deliver every
// ping's events reversed, interleaved with other pings, and advance the
// clock in small steps the way the live reader does.
func TestOutOfOrderDeliveryNeverDrops(t *testing.T) {
	c, out := newTestCorrelator("auto")
	base := 1_000 * ms
	var evs []Event
	const n = 200
	for i := 0; i < n; i++ {
		p := senderPing(15813, uint16(i), base+uint64(i)*10*ms)
		for j := len(p) - 1; j >= 0; j-- { // stage 3 first, like a drained CPU ring
			evs = append(evs, p[j])
		}
	}
	now := base
	for i, e := range evs {
		c.Add(e)
		if i%7 == 0 {
			now = e.TS + 5*ms // the reader is at most 5 ms behind; window is 50 ms
			c.Advance(now)
		}
	}
	// Long quiet period: anything open would now be a drop.
	c.Advance(now + 5_000*ms)
	c.Flush(now + 5_000*ms)
	if len(out.drops) != 0 {
		t.Fatalf("%d false drops, first: %+v", len(out.drops), out.drops[0])
	}
	if len(out.pings) != n || c.Pings != n {
		t.Fatalf("got %d pings, want %d", len(out.pings), n)
	}
	for _, p := range out.pings {
		if p.Extra["incomplete"] != "" || len(p.Stages) != 4 {
			t.Fatalf("ping %d incomplete: %+v", p.Seq, p)
		}
	}
}

// Random delivery order within the window, many seeds, mixed roles.
func TestShuffledDeliveryWithinWindow(t *testing.T) {
	for seed := int64(0); seed < 50; seed++ {
		r := rand.New(rand.NewSource(seed))
		c, out := newTestCorrelator("auto")
		var evs []Event
		for i := 0; i < 50; i++ {
			t0 := 100*ms + uint64(i)*uint64(r.Intn(20)+1)*ms
			evs = append(evs, senderPing(1, uint16(i), t0)...)
			evs = append(evs, receiverPing(2, uint16(i), t0+ms)...)
		}
		// Each event is delivered at ts + a random delay below the window.
		type arrival struct {
			at uint64
			e  Event
		}
		arr := make([]arrival, len(evs))
		for i, e := range evs {
			arr[i] = arrival{e.TS + uint64(r.Int63n(int64(45*ms))), e}
		}
		r.Shuffle(len(arr), func(i, j int) { arr[i], arr[j] = arr[j], arr[i] })
		sort.SliceStable(arr, func(i, j int) bool { return arr[i].at < arr[j].at })
		for _, a := range arr {
			c.Add(a.e)
			c.Advance(a.at)
		}
		c.Flush(arr[len(arr)-1].at + 3000*ms)
		if len(out.drops) != 0 || len(out.pings) != 100 || c.Incomplete != 0 || c.Late != 0 {
			t.Fatalf("seed %d: %d pings %d drops %d incomplete %d late", seed, len(out.pings), len(out.drops), c.Incomplete, c.Late)
		}
	}
}

func TestExternalDrop(t *testing.T) {
	c, out := newTestCorrelator("auto")
	evs := senderPing(15813, 1, 1000*ms)[:2] // request left eth0; no reply
	for _, e := range evs {
		c.Add(e)
	}
	last := evs[1].TS
	c.Advance(last + 1000*ms) // timeout reached only at watermark = now − window
	if len(out.drops) != 0 {
		t.Fatalf("drop decided before timeout + window")
	}
	c.Advance(last + 1050*ms)
	if len(out.drops) != 1 {
		t.Fatalf("got %d drops, want 1", len(out.drops))
	}
	d := out.drops[0]
	if d.LastSeen != "req_out" || d.FirstMissed != "rep_in" || d.Role != record.RoleSender || d.Reason != "" {
		t.Errorf("drop = %+v", d)
	}
	if d.Devices["req_out"] != "eth0" || len(d.Stages) != 2 {
		t.Errorf("drop stages/devices = %v %v", d.Stages, d.Devices)
	}
	// The reply turns up late: counted, never a second record.
	rep := senderPing(15813, 1, 1000*ms)[2]
	rep.TS = last + 1200*ms
	c.Add(rep)
	c.Flush(last + 5000*ms)
	if len(out.drops) != 1 || len(out.pings) != 0 || c.AfterEnd != 1 {
		t.Errorf("late reply: %d drops %d pings afterEnd=%d", len(out.drops), len(out.pings), c.AfterEnd)
	}
}

func TestInternalDropWithKernelReason(t *testing.T) {
	c, out := newTestCorrelator("auto")
	evs := receiverPing(4, 2, 2000*ms)
	c.Add(evs[0]) // request entered eth0, never reached vnet0
	// A free before the ping was first seen belongs to no ping.
	c.Add(Event{TS: evs[0].TS - ms, Kind: KindDrop, Dir: DirRequest, ID: 4, Seq: 2, Reason: 99})
	c.Add(Event{TS: evs[0].TS + 10_000, Kind: KindDrop, Dir: DirRequest, ID: 4, Seq: 2, Reason: 12, Location: 0x40, Dev: "eth0"})
	c.Advance(evs[0].TS + 2000*ms)
	if len(out.drops) != 1 {
		t.Fatalf("got %d drops", len(out.drops))
	}
	d := out.drops[0]
	if d.LastSeen != "req_in" || d.FirstMissed != "req_out" || d.Role != record.RoleReceiver {
		t.Errorf("drop = %+v", d)
	}
	if d.Reason != "R12" || d.ReasonCode != 12 || d.Location != "fn+0x40" || d.Device != "eth0" || d.AtNS != evs[0].TS+10_000 {
		t.Errorf("kernel reason = %q %d %q %q %d", d.Reason, d.ReasonCode, d.Location, d.Device, d.AtNS)
	}
	if c.Unmatched != 1 { // the free before the flow existed
		t.Errorf("unmatched = %d, want 1", c.Unmatched)
	}
}

// A request sent up to ovs-vswitchd (openvswitch:ovs_dp_upcall) and never
// sent back is a drop placed at the upcall, without a reason (the kernel
// consumed it); a kernel drop of the ping's packet after the upcall (the
// packet sent back and dropped by the datapath) names the loss instead,
// and an upcalled packet that goes on is no drop at all.
func TestUpcallPlacesDrop(t *testing.T) {
	c, out := newTestCorrelator("auto")
	lost := receiverPing(5, 1, 2000*ms)
	c.Add(lost[0])
	c.Add(Event{TS: lost[0].TS + 20_000, Kind: KindUpcall, Dir: DirRequest, ID: 5, Seq: 1, Dev: "genev_sys_6081"})
	reasoned := receiverPing(5, 2, 3000*ms)
	c.Add(reasoned[0])
	c.Add(Event{TS: reasoned[0].TS + 20_000, Kind: KindUpcall, Dir: DirRequest, ID: 5, Seq: 2, Dev: "eth0"})
	c.Add(Event{TS: reasoned[0].TS + 900_000, Kind: KindDrop, Dir: DirRequest, ID: 5, Seq: 2, Reason: 196609, Location: 0x40, Dev: "eth0"})
	whole := receiverPing(5, 3, 4000*ms)
	c.Add(whole[0])
	c.Add(Event{TS: whole[0].TS + 10_000, Kind: KindUpcall, Dir: DirRequest, ID: 5, Seq: 3, Dev: "eth0"})
	for _, e := range whole[1:] {
		c.Add(e)
	}
	// An upcall of a packet of no open ping is not a kernel drop.
	c.Add(Event{TS: whole[0].TS + 20_000, Kind: KindUpcall, Dir: DirRequest, ID: 9, Seq: 9, Dev: "eth0"})
	c.Advance(whole[0].TS + 3000*ms)
	if len(out.drops) != 2 || len(out.pings) != 1 || out.pings[0].Seq != 3 || c.Unmatched != 0 {
		t.Fatalf("drops %+v, pings %+v, unmatched %d; want seqs 1 and 2 dropped, 3 whole, none unmatched", out.drops, out.pings, c.Unmatched)
	}
	d := out.drops[0]
	if d.Seq != 1 || d.LastSeen != "req_in" || d.FirstMissed != "req_out" || d.Reason != "" || d.ReasonCode != 0 ||
		d.Location != UpcallLocation || d.Device != "genev_sys_6081" || d.AtNS != lost[0].TS+20_000 {
		t.Errorf("upcalled and not sent back: %+v", d)
	}
	d = out.drops[1]
	if d.Seq != 2 || d.Reason != "R196609" || d.Location != "fn+0x40" || d.Device != "eth0" || d.AtNS != reasoned[0].TS+900_000 {
		t.Errorf("upcalled, then dropped by the kernel: %+v", d)
	}
}

// A stage missing in the middle (a reply coming back on an interface that
// is not traced, a probe that missed) is an observation gap, not a drop.
func TestGapIsIncompleteNotDrop(t *testing.T) {
	c, out := newTestCorrelator("auto")
	evs := senderPing(5, 5, 1000*ms)
	for _, e := range []Event{evs[0], evs[1], evs[3]} {
		c.Add(e)
	}
	c.Flush(10_000 * ms)
	if len(out.drops) != 0 || len(out.pings) != 1 || c.Incomplete != 1 {
		t.Fatalf("%d drops %d pings %d incomplete", len(out.drops), len(out.pings), c.Incomplete)
	}
	p := out.pings[0]
	if p.Extra["incomplete"] != "stage rep_in not observed" {
		t.Errorf("extra = %v", p.Extra)
	}
	if _, ok := p.Durations["external"]; ok {
		t.Errorf("external computed without rep_in: %v", p.Durations)
	}
	if p.Durations["total"] != 535_000 || p.Durations["req_internal"] != 80_000 {
		t.Errorf("durations = %v", p.Durations)
	}
}

func TestFlushYoungFlowIsIncomplete(t *testing.T) {
	c, out := newTestCorrelator("auto")
	evs := senderPing(5, 6, 1000*ms)
	c.Add(evs[0])
	c.Flush(evs[0].TS + 100*ms)
	if len(out.drops) != 0 || len(out.pings) != 1 || out.pings[0].Extra["incomplete"] == "" {
		t.Fatalf("young flow at end: %d drops, pings %+v", len(out.drops), out.pings)
	}
}

func TestRoleFilterAndBothRoles(t *testing.T) {
	c, out := newTestCorrelator(record.RoleReceiver)
	for _, e := range append(senderPing(1, 1, 10*ms), receiverPing(1, 1, 11*ms)...) {
		c.Add(e)
	}
	c.Flush(5000 * ms)
	if len(out.pings) != 1 || out.pings[0].Role != record.RoleReceiver || c.OtherRole != 4 {
		t.Fatalf("role filter: pings %+v other %d", out.pings, c.OtherRole)
	}
	// auto: the same id/seq in both roles (both VMs on one host) gives two pings.
	c, out = newTestCorrelator("auto")
	for _, e := range append(senderPing(1, 1, 10*ms), receiverPing(1, 1, 11*ms)...) {
		c.Add(e)
	}
	c.Flush(5000 * ms)
	if len(out.pings) != 2 || len(out.drops) != 0 {
		t.Fatalf("auto: %d pings %d drops", len(out.pings), len(out.drops))
	}
}

func TestDuplicateStageKeepsFirst(t *testing.T) {
	c, out := newTestCorrelator("auto")
	evs := senderPing(3, 3, 10*ms)
	dup := evs[1]
	dup.TS += 1000
	dup.Dev = "eth1" // flooded to a second physical port
	for _, e := range append(evs, dup) {
		c.Add(e)
	}
	c.Flush(5000 * ms)
	if len(out.pings) != 1 || out.pings[0].Devices["req_out"] != "eth0" {
		t.Fatalf("pings = %+v", out.pings)
	}
	// The duplicate came after completion: counted as after-end.
	if c.Duplicates+c.AfterEnd != 1 {
		t.Errorf("duplicates %d afterEnd %d", c.Duplicates, c.AfterEnd)
	}
}

func TestSequenceReuseAfterForget(t *testing.T) {
	c, out := newTestCorrelator("auto")
	for _, e := range senderPing(1, 1, 10*ms) {
		c.Add(e)
	}
	c.Advance(1000 * ms)
	// Same id/seq long after (sequence wrap): a new ping, not a late event.
	later := 60_000 * ms
	c.Advance(later)
	for _, e := range senderPing(1, 1, later) {
		c.Add(e)
	}
	c.Flush(later + 5000*ms)
	if len(out.pings) != 2 {
		t.Fatalf("got %d pings, want 2", len(out.pings))
	}
}

func TestEncapString(t *testing.T) {
	if s := EncapString(EncapVLAN | EncapVXLAN); s != "vlan+vxlan" {
		t.Errorf("got %q", s)
	}
	if s := EncapString(0); s != "" {
		t.Errorf("got %q", s)
	}
}

func BenchmarkCorrelator(b *testing.B) {
	c := NewCorrelator(CorrelatorConfig{Timeout: 1000 * ms, Window: 50 * ms}, &counted{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		t0 := uint64(i) * ms
		for _, e := range senderPing(1, uint16(i), t0) {
			c.Add(e)
		}
		if i%64 == 0 {
			c.Advance(t0)
		}
	}
	c.Flush(uint64(b.N)*ms + 5000*ms)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pings/s")
}

// A stalled reader (the tracer process descheduled, a backlog in the ring
// buffer) must not turn pings whose events are still unread into drops.
func TestStalledReaderNoFalseDrop(t *testing.T) {
	c, out := newTestCorrelator("auto")
	base := 10_000 * ms
	evs := senderPing(7, 1, base)
	tick, feed := c.Tick, c.Add
	for now := base - 500*ms; now < base; now += 100 * ms {
		tick(now)
	}
	feed(evs[0])
	feed(evs[1])
	tick(base + 100*ms)
	// The process stalls for 5 s; the reply events sit in the ring.
	tick(base + 5_100*ms)
	// Reading the backlog: old events arrive, ticks keep coming.
	feed(evs[2])
	tick(base + 5_200*ms)
	feed(evs[3])
	tick(base + 5_300*ms)
	for now := base + 5_400*ms; now < base+8_000*ms; now += 100 * ms {
		tick(now)
	}
	if len(out.drops) != 0 || len(out.pings) != 1 {
		t.Fatalf("after a stall: %d drops %d pings, want 0/1", len(out.drops), len(out.pings))
	}
	// An idle reader still decides drops: a request that never gets a reply.
	feed(senderPing(7, 2, base+8_000*ms)[0])
	for now := base + 8_100*ms; now < base+10_000*ms; now += 100 * ms {
		tick(now)
	}
	if len(out.drops) != 1 || out.drops[0].Seq != 2 {
		t.Fatalf("idle reader: drops %+v, want seq 2", out.drops)
	}
}

// Two VM pairs on one host may ping with the same id and sequence in the
// same role (two sender VMs): their events interleave, and the pair index
// keeps them two pings, each record naming its pair.
func TestPairsWithTheSameIDAndSeq(t *testing.T) {
	c, out := newTestCorrelator("auto")
	a, b := senderPing(7, 1, 10*ms), senderPing(7, 1, 10*ms+20_000)
	for i := range b {
		b[i].Pair = 3
	}
	for i := range a {
		c.Add(a[i])
		c.Add(b[i])
	}
	c.Flush(100 * ms)
	if len(out.pings) != 2 || len(out.drops) != 0 || c.Duplicates != 0 {
		t.Fatalf("%d pings, %d drops, %d duplicate stages: want 2 complete pings", len(out.pings), len(out.drops), c.Duplicates)
	}
	pairs := map[int]int64{}
	for _, p := range out.pings {
		pairs[p.Pair] = p.Durations["total"]
	}
	if pairs[0] != 535_000 || pairs[3] != 535_000 {
		t.Errorf("totals by pair %v, want 535000 ns for pairs 0 and 3", pairs)
	}
}
