package parse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/pingpath/pingpath/internal/record"
)

// Ping records are read by record.ScanPing, the record package's
// allocation-free fast path; lines it does not take (escapes, unusual
// layout) fall back to encoding/json with the record package's types, so
// the result is the same either way. Header, drop and trailer records always
// go through encoding/json.

// stageSlots numbers each tool's stages.
var stageSlots = map[string]map[string]int{
	record.ToolVM:      {"p1_start": 0, "p1_end": 1, "p2_start": 2, "p2_end": 3},
	record.ToolHost:    {"req_in": 0, "req_out": 1, "rep_in": 2, "rep_out": 3},
	record.ToolVhostRX: {"s1_tun_xmit": 0, "s2_vhost_recv": 1, "s3_vhost_signal": 2, "s4_irqfd": 3, "s5_kvm_irq": 4},
	record.ToolVhostTX: {"kick": 0, "handle_tx": 1, "tun_sendmsg": 2, "netif_receive": 3},
}

// stages holds one record's stage timestamps by slot.
type stages struct {
	t   [8]uint64
	has uint8
}

func (s *stages) get(i int) (uint64, bool) { return s.t[i], s.has&(1<<i) != 0 }

func (s *stages) diff(from, to int) (int64, bool) {
	a, ok1 := s.get(from)
	b, ok2 := s.get(to)
	if !ok1 || !ok2 {
		return 0, false
	}
	return int64(b - a), true
}

// readRecords decodes a stream like record.Read (a header first, bad lines
// reported with their number and skipped), with the fast path for ping
// records.
func readRecords(f *File, r io.Reader) error {
	const (
		beforeHeader = iota
		inStream
		notStream
	)
	var (
		state   = beforeHeader
		slots   map[string]int
		st      stages
		trailer bool
	)
	// One closure for the whole stream: a closure built per line would be
	// allocated per record.
	setStage := func(name []byte, v uint64) {
		if k, ok := slots[string(name)]; ok {
			st.t[k], st.has = v, st.has|1<<k
		}
	}
	// A ping record is 150–400 bytes; pre-size for the common case.
	if f.sizeHint > 0 {
		f.Obs = make([]Obs, 0, min(f.sizeHint/150+1, 1<<22))
	}
	err := lines(f, r, func(n int, line []byte) {
		if state == notStream || len(bytes.TrimSpace(line)) == 0 {
			return
		}
		if state == inStream {
			st = stages{}
			if id, seq, role, err := record.ScanPing(line, setStage); err == nil {
				if o, ok := recordObs(f, id, seq, role, &st); ok {
					o.Line = n
					f.Obs = append(f.Obs, o)
				}
				return
			}
		}
		var probe struct {
			Type string `json:"type"`
		}
		err := json.Unmarshal(line, &probe)
		if state == beforeHeader {
			h := &record.Header{}
			if err == nil && probe.Type == record.TypeHeader {
				err = json.Unmarshal(line, h)
			}
			switch {
			case err != nil || probe.Type != record.TypeHeader:
				f.warnf(n, "first record is not a header: not a pingpath record stream")
				state = notStream
			case h.Schema != record.Schema:
				f.warnf(n, "unsupported schema %q (want %q); stream skipped", h.Schema, record.Schema)
				state = notStream
			default:
				applyHeader(f, h)
				slots = stageSlots[h.Tool]
				state = inStream
			}
			return
		}
		if err != nil {
			f.warnf(n, "%v", err)
			return
		}
		switch probe.Type {
		case record.TypePing:
			var p record.Ping
			if err := json.Unmarshal(line, &p); err != nil {
				f.warnf(n, "%v", err)
				return
			}
			st = stages{}
			for name, v := range p.Stages {
				if k, ok := slots[name]; ok {
					st.t[k], st.has = v, st.has|1<<k
				}
			}
			if o, ok := recordObs(f, p.ID, p.Seq, p.Role, &st); ok {
				o.Line = n
				f.Obs = append(f.Obs, o)
			}
		case record.TypeDrop:
			var d record.Drop
			if err := json.Unmarshal(line, &d); err != nil {
				f.warnf(n, "%v", err)
				return
			}
			addDrop(f, &d)
		case record.TypeTrailer:
			t := &record.Trailer{}
			if err := json.Unmarshal(line, t); err != nil {
				f.warnf(n, "%v", err)
				return
			}
			trailer = true
			applyTrailer(f, t)
		case record.TypeHeader:
			f.warnf(n, "second header ignored")
		default:
			f.warnf(n, "unknown record type %q", probe.Type)
		}
	})
	if state != inStream {
		return fmt.Errorf("%w: no valid header", record.ErrNotRecordStream)
	}
	if !trailer {
		f.Truncated = true
		f.warnf(0, "stream has no trailer (tracer stopped abnormally or file cut short)")
	}
	return err
}
