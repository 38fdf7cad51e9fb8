package tracertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
)

// RecordTimeout bounds a wait for records the tracer is expected to write.
// It is long because the kernel matrix runs the tests in TCG guests, where
// a tick can take seconds; a wait that succeeds returns as soon as the
// records are there.
const RecordTimeout = time.Minute

// Key is one ping or drop record of a stream.
type Key struct {
	Type    string // record.TypePing or record.TypeDrop
	ID, Seq uint16
}

// Keys lists the ping and drop records in out, a stream being written:
// complete lines only.
func Keys(out []byte) []Key {
	var keys []Key
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[:i+1]
	} else {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var k Key
		if json.Unmarshal(sc.Bytes(), &struct {
			Type *string `json:"type"`
			ID   *uint16 `json:"id"`
			Seq  *uint16 `json:"seq"`
		}{&k.Type, &k.ID, &k.Seq}) == nil && (k.Type == record.TypePing || k.Type == record.TypeDrop) {
			keys = append(keys, k)
		}
	}
	return keys
}

// HasSeqs is a WaitRecords condition: every seq of id has a ping or drop
// record.
func HasSeqs(id uint16, seqs ...uint16) func([]Key) bool {
	return hasSeqs(func(k Key) bool { return k.ID == id }, seqs)
}

// HasSeqsAnyID is HasSeqs for a pinger whose ICMP id the test does not
// know (ping(8) in the lab chooses its own).
func HasSeqsAnyID(seqs ...uint16) func([]Key) bool {
	return hasSeqs(func(Key) bool { return true }, seqs)
}

func hasSeqs(match func(Key) bool, seqs []uint16) func([]Key) bool {
	return func(keys []Key) bool {
		seen := map[uint16]bool{}
		for _, k := range keys {
			if match(k) {
				seen[k.Seq] = true
			}
		}
		for _, s := range seqs {
			if !seen[s] {
				return false
			}
		}
		return true
	}
}

// AtLeast is a WaitRecords condition: at least n records of type typ
// (record.TypePing, record.TypeDrop).
func AtLeast(typ string, n int) func([]Key) bool {
	return func(keys []Key) bool {
		c := 0
		for _, k := range keys {
			if k.Type == typ {
				c++
			}
		}
		return c >= n
	}
}

// WaitRecords polls a tracer's output (the tracer writes its records at its
// ticks, about every 100 ms) until done holds or timeout passes, and
// reports whether it held. A test waits on what the tracer reported, never
// on a guessed sleep; on a timeout it goes on, and its own checks say what
// is missing.
func WaitRecords(t testing.TB, output func() []byte, done func([]Key) bool, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		keys := Keys(output())
		if done(keys) {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("records after %v: %d, condition not met", timeout, len(keys))
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitRecords waits, up to RecordTimeout, until the tracer's output
// satisfies done.
func (rt *Tracer) WaitRecords(t testing.TB, done func([]Key) bool) bool {
	t.Helper()
	return WaitRecords(t, rt.out.Bytes, done, RecordTimeout)
}

// WaitRecords waits, up to RecordTimeout, until the process's output
// satisfies done.
func (p *Process) WaitRecords(done func([]Key) bool) bool {
	p.t.Helper()
	return WaitRecords(p.t, p.Output, done, RecordTimeout)
}

// Output is what the process has written to its --output file so far.
func (p *Process) Output() []byte {
	b, _ := os.ReadFile(p.out)
	return b
}

// FileOutput returns an output function reading path (a tracer run
// in-process with Options.Output).
func FileOutput(path string) func() []byte {
	return func() []byte {
		b, _ := os.ReadFile(path)
		return b
	}
}
