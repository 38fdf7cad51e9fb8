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
		lay     = &layout{}
		lineNo  int // of the record being decoded, for setStage
		st      stages
		trailer bool
	)
	// One closure for the whole stream: a closure built per line would be
	// allocated per record.
	setStage := func(name []byte, v uint64) {
		if k := lay.slot(name, lineNo); k >= 0 {
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
		lineNo = n
		if state == inStream {
			st = stages{}
			if id, seq, role, err := record.ScanPing(line, setStage); err == nil {
				if o, ok := recordObs(f, lay, id, seq, role, &st); ok {
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
				lay = newLayout(h.Tool)
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
				setStage([]byte(name), v)
			}
			if o, ok := recordObs(f, lay, p.ID, p.Seq, p.Role, &st); ok {
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
		case record.TypeWarning:
			var w record.Warning
			if err := json.Unmarshal(line, &w); err != nil {
				f.warnf(n, "%v", err)
				return
			}
			addWarning(f, n, &w)
		case record.TypeTrailer:
			t := &record.Trailer{}
			if err := json.Unmarshal(line, t); err != nil {
				f.warnf(n, "%v", err)
				return
			}
			trailer = true
			applyTrailer(f, t)
		case record.TypeStats:
			// A running tracer's counters so far: the trailer's are final.
		case record.TypeHeader:
			f.warnf(n, "second header ignored")
		default:
			f.warnf(n, "unknown record type %q", probe.Type)
		}
	})
	if state != inStream {
		return fmt.Errorf("%w: no valid header", record.ErrNotRecordStream)
	}
	lay.report(f)
	if !trailer {
		f.Truncated = true
		f.warnf(0, "stream has no trailer (tracer stopped abnormally or file cut short)")
	}
	return err
}
