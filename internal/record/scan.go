package record

import "errors"

// The fast path for ping records, for readers that only need each ping's
// identity and stage timestamps (the analysis reads millions of them).

// ErrSlowPath is returned by ScanPing for a line outside the subset of JSON
// it understands; decode such a line with encoding/json into a Ping (as Read
// does) and the result is the same.
var ErrSlowPath = errors.New("record: line outside the fast ping subset")

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
		return nil, ErrSlowPath
	}
	j := s.i + 1
	for j < len(s.b) && s.b[j] != '"' {
		if s.b[j] == '\\' {
			return nil, ErrSlowPath
		}
		j++
	}
	if j >= len(s.b) {
		return nil, ErrSlowPath
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
			return 0, ErrSlowPath
		}
		v = v*10 + d
		s.i++
	}
	if s.i == start || (s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E')) {
		return 0, ErrSlowPath
	}
	return v, nil
}

// skip skips any JSON value.
func (s *scanner) skip() error {
	s.ws()
	if s.i >= len(s.b) {
		return ErrSlowPath
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
		return ErrSlowPath
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
		return ErrSlowPath
	default:
		for s.i < len(s.b) && s.b[s.i] != ',' && s.b[s.i] != '}' && s.b[s.i] != ']' {
			s.i++
		}
		return nil
	}
}

// ScanPing decodes the identity and the stage timestamps of one ping line
// without allocating, calling stage for every entry of "stages" (name is
// only valid during the call); other fields are skipped. It understands the
// subset of JSON that Writer produces (no escapes in keys or strings, plain
// integers) and returns ErrSlowPath for anything else, after which stage may
// already have been called for some entries.
//
// A one-hour capture at 100 pings/s is ~3 million records; encoding/json
// with Ping's maps decodes ~100k of them per second, ScanPing over 1M/s per
// core (BenchmarkRun in internal/analyze).
func ScanPing(line []byte, stage func(name []byte, ns uint64)) (id, seq uint16, role string, err error) {
	s := scanner{b: line}
	if !s.consume('{') {
		return 0, 0, "", ErrSlowPath
	}
	sawType := false
	for {
		if s.consume('}') {
			break
		}
		key, err := s.str()
		if err != nil || !s.consume(':') {
			return 0, 0, "", ErrSlowPath
		}
		switch string(key) {
		case "type":
			v, err := s.str()
			if err != nil || string(v) != TypePing {
				return 0, 0, "", ErrSlowPath
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
				return 0, 0, "", ErrSlowPath
			}
			for !s.consume('}') {
				name, err := s.str()
				if err != nil || !s.consume(':') {
					return 0, 0, "", ErrSlowPath
				}
				v, err := s.uint(^uint64(0))
				if err != nil {
					return 0, 0, "", err
				}
				stage(name, v)
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
			return 0, 0, "", ErrSlowPath
		}
	}
	s.ws()
	if !sawType || s.i != len(s.b) {
		return 0, 0, "", ErrSlowPath
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
