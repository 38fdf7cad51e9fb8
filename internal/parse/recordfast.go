package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/pingpath/pingpath/internal/record"
)

// A one-hour capture at 100 pings/s is ~3 million records; encoding/json
// with its maps decodes ~100k of them per second. Ping records are
// therefore read by a small allocation-free scanner that understands the
// subset of JSON the tracers' record.Writer produces; anything it does not
// expect (escapes in keys, unusual layout) falls back to encoding/json with
// the record package's types, so the result is the same either way. Header,
// drop and trailer records always go through encoding/json.

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

var errFallback = errors.New("not in the fast subset")

// scanner walks one JSON line.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\r' || s.b[s.i] == '\n') {
		s.i++
	}
}

func (s *scanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes (the fast subset).
func (s *scanner) str() ([]byte, error) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, errFallback
	}
	j := s.i + 1
	for j < len(s.b) && s.b[j] != '"' {
		if s.b[j] == '\\' {
			return nil, errFallback
		}
		j++
	}
	if j >= len(s.b) {
		return nil, errFallback
	}
	out := s.b[s.i+1 : j]
	s.i = j + 1
	return out, nil
}

func (s *scanner) uint(max uint64) (uint64, error) {
	s.ws()
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if v > (max-d)/10 {
			return 0, errFallback
		}
		v = v*10 + d
		s.i++
	}
	if s.i == start || (s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E')) {
		return 0, errFallback
	}
	return v, nil
}

// skip skips any JSON value.
func (s *scanner) skip() error {
	s.ws()
	if s.i >= len(s.b) {
		return errFallback
	}
	switch c := s.b[s.i]; c {
	case '"':
		s.i++
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '\\':
				s.i += 2
				continue
			case '"':
				s.i++
				return nil
			}
			s.i++
		}
		return errFallback
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if err := s.skip(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return nil
				}
			}
			s.i++
		}
		return errFallback
	default:
		for s.i < len(s.b) && s.b[s.i] != ',' && s.b[s.i] != '}' && s.b[s.i] != ']' {
			s.i++
		}
		return nil
	}
}

// fastPing decodes a ping record of the fast subset.
func fastPing(line []byte, slots map[string]int, st *stages) (id, seq uint16, role string, err error) {
	s := scanner{b: line}
	if !s.consume('{') {
		return 0, 0, "", errFallback
	}
	*st = stages{}
	sawType := false
	for {
		if s.consume('}') {
			break
		}
		key, err := s.str()
		if err != nil || !s.consume(':') {
			return 0, 0, "", errFallback
		}
		switch string(key) {
		case "type":
			v, err := s.str()
			if err != nil || string(v) != record.TypePing {
				return 0, 0, "", errFallback
			}
			sawType = true
		case "id":
			v, err := s.uint(65535)
			if err != nil {
				return 0, 0, "", err
			}
			id = uint16(v)
		case "seq":
			v, err := s.uint(65535)
			if err != nil {
				return 0, 0, "", err
			}
			seq = uint16(v)
		case "role":
			v, err := s.str()
			if err != nil {
				return 0, 0, "", err
			}
			role = internRole(v)
		case "stages":
			if !s.consume('{') {
				return 0, 0, "", errFallback
			}
			for !s.consume('}') {
				name, err := s.str()
				if err != nil || !s.consume(':') {
					return 0, 0, "", errFallback
				}
				v, err := s.uint(^uint64(0))
				if err != nil {
					return 0, 0, "", err
				}
				if k, ok := slots[string(name)]; ok {
					st.t[k], st.has = v, st.has|1<<k
				}
				s.consume(',')
			}
		default:
			if err := s.skip(); err != nil {
				return 0, 0, "", err
			}
		}
		if !s.consume(',') {
			if s.consume('}') {
				break
			}
			return 0, 0, "", errFallback
		}
	}
	s.ws()
	if !sawType || s.i != len(s.b) {
		return 0, 0, "", errFallback
	}
	return id, seq, role, nil
}

// internRole avoids an allocation per record for the usual roles.
func internRole(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "sender":
		return "sender"
	case "receiver":
		return "receiver"
	case "request":
		return "request"
	case "reply":
		return "reply"
	case "tx":
		return "tx"
	case "rx":
		return "rx"
	}
	return string(b)
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
	// A ping record is 150–400 bytes; pre-size for the common case.
	if f.sizeHint > 0 {
		f.Obs = make([]Obs, 0, min(f.sizeHint/150+1, 1<<22))
	}
	err := lines(f, r, func(n int, line []byte) {
		if state == notStream || len(bytes.TrimSpace(line)) == 0 {
			return
		}
		if state == inStream {
			if id, seq, role, err := fastPing(line, slots, &st); err == nil {
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
